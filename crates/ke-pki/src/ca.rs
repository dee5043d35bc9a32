//! The certificate authority and the certificates it issues (rcgen on ring).
//!
//! New keys are ECDSA P-256 (ring cannot generate RSA). An existing CA — including a stock KubeEdge v1.2
//! RSA-4096 `rootCA.key`, once decrypted — can be loaded and used to issue new certificates.
//!
//! * [`Ca::create`]: self-signed CA, valid 10 years.
//! * [`Ca::issue_server`]: cloudcore's certificate (SANs = IPs / DNS names edges dial), 1 year.
//! * [`Ca::issue_node`]: an edge node's client certificate, CN = node name, 1 year.
//!
//! Every certificate is back-dated by [`BACKDATE`] so a peer whose clock is slightly behind accepts it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::identity::{LEGACY_COMMON_NAME, is_node_name};
use crate::{fsutil, load};

/// File name of the CA certificate inside the CA directory (KubeEdge name).
pub const CA_CERT_FILE: &str = "rootCA.crt";
/// File name of the CA key inside the CA directory (KubeEdge name).
pub const CA_KEY_FILE: &str = "rootCA.key";
/// Validity of a new CA: 10 years (stock certgen: 3650 days).
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of issued certificates: 1 year (stock certgen: 365 days).
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// How far `notBefore` is set in the past, to tolerate clock skew between cloud and edge.
pub const BACKDATE: Duration = Duration::hours(1);
/// Organization put in the subject of every certificate we issue.
pub const ORGANIZATION: &str = "KubeEdge";

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a PEM file failed.
    #[error(transparent)]
    Load(#[from] load::Error),
    /// rcgen refused to generate or sign.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// The CA key cannot sign with ring.
    #[error(
        "cannot sign with the CA key {key}: {detail}; supported: ECDSA P-256/P-384, Ed25519 and RSA 2048-4096 keys"
    )]
    UnsupportedCaKey {
        /// The key file.
        key: String,
        /// Why.
        detail: String,
    },
    /// The CA certificate is not parsable.
    #[error("{cert} is not a valid X.509 certificate: {detail}")]
    BadCaCert {
        /// The certificate file.
        cert: String,
        /// Why.
        detail: String,
    },
    /// The CA certificate lacks basicConstraints CA:TRUE.
    #[error("{0} is not a CA certificate (basicConstraints CA:TRUE missing): point at the CA's rootCA.crt")]
    NotCa(String),
    /// The key does not belong to the CA certificate.
    #[error(
        "the key {key} does not belong to the certificate {cert}: restore the matching pair (a CA is never overwritten)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// Only one of the two CA files exists.
    #[error(
        "found {} but not {}: restore the missing file, or remove {} to create a new CA (an existing CA is never overwritten)",
        present.display(), missing.display(), present.display()
    )]
    PartialCa {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// A certificate signing request could not be parsed or its signature is wrong.
    #[error("invalid certificate signing request: {0} (expected a PKCS#10 request, DER)")]
    BadCsr(String),
    /// A SAN is neither an IP address nor a DNS name.
    #[error("invalid subjectAltName {0:?}: expected an IP address or a DNS name")]
    InvalidSan(String),
    /// A server certificate without SANs was requested.
    #[error(
        "a server certificate needs at least one subjectAltName: pass the IP addresses and/or DNS names edges use to reach cloudcore"
    )]
    NoSans,
    /// The node name is not a valid Kubernetes node name.
    #[error("{0:?} is not a valid node name: use a lowercase RFC 1123 subdomain (e.g. edge-node1)")]
    InvalidNodeName(String),
    /// The node name is the CN of the legacy shared certificate.
    #[error("{LEGACY_COMMON_NAME:?} cannot be a node name: it is the CN of the legacy shared certificate")]
    ReservedNodeName,
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
    let what = what.into();
    move |source| Error::Generate { what, source }
}

/// A PEM certificate and its PEM private key (PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct CertKeyPair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8 for keys we generate). Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for CertKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKeyPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Paths of a written certificate/key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPair {
    /// `<dir>/<stem>.crt`, mode 0644.
    pub cert: PathBuf,
    /// `<dir>/<stem>.key`, mode 0600.
    pub key: PathBuf,
}

