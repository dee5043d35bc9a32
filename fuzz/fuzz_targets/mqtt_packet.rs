//! Fuzzes the MQTT 3.1.1 packet decoder of the embedded broker: ke-mqtt decodes client bytes with
//! `rumqttc::mqttbytes::v4::Packet::read` (and `check`) in the read loop of `conn.rs`, with
//! `BrokerOptions::default().max_packet_size`. The input is what a client writes on its socket.
//!
//! Checks the properties the broker's read loop relies on:
//! * never panics;
//! * `InsufficientBytes` consumes nothing (the loop then reads more into the same buffer), and is
//!   never returned once `check` has seen a whole frame;
//! * how TCP cuts the stream into reads does not change what is decoded (whole buffer vs one byte
//!   per read);
//! * every decoded packet encodes (the codec the broker answers with) and decodes back to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::{Error, check};

/// `ke_mqtt::BrokerOptions::default().max_packet_size`.
const MAX_PACKET: usize = 1024 * 1024;

/// What a reader got from a stream: the packets in order, then the error that dropped the client
/// (`None`: the stream ended, possibly inside a packet).
#[derive(Debug, PartialEq)]
struct Decoded {
    packets: Vec<Packet>,
    error: Option<String>,
}

/// Decodes `data` the way `conn.rs` does, appending `step` bytes per socket read.
fn decode(data: &[u8], step: usize) -> Decoded {
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in data.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let framed = check(buf.iter(), MAX_PACKET).is_ok();
            let before = buf.len();
            match Packet::read(&mut buf, MAX_PACKET) {
                Ok(p) => packets.push(p),
                Err(Error::InsufficientBytes(_)) => {
                    assert!(!framed, "InsufficientBytes for a complete frame");
                    assert_eq!(buf.len(), before, "InsufficientBytes consumed bytes");
                    break;
                }
                Err(e) => {
                    return Decoded {
                        packets,
                        error: Some(format!("{e:?}")),
                    };
                }
            }
        }
    }
    Decoded { packets, error: None }
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, data.len());
    let bytewise = decode(data, 1);
    assert_eq!(whole, bytewise, "decoding depends on how the stream is cut");

    for p in &whole.packets {
        let mut out = BytesMut::new();
        let n = p
            .write(&mut out, usize::MAX)
            .expect("a decoded packet must encode");
        assert_eq!(n, out.len(), "write reported a wrong length for {p:?}");
        assert_eq!(p.size(), out.len(), "size() disagrees with write for {p:?}");
        let again = Packet::read(&mut out, usize::MAX).expect("an encoded packet must decode");
        assert_eq!(&again, p, "packet does not round-trip");
        assert!(out.is_empty(), "re-encoded packet left bytes behind");
    }
});
