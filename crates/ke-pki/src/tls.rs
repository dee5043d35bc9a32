//! rustls configurations for the cloud-edge link, always on the ring provider (never a process default).
//!
//! * [`server_config`] (cloudhub): mutual TLS **required** — a client without a certificate, or with one
//!   not signed by the CA file, fails the handshake. TLS 1.2 and 1.3, no ALPN.
//! * [`client_config`] (edgehub): presents the node certificate and verifies the server chain against the
//!   CA. Hostname verification applies when the server certificate carries SANs; a legacy server
//!   certificate without any SAN (stock v1.2 `edge.crt`, CN `kubeedge.io`) is accepted when it is signed
//!   by the CA, with a warning.
//!
//! Stock v1.2 `certgen.sh` produces X.509 **v1** leaf certificates, which webpki refuses outright; both
//! verifiers here accept a v1 leaf when it is signed directly by a configured CA and currently valid
//! (see `chain.rs`). Everything else is delegated to rustls' webpki verifiers.
//!
//! The building blocks ([`client_cert_verifier`], [`server_cert_verifier`], [`provider`]) are public so
//! transports with special needs (QUIC: TLS 1.3 only, ALPN) can assemble their own configs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::chain::{self, Anchors};
use crate::{der, load};

/// Errors while building TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing a PEM file failed.
    #[error(transparent)]
    Load(#[from] load::Error),
    /// A certificate of the CA file cannot be used as a trust anchor.
    #[error(
        "certificate #{index} in {ca} cannot be used as a CA: {detail}; the CA file must hold PEM CA certificates (rootCA.crt)"
    )]
    BadCa {
        /// The CA file or source.
        ca: String,
        /// Position of the bad certificate (0-based).
        index: usize,
        /// Why.
        detail: String,
    },
    /// The certificate and key were refused by rustls (mismatch, unsupported key type, ...).
    #[error(
        "cannot use certificate {cert} with key {key}: {source}; check that the key belongs to the certificate"
    )]
    CertKey {
        /// Certificate source.
        cert: String,
        /// Key source.
        key: String,
        /// The rustls error.
        source: rustls::Error,
    },
    /// Building a configuration or verifier failed.
    #[error("cannot build the TLS {what}: {detail}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The crypto provider used for everything in this crate: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// CA certificates, our certificate chain and its key, with the names they came from (for errors).
#[derive(Debug)]
pub struct TlsMaterial {
    /// Trusted CA certificates.
    pub ca: Vec<CertificateDer<'static>>,
    /// Our certificate, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    names: [String; 3],
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            names: self.names.clone(),
        }
    }
}

impl TlsMaterial {
    /// Material from already-parsed DER (names in errors are generic).
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        Self {
            ca,
            chain,
            key,
            names: ["<CA>".into(), "<certificate>".into(), "<key>".into()],
        }
    }

    /// Reads the CA file, the certificate (chain) file and the key file (PKCS#8, PKCS#1 or SEC1).
    pub fn from_files(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Result<Self> {
        Ok(Self {
            ca: load::load_certs(ca_file)?,
            chain: load::load_certs(cert_file)?,
            key: load::load_key(key_file)?,
            names: [ca_file, cert_file, key_file].map(|p| p.display().to_string()),
        })
    }

    /// Parses in-memory PEM.
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let mut m = Self::new(
            load::certs_from_pem(ca_pem, "<CA PEM>")?,
            load::certs_from_pem(cert_pem, "<certificate PEM>")?,
            load::key_from_pem(key_pem, "<key PEM>")?,
        );
        m.names = ["<CA PEM>".into(), "<certificate PEM>".into(), "<key PEM>".into()];
        Ok(m)
    }

    fn warn_if_outside_validity(&self) {
        let Some(leaf) = self.chain.first() else {
            return;
        };
        if let Ok((_, cert)) = X509Certificate::from_der(leaf)
            && !cert.validity().is_valid()
        {
            tracing::warn!(
                cert = %self.names[1],
                not_before = %cert.validity().not_before,
                not_after = %cert.validity().not_after,
                "our certificate is outside its validity period (expired, or this clock is wrong): peers will refuse it; regenerate it with `keadm certgen` or fix the clock"
            );
        }
    }
}

/// cloudhub's server configuration from files: mutual TLS required, TLS 1.2 and 1.3.
pub fn server_config(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>> {
    server_config_from(TlsMaterial::from_files(ca_file, cert_file, key_file)?)
}

/// cloudhub's server configuration from loaded material.
pub fn server_config_from(material: TlsMaterial) -> Result<Arc<ServerConfig>> {
    material.warn_if_outside_validity();
    let verifier = client_cert_verifier_named(&material.ca, &material.names[0])?;
    let [_, cert, key] = material.names;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| build_err("server configuration", e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key_named(
            material.chain,
            material.key,
            cert,
            key,
        )?)));
    Ok(Arc::new(config))
}

