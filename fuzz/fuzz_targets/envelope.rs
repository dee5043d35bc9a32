//! Fuzzes the envelope decoder that faces the network: it must never panic, and whatever it accepts
//! must re-encode to a frame that decodes to the same message.
#![no_main]

use ke_core::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::from_slice(data) {
        let again = Message::from_slice(m.to_ws_frame().as_bytes()).expect("re-encoded message must decode");
        assert_eq!(m, again);
    }
});
