//! Direct "is this certificate signed by one of these CAs" checks and handshake-signature checks that work
//! for X.509 v1 certificates too.
//!
//! webpki (and so rustls' stock verifiers) only accepts X.509 v3 certificates. Stock KubeEdge v1.2
//! `certgen.sh` signs `edge.crt` with `openssl x509 -req` and no extension file, which yields a **v1**
//! certificate. To stay wire-compatible with such deployments we check v1 leaves ourselves: the leaf must
//! be signed directly by a configured CA (no intermediates, as certgen.sh produces) and be within its
//! validity period. All signature maths goes through the ring provider's webpki algorithms.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::der;

/// One trusted CA, reduced to what a signature check needs.
#[derive(Debug, Clone)]
struct Anchor {
    subject: Vec<u8>,
    spki: Vec<u8>,
}

/// The CA certificates of a trust file, for direct-signature checks.
#[derive(Debug, Clone)]
pub(crate) struct Anchors {
    cas: Vec<Anchor>,
    algs: &'static [&'static dyn SignatureVerificationAlgorithm],
}

/// Why a direct check failed (mapped to rustls errors or to file-naming errors by callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChainError {
    Malformed,
    UnknownIssuer,
    NotValidYet { not_before: i64 },
    Expired { not_after: i64 },
}

impl From<ChainError> for TlsError {
    fn from(e: ChainError) -> Self {
        let c = match e {
            ChainError::Malformed => CertificateError::BadEncoding,
            ChainError::UnknownIssuer => CertificateError::UnknownIssuer,
            ChainError::NotValidYet { .. } => CertificateError::NotValidYet,
            ChainError::Expired { .. } => CertificateError::Expired,
        };
        TlsError::InvalidCertificate(c)
    }
}

/// Validity window of a certificate as Unix seconds.
pub(crate) struct Window {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Anchors {
    /// Builds anchors from CA certificates; a certificate that does not parse is reported by index.
    pub(crate) fn new(
        cas: &[CertificateDer<'_>],
        algs: &'static [&'static dyn SignatureVerificationAlgorithm],
    ) -> Result<Self, usize> {
        let cas = cas
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let (_, ca) = X509Certificate::from_der(der).map_err(|_| i)?;
                Ok(Anchor {
                    subject: ca.subject().as_raw().to_vec(),
                    spki: ca.public_key().raw.to_vec(),
                })
            })
            .collect::<Result<_, usize>>()?;
        Ok(Self { cas, algs })
    }

    /// Checks that `leaf` is signed directly by one of the anchors and that `now` is inside its validity.
    pub(crate) fn verify_direct(&self, leaf: &[u8], now: UnixTime) -> Result<Window, ChainError> {
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| ChainError::Malformed)?;
        let parts = der::cert_parts(leaf).ok_or(ChainError::Malformed)?;
        let issuer = cert.issuer().as_raw();
        let signed = self.cas.iter().any(|ca| {
            ca.subject == issuer
                && verify_with_spki(
                    self.algs,
                    &ca.spki,
                    parts.signature_alg,
                    parts.tbs,
                    parts.signature,
                )
        });
        if !signed {
            return Err(ChainError::UnknownIssuer);
        }
        let window = Window {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < window.not_before {
            return Err(ChainError::NotValidYet {
                not_before: window.not_before,
            });
        }
        if now > window.not_after {
            return Err(ChainError::Expired {
                not_after: window.not_after,
            });
        }
        Ok(window)
    }
}

/// Verifies `signature` over `message` with the key in `spki`, using the algorithm whose identifiers match
/// both the key and `signature_alg` (AlgorithmIdentifier contents).
fn verify_with_spki(
    algs: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    signature_alg: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Some((key_alg, key)) = der::spki_parts(spki) else {
        return false;
    };
    algs.iter().any(|alg| {
        alg.public_key_alg_id().as_ref() == key_alg
            && alg.signature_alg_id().as_ref() == signature_alg
            && alg.verify_signature(key, message, signature).is_ok()
    })
}

/// Verifies a TLS handshake signature made with the key of `cert`, whatever the certificate version
/// (used for v1 certificates, which webpki refuses to parse).
pub(crate) fn verify_handshake_signature(
    supported: &WebPkiSupportedAlgorithms,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<(), TlsError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    if tls13 {
        let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        return rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, supported)
            .map(|_| ());
    }
    let (key_alg, key) = der::spki_parts(parsed.public_key().raw)
        .ok_or(TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    let algs = algorithms_for(supported, dss.scheme)?;
    let alg = algs
        .iter()
        .find(|a| a.public_key_alg_id().as_ref() == key_alg)
        .ok_or(TlsError::InvalidCertificate(CertificateError::BadSignature))?;
    alg.verify_signature(key, message, dss.signature())
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadSignature))
}

fn algorithms_for(
    supported: &WebPkiSupportedAlgorithms,
    scheme: SignatureScheme,
) -> Result<&'static [&'static dyn SignatureVerificationAlgorithm], TlsError> {
    supported
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, algs)| *algs)
        .ok_or(TlsError::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))
}
