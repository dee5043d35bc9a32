//! Bootstrap tokens (KubeEdge v1.3 format): `<caHash>.<jwt>`.
//!
//! * `caHash` — hex SHA-256 of the CA certificate (DER). The edge fetches `/ca.crt` over an
//!   unauthenticated TLS connection and trusts it only if its hash matches: the token pins the CA.
//! * `jwt` — an HS256 JWT whose only claim is `exp` (Unix seconds). The edge sends it as
//!   `Authorization: Bearer <jwt>` to `/edge.crt`; cloudcore checks signature and expiry.
//!
//! The HMAC key is derived from the CA private key ([`TokenKey::from_ca`]), so every cloudcore holding
//! the CA verifies the same tokens and no extra secret has to be kept. cloudcore publishes the current
//! token in the Kubernetes Secret [`SECRET_NAMESPACE`]/[`SECRET_NAME`], data key [`SECRET_DATA_KEY`]
//! (what `keadm gettoken` prints), and replaces it before it expires; an older token stays valid until
//! its own `exp`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};

/// Namespace of the token Secret.
pub const SECRET_NAMESPACE: &str = "kubeedge";
/// Name of the token Secret.
pub const SECRET_NAME: &str = "tokensecret";
/// Data key of the token Secret holding the current full token.
pub const SECRET_DATA_KEY: &str = "tokendata";
/// How long a new token is valid (v1.3: 24 h).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
const KEY_LABEL: &[u8] = b"kubeedge bootstrap token signing key v1";

/// Token errors. Their texts are what the edge and `/edge.crt` callers see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not `<64 hex>.<header>.<payload>.<signature>`.
    #[error(
        "malformed token: {0}; expected <caHash>.<jwt> as printed by `keadm gettoken` (64 hex digits, a dot, then a JWT)"
    )]
    Malformed(String),
    /// The signature does not verify with this CA's key.
    #[error(
        "invalid token: its signature does not match this cloudcore's CA (a token from another cluster, or altered); get a fresh one with `keadm gettoken`"
    )]
    BadSignature,
    /// `exp` is in the past.
    #[error(
        "token expired at {exp} (Unix time; now {now}): get a fresh one with `keadm gettoken` (if the token is new, check the clocks of cloud and edge)"
    )]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The full token names another CA than this cloudcore's.
    #[error("token is for another CA (caHash {0}): get a token from this cluster with `keadm gettoken`")]
    WrongCa(String),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Hex SHA-256 of a CA certificate's DER (the `caHash` part of a token).
pub fn ca_hash(ca_der: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, ca_der).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Seconds since the Unix epoch by this machine's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A parsed `<caHash>.<jwt>` token (no signature check: the edge cannot check it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Lower-case hex SHA-256 of the CA certificate DER.
    pub ca_hash: String,
    /// The JWT (`header.payload.signature`), the bearer credential.
    pub jwt: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("jwt", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ca_hash, self.jwt)
    }
}

impl std::str::FromStr for Token {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl Token {
    /// Parses `<caHash>.<jwt>` (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let (hash, jwt) = s
            .split_once('.')
            .ok_or_else(|| Error::Malformed("no '.' after the CA hash".into()))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Malformed(format!(
                "the CA hash {hash:?} is not 64 hex digits"
            )));
        }
        split_jwt(jwt)?;
        Ok(Self {
            ca_hash: hash.to_ascii_lowercase(),
            jwt: jwt.to_owned(),
        })
    }

    /// The `exp` claim, read without checking the signature (for a local clock-skew hint).
    pub fn expires_unverified(&self) -> Option<u64> {
        let (_, payload, _) = split_jwt(&self.jwt).ok()?;
        exp_claim(payload).ok()
    }
}

/// `header.payload.signature`, each non-empty base64url.
fn split_jwt(jwt: &str) -> Result<(&str, &str, &str)> {
    let mut parts = jwt.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None)
            if [h, p, s].iter().all(|x| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }) =>
        {
            Ok((h, p, s))
        }
        _ => Err(Error::Malformed(
            "the JWT is not three base64url parts separated by '.'".into(),
        )),
    }
}

fn exp_claim(payload_b64: &str) -> Result<u64> {
    let raw = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|e| Error::Malformed(format!("JWT payload is not base64url: {e}")))?;
    let claims: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::Malformed(format!("JWT payload is not JSON: {e}")))?;
    let exp = &claims["exp"];
    exp.as_u64()
        // Go's jwt library writes exp as a number; accept a float too.
        .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .ok_or_else(|| Error::Malformed("JWT has no numeric exp claim".into()))
}