impl CertKeyPair {
    /// Writes `<dir>/<stem>.crt` (0644) and `<dir>/<stem>.key` (0600), creating `dir`; existing files
    /// are replaced atomically.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<WrittenPair> {
        let paths = WrittenPair {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        fsutil::ensure_dir(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let write = |path: &Path, data: &str, mode| {
            fsutil::write_replace(path, data.as_bytes(), mode).map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })
        };
        write(&paths.key, &self.key_pem, fsutil::KEY_MODE)?;
        write(&paths.cert, &self.cert_pem, fsutil::CERT_MODE)?;
        Ok(paths)
    }

    /// The certificate as DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>> {
        let mut certs = load::certs_from_pem(self.cert_pem.as_bytes(), "<certificate PEM>")?;
        Ok(certs.swap_remove(0))
    }

    /// The private key as DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>> {
        Ok(load::key_from_pem(self.key_pem.as_bytes(), "<key PEM>")?)
    }
}

/// Whether [`Ca::load_or_create`] found a CA or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// An existing CA was loaded (and left untouched).
    Loaded,
    /// No CA existed: a new one was created and written.
    Created,
}

/// A certificate authority able to issue certificates.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn subject(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    dn
}

/// Parameters with our subject and validity window starting [`BACKDATE`] ago.
fn base_params(cn: &str, validity: Duration) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(cn);
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params
}

