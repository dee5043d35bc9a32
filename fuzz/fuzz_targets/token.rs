//! Fuzzes the bootstrap token `<caHash>.<jwt>`: `ke_pki::token::Token::parse` (what `keadm join
//! --token`, edgecore's `modules.edgehub.token` and `keadm gettoken` parse), `Token::
//! expires_unverified`, and `TokenKey::verify_at` (what cloudhub's `/edge.crt` applies to the
//! `Authorization: Bearer` value any client sends).
//!
//! Checks, besides never panicking: a parsed token prints back to itself with a lower-case 64-hex
//! CA hash; the verifier accepts only tokens it signed itself and only before their `exp`; a token
//! issued for any `exp` (taken from the input) parses, reports that `exp`, and verifies until then.
#![no_main]

use std::sync::LazyLock;

use ke_pki::token::{Error, Token, TokenKey};
use libfuzzer_sys::fuzz_target;

static KEY: LazyLock<TokenKey> = LazyLock::new(|| TokenKey::new(b"fuzz token key", "ab".repeat(32)));

/// Now, for the verifier (any fixed value works; the tokens of the seeds expire in 2033).
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    // Issue and check a token for an `exp` chosen by the input.
    if let Some(head) = data.first_chunk::<8>() {
        let exp = u64::from_le_bytes(*head);
        let t = KEY.issue_until(exp);
        let text = t.to_string();
        assert_eq!(Token::parse(&text).as_ref(), Ok(&t), "an issued token must parse");
        assert_eq!(t.expires_unverified(), Some(exp));
        if exp > 0 {
            assert_eq!(KEY.verify_at(&t.jwt, exp - 1), Ok(exp), "JWT alone must verify");
            assert_eq!(KEY.verify_at(&text, exp - 1), Ok(exp), "full token must verify");
        }
        assert_eq!(KEY.verify_at(&text, exp), Err(Error::Expired { exp, now: exp }));
    }

    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = Token::parse(s) {
        assert_eq!(t.ca_hash.len(), 64);
        assert!(t.ca_hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(s.trim().to_ascii_lowercase().starts_with(&t.ca_hash));
        assert_eq!(
            Token::parse(&t.to_string()).as_ref(),
            Ok(&t),
            "token does not round-trip"
        );
        let _ = t.expires_unverified();
    }
    match KEY.verify_at(s, NOW) {
        Ok(exp) => {
            assert!(exp > NOW, "accepted a token that expired at {exp}");
            // Only a JWT this key signed verifies; it must still parse (as JWT or full token).
            let bearer = s.trim();
            let jwt = Token::parse(bearer).map_or(bearer.to_owned(), |t| t.jwt);
            assert_eq!(
                jwt.split('.').count(),
                3,
                "accepted a JWT that is not three parts"
            );
        }
        Err(Error::WrongCa(hash)) => assert_ne!(hash, KEY.ca_hash()),
        Err(_) => {}
    }
});
