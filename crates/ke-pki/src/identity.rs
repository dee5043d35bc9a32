//! Who is speaking: the identity carried by a peer's certificate.
//!
//! Certificates issued by [`crate::Ca::issue_node`] carry the node name as subject CN. Stock KubeEdge
//! v1.2 deployments share one certificate with CN `kubeedge.io` between the cloud and every edge; such
//! a peer is [`PeerIdentity::Legacy`] and the caller decides how far to trust the node id in the URL.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// CN of the certificate that stock KubeEdge v1.2 `certgen.sh` shares between cloud and all edges.
pub const LEGACY_COMMON_NAME: &str = "kubeedge.io";

/// Errors while reading an identity.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer did not present a certificate.
    #[error("the peer presented no certificate (mutual TLS is required)")]
    NoPeerCertificate,
    /// The certificate is not parsable X.509.
    #[error("the peer certificate is not valid X.509: {0}")]
    Parse(String),
    /// The subject has no common name.
    #[error(
        "the peer certificate has no subject common name (CN); issue node certificates with `keadm certgen`"
    )]
    NoCommonName,
    /// The CN cannot be a Kubernetes node name.
    #[error(
        "the peer certificate's common name {0:?} is not a valid node name (lowercase RFC 1123 subdomain)"
    )]
    NotANodeName(String),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The identity a certificate proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A node certificate: the CN is the node name.
    Node(String),
    /// The stock v1.2 shared certificate (CN `kubeedge.io`): it proves membership of the cluster, not which
    /// node is speaking.
    Legacy,
}

impl PeerIdentity {
    /// The node name, for a node certificate.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Self::Node(n) => Some(n),
            Self::Legacy => None,
        }
    }

    /// May this peer speak for `node`? A node certificate only for its own node, a legacy one for any
    /// (KubeEdge v1.2 semantics; callers may choose to refuse legacy peers).
    pub fn may_act_as(&self, node: &str) -> bool {
        match self {
            Self::Node(n) => n == node,
            Self::Legacy => true,
        }
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(n) => write!(f, "node {n}"),
            Self::Legacy => write!(f, "legacy shared certificate (CN {LEGACY_COMMON_NAME})"),
        }
    }
}

/// The first subject common name of `cert`.
pub fn common_name(cert: &CertificateDer<'_>) -> Result<String> {
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| Error::Parse(e.to_string()))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .ok_or(Error::NoCommonName)?;
    cn.as_str()
        .map(str::to_owned)
        .map_err(|e| Error::Parse(format!("common name is not a string: {e}")))
}

/// The identity proven by a peer's leaf certificate.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<PeerIdentity> {
    let cn = common_name(cert)?;
    if cn == LEGACY_COMMON_NAME {
        return Ok(PeerIdentity::Legacy);
    }
    if !is_node_name(&cn) {
        return Err(Error::NotANodeName(cn));
    }
    Ok(PeerIdentity::Node(cn))
}

/// The identity of the peer of a TLS connection, from `peer_certificates()` of a rustls connection
/// (e.g. `tokio_rustls::server::TlsStream::get_ref().1.peer_certificates()`).
pub fn from_peer_certificates(certs: Option<&[CertificateDer<'_>]>) -> Result<PeerIdentity> {
    let leaf = certs.and_then(<[_]>::first).ok_or(Error::NoPeerCertificate)?;
    peer_identity(leaf)
}

/// Is `name` a valid Kubernetes node name (RFC 1123 subdomain: at most 253 characters, dot-separated
/// labels of lowercase alphanumerics and `-`, each starting and ending alphanumeric, at most 63 long)?
pub fn is_node_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && b.len() <= 63
                && b.first().is_some_and(alnum)
                && b.last().is_some_and(alnum)
                && b.iter().all(|c| alnum(c) || *c == b'-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["edge-node1", "a", "node.example.com", "0abc"] {
            assert!(is_node_name(ok), "{ok}");
        }
        for bad in ["", "Edge", "-a", "a-", "a..b", "a_b", &"a".repeat(64), "a/b"] {
            assert!(!is_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn legacy_and_node_may_act_as() {
        assert!(PeerIdentity::Legacy.may_act_as("x"));
        assert!(PeerIdentity::Node("x".into()).may_act_as("x"));
        assert!(!PeerIdentity::Node("x".into()).may_act_as("y"));
    }

    #[test]
    fn no_peer_certificate() {
        assert!(matches!(
            from_peer_certificates(None),
            Err(Error::NoPeerCertificate)
        ));
        assert!(matches!(
            from_peer_certificates(Some(&[])),
            Err(Error::NoPeerCertificate)
        ));
    }
}