/// edgehub's client configuration from files: presents the certificate, verifies the server against the
/// CA (hostname checked when the server certificate has SANs).
pub fn client_config(ca_file: &Path, cert_file: &Path, key_file: &Path) -> Result<Arc<ClientConfig>> {
    client_config_from(TlsMaterial::from_files(ca_file, cert_file, key_file)?)
}

/// edgehub's client configuration from loaded material.
pub fn client_config_from(material: TlsMaterial) -> Result<Arc<ClientConfig>> {
    material.warn_if_outside_validity();
    let verifier = server_cert_verifier_named(&material.ca, &material.names[0])?;
    let [_, cert, key] = material.names;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| build_err("client configuration", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified_key_named(
            material.chain,
            material.key,
            cert,
            key,
        )?)));
    Ok(Arc::new(config))
}

/// cloudhub's certificate-bootstrap HTTPS server (`modules.cloudhub.https`): the cloudhub server
/// certificate, **no** client certificate asked for (edges come with a token, not yet a certificate).
pub fn bootstrap_server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>> {
    let chain = load::load_certs(cert_file)?;
    let key = load::load_key(key_file)?;
    let ck = certified_key_named(
        chain,
        key,
        cert_file.display().to_string(),
        key_file.display().to_string(),
    )?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| build_err("bootstrap server configuration", e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(ck)));
    Ok(Arc::new(config))
}