impl Ca {
    /// Creates a new self-signed CA (ECDSA P-256, 10 years) with subject `O=KubeEdge, CN=<subject_cn>`.
    pub fn create(subject_cn: &str) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err("the CA key"))?;
        let mut params = base_params(subject_cn, CA_VALIDITY);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(gen_err("the CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key files (key: PKCS#8, PKCS#1 RSA or SEC1 EC, unencrypted).
    pub fn load(ca_crt_path: &Path, ca_key_path: &Path) -> Result<Self> {
        let cert = load::read_file(ca_crt_path)?;
        let key = load::read_file(ca_key_path)?;
        Self::from_pem_named(
            &cert,
            &ca_crt_path.display().to_string(),
            &key,
            &ca_key_path.display().to_string(),
        )
    }

    /// Loads a CA from PEM text.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        Self::from_pem_named(cert_pem, "<CA certificate PEM>", key_pem, "<CA key PEM>")
    }

    fn from_pem_named(cert_pem: &[u8], cert_name: &str, key_pem: &[u8], key_name: &str) -> Result<Self> {
        let cert_der = load::certs_from_pem(cert_pem, cert_name)?.swap_remove(0);
        let key = load::key_from_pem(key_pem, key_name)?;
        let pkcs8 = load::to_pkcs8(&key, key_name)?;
        let key = KeyPair::try_from(pkcs8.secret_pkcs8_der()).map_err(|e| Error::UnsupportedCaKey {
            key: key_name.to_owned(),
            detail: e.to_string(),
        })?;
        let (_, parsed) = X509Certificate::from_der(&cert_der).map_err(|e| Error::BadCaCert {
            cert: cert_name.to_owned(),
            detail: e.to_string(),
        })?;
        // v1 certificates have no extensions at all; accept them (old self-signed CAs), require CA:TRUE
        // from v3 ones.
        if parsed.version() != x509_parser::x509::X509Version::V1 && !parsed.is_ca() {
            return Err(Error::NotCa(cert_name.to_owned()));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(Error::KeyMismatch {
                cert: cert_name.to_owned(),
                key: key_name.to_owned(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| Error::BadCaCert {
            cert: cert_name.to_owned(),
            detail: e.to_string(),
        })?;
        let cert_pem = String::from_utf8_lossy(cert_pem).into_owned();
        Ok(Self {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Loads `<ca_dir>/rootCA.crt` + `<ca_dir>/rootCA.key`, or creates and writes a new CA (subject CN
    /// [`crate::certgen::DEFAULT_CA_CN`]) when neither exists. An existing CA is never overwritten; if
    /// only one of the two files exists this fails with [`Error::PartialCa`].
    pub fn load_or_create(ca_dir: &Path) -> Result<(Self, Provenance)> {
        let crt = ca_dir.join(CA_CERT_FILE);
        let key = ca_dir.join(CA_KEY_FILE);
        match (crt.exists(), key.exists()) {
            (true, true) => Ok((Self::load(&crt, &key)?, Provenance::Loaded)),
            (true, false) => Err(Error::PartialCa {
                present: crt,
                missing: key,
            }),
            (false, true) => Err(Error::PartialCa {
                present: key,
                missing: crt,
            }),
            (false, false) => {
                let ca = Self::create(crate::certgen::DEFAULT_CA_CN)?;
                ca.write_new(ca_dir)?;
                tracing::info!(dir = %ca_dir.display(), "created a new CA");
                Ok((ca, Provenance::Created))
            }
        }
    }

    /// Writes `<dir>/rootCA.key` (0600) then `<dir>/rootCA.crt` (0644); fails if either exists.
    pub fn write_new(&self, dir: &Path) -> Result<()> {
        fsutil::ensure_dir(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let key_pem = self.key_pem();
        for (name, data, mode) in [
            (CA_KEY_FILE, key_pem.as_str(), fsutil::KEY_MODE),
            (CA_CERT_FILE, self.cert_pem.as_str(), fsutil::CERT_MODE),
        ] {
            let path = dir.join(name);
            fsutil::write_new(&path, data.as_bytes(), mode)
                .map_err(|source| Error::Write { path, source })?;
        }
        Ok(())
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key as PKCS#8 PEM. Secret.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// The CA private key as PKCS#8 DER. Secret.
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.issuer.key().serialize_der()
    }

    /// Issues a certificate for a fresh ECDSA P-256 key from caller-built rcgen parameters (the escape
    /// hatch; prefer [`Ca::issue_server`] / [`Ca::issue_node`]).
    pub fn issue_with_params(&self, mut params: CertificateParams) -> Result<CertKeyPair> {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err("a certificate key"))?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err("a certificate"))?;
        Ok(CertKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// cloudcore's server certificate: subject CN `cn`, SANs from `sans` (each an IP address or a DNS
    /// name; at least one), EKU serverAuth only (so its key cannot log in as an edge node), valid
    /// 1 year.
    pub fn issue_server(&self, cn: &str, sans: &[String]) -> Result<CertKeyPair> {
        if sans.is_empty() {
            return Err(Error::NoSans);
        }
        let mut params = base_params(cn, LEAF_VALIDITY);
        params.subject_alt_names = sans.iter().map(|s| parse_san(s)).collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_with_params(params)
    }

    /// An edge node's client certificate: subject CN = `node_name` (how the cloud knows who speaks), EKU
    /// clientAuth, valid 1 year.
    pub fn issue_node(&self, node_name: &str) -> Result<CertKeyPair> {
        self.issue_with_params(node_params(node_name)?)
    }

    /// Signs a node's PKCS#10 certificate signing request (DER), the token-bootstrap path: the
    /// certificate gets the same profile as [`Ca::issue_node`] (CN = `node_name`, EKU clientAuth,
    /// 1 year) whatever subject or extensions the request asks for; only its public key is used,
    /// after the request's self-signature is checked. Returns the certificate, DER.
    pub fn sign_node_csr(&self, node_name: &str, csr_der: &[u8]) -> Result<CertificateDer<'static>> {
        let mut params = node_params(node_name)?;
        let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| Error::BadCsr(e.to_string()))?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(gen_err("a node certificate"))?;
        Ok(cert.der().clone())
    }
}

/// The profile of an edge node's client certificate.
fn node_params(node_name: &str) -> Result<CertificateParams> {
    if node_name == LEGACY_COMMON_NAME {
        return Err(Error::ReservedNodeName);
    }
    if !is_node_name(node_name) {
        return Err(Error::InvalidNodeName(node_name.to_owned()));
    }
    let mut params = base_params(node_name, LEAF_VALIDITY);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A fresh node key and a certificate signing request for it (what an edge sends to `/edge.crt`).
pub struct NodeCsr {
    /// The private key, PKCS#8 PEM. Secret.
    pub key_pem: String,
    /// The PKCS#10 request, DER (subject `O=KubeEdge, CN=<node>`, signed by the key).
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for NodeCsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCsr")
            .field("key_pem", &"<redacted>")
            .field("csr_der", &format_args!("{} bytes", self.csr_der.len()))
            .finish()
    }
}

impl NodeCsr {
    /// Generates an ECDSA P-256 key and a CSR with subject CN = `node_name`.
    pub fn generate(node_name: &str) -> Result<Self> {
        if !is_node_name(node_name) || node_name == LEGACY_COMMON_NAME {
            return Err(Error::InvalidNodeName(node_name.to_owned()));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err("a node key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(node_name);
        let csr = params
            .serialize_request(&key)
            .map_err(gen_err("a certificate signing request"))?;
        Ok(Self {
            key_pem: key.serialize_pem(),
            csr_der: csr.der().to_vec(),
        })
    }
}

/// An IP address or DNS name as a SAN entry.
fn parse_san(s: &str) -> Result<SanType> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns_ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').enumerate().all(|(i, label)| {
            (!label.is_empty() && label.len() <= 63)
                && (label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') || (i == 0 && label == "*"))
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !dns_ok {
        return Err(Error::InvalidSan(s.to_owned()));
    }
    let name = rcgen::string::Ia5String::try_from(s.to_ascii_lowercase())
        .map_err(|_| Error::InvalidSan(s.to_owned()))?;
    Ok(SanType::DnsName(name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sans_parse_ips_and_names() {
        assert!(matches!(parse_san("10.0.0.1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(parse_san("::1"), Ok(SanType::IpAddress(_))));
        assert!(matches!(parse_san("cloud.example.com"), Ok(SanType::DnsName(_))));
        assert!(matches!(parse_san("*.example.com"), Ok(SanType::DnsName(_))));
        for bad in ["", "a b", "-x.com", "x..com", "http://x", "a.*.com"] {
            assert!(matches!(parse_san(bad), Err(Error::InvalidSan(_))), "{bad}");
        }
    }

    #[test]
    fn node_certificate_rules() {
        let ca = Ca::create("test CA").unwrap();
        assert!(matches!(
            ca.issue_node("kubeedge.io"),
            Err(Error::ReservedNodeName)
        ));
        assert!(matches!(
            ca.issue_node("Bad_Name"),
            Err(Error::InvalidNodeName(_))
        ));
        assert!(matches!(ca.issue_server("cloudcore", &[]), Err(Error::NoSans)));
        let pair = ca.issue_node("edge-node1").unwrap();
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn csr_round_trip_gives_the_node_profile() {
        let ca = Ca::create("test CA").unwrap();
        let req = NodeCsr::generate("edge-a").unwrap();
        assert!(!format!("{req:?}").contains("PRIVATE"));
        // The CN comes from the caller (the NodeName header), not from the request.
        let der = ca.sign_node_csr("edge-b", &req.csr_der).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(crate::common_name(&der).unwrap(), "edge-b");
        assert_eq!(
            cert.issuer().to_string(),
            X509Certificate::from_der(ca.cert_der())
                .unwrap()
                .1
                .subject()
                .to_string()
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!cert.is_ca());
        // The certificate carries the request's key: it pairs with the generated key for TLS.
        let chain = vec![der.clone()];
        let key = crate::load::key_from_pem(req.key_pem.as_bytes(), "k").unwrap();
        crate::tls::certified_key(chain, key).unwrap();
        crate::verify::verify_leaf_pem(
            crate::certgen::cert_pem(&der).as_bytes(),
            ca.cert_pem().as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn bad_csrs_and_node_names_are_refused() {
        let ca = Ca::create("test CA").unwrap();
        let mut req = NodeCsr::generate("edge-a").unwrap();
        assert!(matches!(
            ca.sign_node_csr("edge-a", b"junk"),
            Err(Error::BadCsr(_))
        ));
        assert!(matches!(
            ca.sign_node_csr("Bad_Name", &req.csr_der),
            Err(Error::InvalidNodeName(_))
        ));
        assert!(matches!(
            ca.sign_node_csr("kubeedge.io", &req.csr_der),
            Err(Error::ReservedNodeName)
        ));
        // Flip a bit of the signature: the self-signature check fails.
        let last = req.csr_der.len() - 1;
        req.csr_der[last] ^= 1;
        assert!(matches!(
            ca.sign_node_csr("edge-a", &req.csr_der),
            Err(Error::BadCsr(_))
        ));
        assert!(NodeCsr::generate("Bad_Name").is_err());
    }

    #[test]
    fn ca_key_mismatch_is_refused() {
        let a = Ca::create("a").unwrap();
        let b = Ca::create("b").unwrap();
        let err = Ca::from_pem(a.cert_pem().as_bytes(), b.key_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn a_leaf_is_not_a_ca() {
        let ca = Ca::create("a").unwrap();
        let leaf = ca.issue_node("n1").unwrap();
        let err = Ca::from_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::NotCa(_)), "{err}");
    }
}
