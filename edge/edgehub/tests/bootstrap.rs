//! Certificate bootstrap: the edge client (`edgehub::bootstrap`) against the real cloud endpoint
//! (`cloudhub::https`) on loopback, over real TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudhub::https::{CertServerOptions, serve};
use edgehub::bootstrap::{BootstrapOptions, Error, Outcome, ensure_certificates};
use ke_pki::Ca;
use ke_pki::token::{TokenKey, unix_now};
use tokio_util::sync::CancellationToken;

struct Cloud {
    ca: Arc<Ca>,
    key: Arc<TokenKey>,
    port: u16,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn cloud() -> Cloud {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::create("test CA").unwrap());
    let server = ca.issue_server("cloudcore", &["127.0.0.1".into()]).unwrap();
    let files = server.write(dir.path(), "server").unwrap();
    let tls = ke_pki::tls::bootstrap_server_config(&files.cert, &files.key).unwrap();
    let key = Arc::new(TokenKey::from_ca(&ca));
    let cancel = CancellationToken::new();
    let at = serve(
        CertServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls,
            ca: ca.clone(),
            token_key: key.clone(),
        },
        cancel.clone(),
    )
    .await
    .unwrap();
    Cloud {
        ca,
        key,
        port: at.port(),
        cancel,
        _dir: dir,
    }
}

fn opts(dir: &Path, port: u16, node: &str, token: String) -> BootstrapOptions {
    BootstrapOptions {
        token,
        server_host: "127.0.0.1".into(),
        server_port: port,
        node: node.into(),
        ca_file: dir.join("ca/rootCA.crt"),
        cert_file: dir.join("certs/edge.crt"),
        key_file: dir.join("certs/edge.key"),
        timeout: Duration::from_secs(10),
    }
}

fn no_files(o: &BootstrapOptions) -> bool {
    [&o.ca_file, &o.cert_file, &o.key_file]
        .iter()
        .all(|p| !p.exists())
}

#[tokio::test]
async fn a_valid_token_gets_the_ca_and_a_node_certificate_once() {
    let c = cloud().await;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(
        dir.path(),
        c.port,
        "edge-boot-1",
        c.key.issue(Duration::from_secs(3600)).to_string(),
    );
    assert_eq!(ensure_certificates(&o).await.unwrap(), Outcome::Fetched);

    // The files are a working edgehub TLS set for this node, signed by the cloud's CA.
    let info = ke_pki::verify::verify_leaf_files(&o.cert_file, &o.ca_file).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("edge-boot-1"));
    assert_eq!(
        ke_pki::load::load_certs(&o.ca_file).unwrap()[0].as_ref(),
        c.ca.cert_der().as_ref()
    );
    ke_pki::tls::client_config(&o.ca_file, &o.cert_file, &o.key_file).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&o.key_file), 0o600);
    assert_eq!(mode(&o.cert_file), 0o644);

    // Present files: no fetch, even with a token that would now be refused.
    let again = BootstrapOptions {
        token: "not even a token".into(),
        ..o.clone()
    };
    assert_eq!(ensure_certificates(&again).await.unwrap(), Outcome::Present);
    // No token and missing files: nothing to do here (loading the files reports it).
    let none = opts(&dir.path().join("other"), c.port, "edge-boot-1", String::new());
    assert_eq!(ensure_certificates(&none).await.unwrap(), Outcome::NoToken);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let c = cloud().await;
    let dir = tempfile::tempdir().unwrap();

    // Right CA hash, signed by another cluster's key: 401.
    let other = TokenKey::from_ca(&Ca::create("other").unwrap());
    let mut forged = other.issue(Duration::from_secs(3600));
    forged.ca_hash = c.key.ca_hash().to_owned();
    let o = opts(dir.path(), c.port, "edge-boot-2", forged.to_string());
    let e = ensure_certificates(&o).await.unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string().contains("signature") && e.to_string().contains("keadm gettoken"),
        "{e}"
    );
    assert!(no_files(&o));

    // Expired: 401 saying so, with the local-clock hint.
    let expired = c.key.issue_until(unix_now() - 60);
    let o = opts(dir.path(), c.port, "edge-boot-2", expired.to_string());
    let e = ensure_certificates(&o).await.unwrap_err().to_string();
    assert!(
        e.contains("401") && e.contains("expired") && e.contains("this machine's clock"),
        "{e}"
    );
    assert!(no_files(&o));

    // Tampered CA hash: refused before any credential is sent.
    let mut tampered = c.key.issue(Duration::from_secs(3600));
    tampered.ca_hash = "0".repeat(64);
    let o = opts(dir.path(), c.port, "edge-boot-2", tampered.to_string());
    let e = ensure_certificates(&o).await.unwrap_err();
    assert!(matches!(e, Error::CaHashMismatch { .. }), "{e}");
    assert!(no_files(&o));

    // Malformed token.
    let o = opts(dir.path(), c.port, "edge-boot-2", "abc".into());
    let e = ensure_certificates(&o).await.unwrap_err();
    assert!(matches!(e, Error::Token(_)), "{e}");
    assert!(e.to_string().contains("modules.edgehub.token"), "{e}");
}

