//! Shared helpers: a one-shot TLS server on 127.0.0.1 and a client that completes a round trip.

use std::sync::Arc;
use std::time::Duration;

use ke_pki::{CertKeyPair, PeerIdentity, identity};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What each side saw.
pub(crate) struct Outcome {
    /// Server: the peer's identity (or why the handshake / identity failed).
    pub(crate) server: Result<PeerIdentity, String>,
    /// Client: negotiated version after a full round trip (or the error).
    pub(crate) client: Result<ProtocolVersion, String>,
}

impl Outcome {
    pub(crate) fn assert_ok(self) -> (PeerIdentity, ProtocolVersion) {
        match (self.server, self.client) {
            (Ok(id), Ok(v)) => (id, v),
            (s, c) => panic!("handshake failed: server={s:?} client={c:?}"),
        }
    }

    pub(crate) fn assert_refused(self) -> (String, String) {
        match (self.server, self.client) {
            (Err(s), Err(c)) => (s, c),
            (s, c) => panic!("handshake should fail on both sides: server={s:?} client={c:?}"),
        }
    }
}

/// Runs one connection: the server accepts, reads one byte and echoes it; the client sends one byte and
/// reads it back. Errors on either side are captured, never panicked on.
pub(crate) async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let id = identity::from_peer_certificates(tls.get_ref().1.peer_certificates())
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        tls.write_all(&b).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(id)
    });
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client_res = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        assert_eq!(&b, b"x");
        tls.get_ref()
            .1
            .protocol_version()
            .ok_or_else(|| "no protocol version".to_owned())
    };
    // A guard against a hung handshake, not a timing assertion.
    let client = tokio::time::timeout(Duration::from_secs(20), client_res)
        .await
        .expect("client hung");
    let server = tokio::time::timeout(Duration::from_secs(20), server_task)
        .await
        .expect("server hung")
        .unwrap();
    Outcome { server, client }
}

pub(crate) fn server_cfg(ca_pem: &str, pair: &CertKeyPair) -> Arc<ServerConfig> {
    ke_pki::tls::server_config_from(
        ke_pki::tls::TlsMaterial::from_pem(
            ca_pem.as_bytes(),
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap()
}

pub(crate) fn client_cfg(ca_pem: &str, pair: &CertKeyPair) -> Arc<ClientConfig> {
    ke_pki::tls::client_config_from(
        ke_pki::tls::TlsMaterial::from_pem(
            ca_pem.as_bytes(),
            pair.cert_pem.as_bytes(),
            pair.key_pem.as_bytes(),
        )
        .unwrap(),
    )
    .unwrap()
}

/// A client restricted to TLS 1.2, built from the public verifier (as a transport with special needs
/// would), presenting `chain`/`key` if given.
pub(crate) fn tls12_client(
    ca: &[CertificateDer<'static>],
    auth: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(ke_pki::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(ke_pki::tls::server_cert_verifier(ca).unwrap());
    let cfg = match auth {
        Some((chain, key)) => builder.with_client_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(ke_pki::tls::certified_key(chain, key).unwrap()),
        )),
        None => builder.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A client presenting no certificate at all (TLS 1.2 and 1.3).
pub(crate) fn anonymous_client(ca_pem: &str) -> Arc<ClientConfig> {
    let ca = ke_pki::load::certs_from_pem(ca_pem.as_bytes(), "ca").unwrap();
    let cfg = ClientConfig::builder_with_provider(ke_pki::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(ke_pki::tls::server_cert_verifier(&ca).unwrap())
        .with_no_client_auth();
    Arc::new(cfg)
}