/// The edge's client for certificate bootstrap; presents no certificate. With `Some(ca)` the server
/// is verified as edgehub verifies it ([`server_cert_verifier`]); with `None` **any** server
/// certificate is accepted (the handshake signature is still checked) — only for fetching `/ca.crt`,
/// whose content the caller then pins against the token's CA hash.
pub fn bootstrap_client_config(ca: Option<&[CertificateDer<'_>]>) -> Result<Arc<ClientConfig>> {
    let verifier: Arc<dyn ServerCertVerifier> = match ca {
        Some(ca) => server_cert_verifier_named(ca, "<fetched CA>")?,
        None => Arc::new(AnyServerCert(provider().signature_verification_algorithms)),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| build_err("bootstrap client configuration", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate but checks the handshake signature against it.
#[derive(Debug)]
struct AnyServerCert(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Our certificate chain and key, ready for `with_cert_resolver(Arc::new(SingleCertAndKey::from(..)))`
/// / `with_client_cert_resolver(..)`. Unlike rustls' `with_single_cert`, this accepts X.509 v1 leaves
/// (stock v1.2 `edge.crt`); it still checks that the key belongs to the certificate.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey> {
    certified_key_named(chain, key, "<certificate>".into(), "<key>".into())
}

fn certified_key_named(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_name: String,
    key_name: String,
) -> Result<CertifiedKey> {
    let fail = |source: rustls::Error| Error::CertKey {
        cert: cert_name.clone(),
        key: key_name.clone(),
        source,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| fail(rustls::Error::NoCertificatesPresented))?;
    let (_, parsed) = X509Certificate::from_der(leaf).map_err(|_| {
        fail(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))
    })?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(&fail)?;
    if let Some(spki) = signing_key.public_key()
        && spki.as_ref() != parsed.public_key().raw
    {
        return Err(fail(rustls::Error::InconsistentKeys(
            rustls::InconsistentKeys::KeyMismatch,
        )));
    }
    Ok(CertifiedKey::new(chain, signing_key))
}

/// The client-certificate verifier cloudhub uses: a certificate is mandatory and must chain to `ca`.
pub fn client_cert_verifier(ca: &[CertificateDer<'_>]) -> Result<Arc<dyn ClientCertVerifier>> {
    client_cert_verifier_named(ca, "<CA>")
}

/// The server-certificate verifier edgehub uses (see the module docs for the legacy no-SAN rule).
pub fn server_cert_verifier(ca: &[CertificateDer<'_>]) -> Result<Arc<dyn ServerCertVerifier>> {
    server_cert_verifier_named(ca, "<CA>")
}

fn build_err(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Build {
        what,
        detail: e.to_string(),
    }
}

struct Trust {
    roots: Arc<RootCertStore>,
    anchors: Anchors,
    supported: WebPkiSupportedAlgorithms,
}

fn trust(ca: &[CertificateDer<'_>], ca_name: &str) -> Result<(Trust, Arc<CryptoProvider>)> {
    let provider = provider();
    let supported = provider.signature_verification_algorithms;
    let mut roots = RootCertStore::empty();
    for (index, cert) in ca.iter().enumerate() {
        roots.add(cert.clone().into_owned()).map_err(|e| Error::BadCa {
            ca: ca_name.to_owned(),
            index,
            detail: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(load::Error::NoCertificate(ca_name.to_owned()).into());
    }
    let anchors = Anchors::new(ca, supported.all).map_err(|index| Error::BadCa {
        ca: ca_name.to_owned(),
        index,
        detail: "not a parsable X.509 certificate".into(),
    })?;
    let trust = Trust {
        roots: Arc::new(roots),
        anchors,
        supported,
    };
    Ok((trust, provider))
}

fn client_cert_verifier_named(
    ca: &[CertificateDer<'_>],
    ca_name: &str,
) -> Result<Arc<dyn ClientCertVerifier>> {
    let (trust, provider) = trust(ca, ca_name)?;
    let inner = WebPkiClientVerifier::builder_with_provider(trust.roots.clone(), provider)
        .build()
        .map_err(|e| build_err("client certificate verifier", e))?;
    Ok(Arc::new(NodeCertVerifier {
        inner,
        trust,
        warned: AtomicBool::new(false),
    }))
}

fn server_cert_verifier_named(
    ca: &[CertificateDer<'_>],
    ca_name: &str,
) -> Result<Arc<dyn ServerCertVerifier>> {
    let (trust, provider) = trust(ca, ca_name)?;
    let inner = WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider)
        .build()
        .map_err(|e| build_err("server certificate verifier", e))?;
    Ok(Arc::new(CloudCertVerifier {
        inner,
        trust,
        warned: AtomicBool::new(false),
    }))
}

/// Warns the first time, then logs at debug level (reconnect loops would otherwise flood the log).
fn warn_once(flag: &AtomicBool, cert: &CertificateDer<'_>, what: &str) {
    let cn = crate::identity::common_name(cert).unwrap_or_else(|_| "<none>".into());
    if flag.swap(true, Ordering::Relaxed) {
        tracing::debug!(cn = %cn, "{what}");
    } else {
        tracing::warn!(cn = %cn, "{what}");
    }
}

/// Handshake signature of a stock KubeEdge v1.2 X.509 **v1** certificate, which webpki refuses to
/// parse: checked here with the provider's algorithms. `None` for any other certificate, which the
/// wrapped webpki verifier handles.
fn v1_signature(
    trust: &Trust,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Option<Result<HandshakeSignatureValid, rustls::Error>> {
    der::is_v1_cert(cert).then(|| {
        chain::verify_handshake_signature(&trust.supported, message, cert, dss, tls13)
            .map(|()| HandshakeSignatureValid::assertion())
    })
}

/// Verifies edge client certificates for cloudhub.
struct NodeCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust: Trust,
    warned: AtomicBool,
}

impl std::fmt::Debug for NodeCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCertVerifier").finish_non_exhaustive()
    }
}

impl ClientCertVerifier for NodeCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if der::is_v1_cert(end_entity) {
            self.trust.anchors.verify_direct(end_entity, now)?;
            warn_once(
                &self.warned,
                end_entity,
                "accepted a legacy X.509 v1 client certificate (stock KubeEdge v1.2 certgen) signed by our CA",
            );
            return Ok(ClientCertVerified::assertion());
        }
        self.inner.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match v1_signature(&self.trust, message, cert, dss, false) {
            Some(checked) => checked,
            None => self.inner.verify_tls12_signature(message, cert, dss),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match v1_signature(&self.trust, message, cert, dss, true) {
            Some(checked) => checked,
            None => self.inner.verify_tls13_signature(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies cloudhub's server certificate for edgehub.
struct CloudCertVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trust: Trust,
    warned: AtomicBool,
}

impl std::fmt::Debug for CloudCertVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCertVerifier").finish_non_exhaustive()
    }
}

fn has_san(cert: &CertificateDer<'_>) -> Result<bool, rustls::Error> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(parsed
        .subject_alternative_name()
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?
        .is_some_and(|san| !san.value.general_names.is_empty()))
}

impl ServerCertVerifier for CloudCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if der::is_v1_cert(end_entity) {
            self.trust.anchors.verify_direct(end_entity, now)?;
        } else if !has_san(end_entity)? {
            let parsed = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.trust.roots,
                intermediates,
                now,
                self.trust.supported.all,
            )?;
        } else {
            return self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        }
        warn_once(
            &self.warned,
            end_entity,
            "server certificate has no subjectAltName (legacy KubeEdge v1.2 certificate): accepted because it is signed by our CA, without hostname verification",
        );
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match v1_signature(&self.trust, message, cert, dss, false) {
            Some(checked) => checked,
            None => self.inner.verify_tls12_signature(message, cert, dss),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        match v1_signature(&self.trust, message, cert, dss, true) {
            Some(checked) => checked,
            None => self.inner.verify_tls13_signature(message, cert, dss),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