#[tokio::test]
async fn bad_node_name_and_unreachable_cloud() {
    let c = cloud().await;
    let dir = tempfile::tempdir().unwrap();
    let token = c.key.issue(Duration::from_secs(3600)).to_string();
    // The edge refuses to make a CSR for an invalid node name.
    let o = opts(dir.path(), c.port, "Bad_Name", token.clone());
    assert!(matches!(ensure_certificates(&o).await, Err(Error::Local(_))));

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = opts(dir.path(), port, "edge-boot-3", token);
    let e = ensure_certificates(&o).await.unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("httpServer"), "{e}");
}

/// The endpoint's own answers to requests the edge client never sends.
#[tokio::test]
async fn endpoint_status_codes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = cloud().await;
    let send = |req: Vec<u8>| async move {
        let tls = ke_pki::tls::bootstrap_client_config(None).unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", c.port))
            .await
            .unwrap();
        let mut s = tokio_rustls::TlsConnector::from(tls)
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap();
        s.write_all(&req).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let ca = send(b"GET /ca.crt HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
    assert!(ca.starts_with("HTTP/1.1 200"), "{ca}");
    let r = send(b"GET /edge.crt HTTP/1.1\r\nHost: x\r\nNodeName: n1\r\n\r\n".to_vec()).await;
    assert!(
        r.starts_with("HTTP/1.1 401") && r.contains("Authorization: Bearer"),
        "{r}"
    );
    let jwt = c.key.issue(Duration::from_secs(60)).jwt;
    let r = send(format!("GET /edge.crt HTTP/1.1\r\nAuthorization: Bearer {jwt}\r\n\r\n").into_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 400") && r.contains("NodeName"), "{r}");
    let r = send(
        format!("GET /edge.crt HTTP/1.1\r\nAuthorization: Bearer {jwt}\r\nNodeName: n1\r\nContent-Length: 4\r\n\r\njunk")
            .into_bytes(),
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("certificate signing request"),
        "{r}"
    );
    let csr = ke_pki::NodeCsr::generate("n1").unwrap().csr_der;
    let mut req = format!(
        "POST /edge.crt HTTP/1.1\r\nAuthorization: Bearer {jwt}\r\nNodeName: Not_A_Node\r\nContent-Length: {}\r\n\r\n",
        csr.len()
    )
    .into_bytes();
    req.extend_from_slice(&csr);
    let r = send(req).await;
    assert!(r.starts_with("HTTP/1.1 400") && r.contains("node name"), "{r}");
    let r = send(b"GET /other HTTP/1.1\r\n\r\n".to_vec()).await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
}