/// The key that signs and verifies tokens of one CA.
pub struct TokenKey {
    key: hmac::Key,
    ca_hash: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key from raw secret bytes, for a CA whose certificate has hash `ca_hash`.
    pub fn new(secret: &[u8], ca_hash: String) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ca_hash,
        }
    }

    /// The key of a CA: HMAC-SHA256 of a fixed label under the CA private key (PKCS#8 DER).
    pub fn from_ca(ca: &crate::Ca) -> Self {
        let ca_key = hmac::Key::new(hmac::HMAC_SHA256, &ca.key_pkcs8_der());
        let derived = hmac::sign(&ca_key, KEY_LABEL);
        Self::new(derived.as_ref(), ca_hash(ca.cert_der()))
    }

    /// The CA hash tokens of this key carry.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// A token expiring at `exp` (Unix seconds).
    pub fn issue_until(&self, exp: u64) -> Token {
        let header = URL_SAFE_NO_PAD.encode(JWT_HEADER);
        let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#));
        let signing_input = format!("{header}.{payload}");
        let sig = hmac::sign(&self.key, signing_input.as_bytes());
        Token {
            ca_hash: self.ca_hash.clone(),
            jwt: format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        }
    }

    /// A token valid for `validity` from now.
    pub fn issue(&self, validity: Duration) -> Token {
        self.issue_until(unix_now().saturating_add(validity.as_secs()))
    }

    /// Checks a bearer credential — the JWT alone (what v1.3 edges send) or the full
    /// `<caHash>.<jwt>` token — at time `now`; returns its `exp`.
    pub fn verify_at(&self, bearer: &str, now: u64) -> Result<u64> {
        let bearer = bearer.trim();
        let jwt = match Token::parse(bearer) {
            Ok(full) => {
                if full.ca_hash != self.ca_hash {
                    return Err(Error::WrongCa(full.ca_hash));
                }
                full.jwt
            }
            Err(_) => bearer.to_owned(),
        };
        let (h, p, s) = split_jwt(&jwt)?;
        let header = URL_SAFE_NO_PAD
            .decode(h)
            .map_err(|e| Error::Malformed(format!("JWT header is not base64url: {e}")))?;
        let header: serde_json::Value = serde_json::from_slice(&header)
            .map_err(|e| Error::Malformed(format!("JWT header is not JSON: {e}")))?;
        if header["alg"] != "HS256" {
            return Err(Error::Malformed(format!(
                "JWT algorithm {} is not HS256",
                header["alg"]
            )));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| Error::Malformed(format!("JWT signature is not base64url: {e}")))?;
        hmac::verify(&self.key, format!("{h}.{p}").as_bytes(), &sig).map_err(|_| Error::BadSignature)?;
        let exp = exp_claim(p)?;
        if exp <= now {
            return Err(Error::Expired { exp, now });
        }
        Ok(exp)
    }

    /// [`Self::verify_at`] by this machine's clock.
    pub fn verify(&self, bearer: &str) -> Result<u64> {
        self.verify_at(bearer, unix_now())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Ca;

    #[test]
    fn ca_hash_is_hex_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            ca_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_round_trip_and_expiry() {
        let ca = Ca::create("t").unwrap();
        let key = TokenKey::from_ca(&ca);
        assert_eq!(key.ca_hash(), ca_hash(ca.cert_der()));
        let t = key.issue_until(2_000);
        let text = t.to_string();
        let parsed = Token::parse(&text).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.ca_hash, ca_hash(ca.cert_der()));
        assert_eq!(parsed.expires_unverified(), Some(2_000));
        // Both the JWT alone (v1.3 edges) and the full token verify.
        assert_eq!(key.verify_at(&t.jwt, 1_999), Ok(2_000));
        assert_eq!(key.verify_at(&text, 1_000), Ok(2_000));
        assert_eq!(
            key.verify_at(&t.jwt, 2_000),
            Err(Error::Expired {
                exp: 2_000,
                now: 2_000
            })
        );
        // A default token is valid for a day.
        let exp = key.verify(&key.issue(DEFAULT_VALIDITY).jwt).unwrap();
        assert!(exp > unix_now() + 23 * 3600);
        assert!(!format!("{t:?}").contains(&t.jwt));
    }

    #[test]
    fn another_ca_or_a_tampered_token_is_refused() {
        let a = TokenKey::from_ca(&Ca::create("a").unwrap());
        let b = TokenKey::from_ca(&Ca::create("b").unwrap());
        let t = a.issue_until(u64::MAX / 2);
        assert_eq!(b.verify_at(&t.jwt, 0), Err(Error::BadSignature));
        assert!(matches!(b.verify_at(&t.to_string(), 0), Err(Error::WrongCa(_))));
        // A longer exp in the payload breaks the signature.
        let (h, _, s) = split_jwt(&t.jwt).unwrap();
        let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(r#"{"exp":99999999999}"#));
        assert_eq!(a.verify_at(&forged, 0), Err(Error::BadSignature));
        // alg "none" is refused before any signature logic.
        let none = format!(
            "{}.{}.{s}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"exp":99999999999}"#)
        );
        assert!(matches!(a.verify_at(&none, 0), Err(Error::Malformed(_))));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (bad, needle) in [
            ("", "no '.'"),
            ("abc.def", "64 hex digits"),
            (&format!("{}.x.y", "a".repeat(64)), "three base64url parts"),
            (&format!("{}.a.b.c.d", "0".repeat(64)), "three base64url parts"),
            (&format!("{}.a b.c.d", "0".repeat(64)), "three base64url parts"),
        ] {
            let e = Token::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("keadm gettoken"), "{bad:?}: {e}");
        }
        let key = TokenKey::from_ca(&Ca::create("a").unwrap());
        assert!(matches!(key.verify_at("garbage", 0), Err(Error::Malformed(_))));
    }
}
