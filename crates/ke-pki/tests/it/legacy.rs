//! Stock KubeEdge v1.2 certificates, made with the `openssl` CLI the way `build/tools/certgen.sh` does:
//! RSA-4096 CA key encrypted with DES3 (passphrase kubeedge.io), self-signed rootCA.crt, RSA-2048
//! PKCS#1 edge.key, X.509 v1 edge.crt (CN kubeedge.io, no SAN) signed by the CA. Needs Debian's `openssl`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ke_pki::tls::{self, TlsMaterial};
use ke_pki::{Ca, PeerIdentity};
use rustls::ProtocolVersion;

use crate::common::{client_cfg, handshake, server_cfg, tls12_client};

const SUBJECT: &str = "/C=CN/ST=Zhejiang/L=Hangzhou/O=KubeEdge/CN=kubeedge.io";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the `openssl` CLI is required (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of one stock certgen run.
struct Stock {
    ca_crt: PathBuf,
    /// Encrypted, as certgen.sh leaves it.
    ca_key: PathBuf,
    /// Decrypted to PKCS#1 (`openssl rsa -traditional`).
    ca_key_plain: PathBuf,
    crt: PathBuf,
    key: PathBuf,
}

fn stock_certgen(dir: &Path) -> Stock {
    openssl(
        dir,
        &[
            "genrsa",
            "-des3",
            "-out",
            "rootCA.key",
            "-passout",
            "pass:kubeedge.io",
            "4096",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-key",
            "rootCA.key",
            "-sha256",
            "-days",
            "3650",
            "-subj",
            SUBJECT,
            "-passin",
            "pass:kubeedge.io",
            "-out",
            "rootCA.crt",
        ],
    );
    openssl(dir, &["genrsa", "-traditional", "-out", "edge.key", "2048"]);
    openssl(
        dir,
        &[
            "req", "-new", "-key", "edge.key", "-subj", SUBJECT, "-out", "edge.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "edge.csr",
            "-CA",
            "rootCA.crt",
            "-CAkey",
            "rootCA.key",
            "-CAcreateserial",
            "-passin",
            "pass:kubeedge.io",
            "-out",
            "edge.crt",
            "-days",
            "365",
            "-sha256",
        ],
    );
    openssl(
        dir,
        &[
            "rsa",
            "-traditional",
            "-in",
            "rootCA.key",
            "-passin",
            "pass:kubeedge.io",
            "-out",
            "rootCA.key.plain",
        ],
    );
    Stock {
        ca_crt: dir.join("rootCA.crt"),
        ca_key: dir.join("rootCA.key"),
        ca_key_plain: dir.join("rootCA.key.plain"),
        crt: dir.join("edge.crt"),
        key: dir.join("edge.key"),
    }
}

#[tokio::test]
async fn stock_v12_certificates_work_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let s = stock_certgen(dir.path());

    // The fixture really is what v1.2 produced: PKCS#1 RSA key, X.509 v1 leaf without SAN.
    let key_text = std::fs::read_to_string(&s.key).unwrap();
    assert!(key_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let info = ke_pki::verify::verify_leaf_files(&s.crt, &s.ca_crt).unwrap();
    assert_eq!(info.version, 1);
    assert!(info.sans.is_empty());
    assert_eq!(info.common_name.as_deref(), Some("kubeedge.io"));

    // TLS 1.3 (default configs from files), the same pair on both sides as v1.2 does.
    let server = tls::server_config(&s.ca_crt, &s.crt, &s.key).unwrap();
    let client = tls::client_config(&s.ca_crt, &s.crt, &s.key).unwrap();
    let (id, version) = handshake(server.clone(), client, "127.0.0.1").await.assert_ok();
    assert_eq!(id, PeerIdentity::Legacy);
    assert_eq!(version, ProtocolVersion::TLSv1_3);

    // TLS 1.2 (the only version of a Go 1.12-built v1.2 cloudcore): ECDHE-RSA, handshake signatures
    // made with the v1 certificates' RSA keys.
    let m = TlsMaterial::from_files(&s.ca_crt, &s.crt, &s.key).unwrap();
    let client = tls12_client(&m.ca, Some((m.chain.clone(), m.key.clone_key())));
    let (id, version) = handshake(server, client, "127.0.0.1").await.assert_ok();
    assert_eq!(id, PeerIdentity::Legacy);
    assert_eq!(version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn stock_certificates_of_another_cluster_are_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let a = stock_certgen(ours.path());
    let b = stock_certgen(theirs.path());

    // Their edge (trusting our CA to reach us) presents a v1 cert from their CA: our server refuses.
    let server = tls::server_config(&a.ca_crt, &a.crt, &a.key).unwrap();
    let intruder = tls::client_config(&a.ca_crt, &b.crt, &b.key).unwrap();
    let (server_err, _) = handshake(server, intruder, "127.0.0.1").await.assert_refused();
    assert!(server_err.contains("UnknownIssuer"), "{server_err}");

    // Their v1 server cert is refused by our client.
    let fake = tls::server_config(&b.ca_crt, &b.crt, &b.key).unwrap();
    let client = tls::client_config(&a.ca_crt, &a.crt, &a.key).unwrap();
    let (_, client_err) = handshake(fake, client, "127.0.0.1").await.assert_refused();
    assert!(client_err.contains("UnknownIssuer"), "{client_err}");

    let err = ke_pki::verify::verify_leaf_files(&b.crt, &a.ca_crt).unwrap_err();
    assert!(err.to_string().contains(&b.crt.display().to_string()), "{err}");
}

#[tokio::test]
async fn decrypted_stock_ca_issues_certificates_that_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let s = stock_certgen(dir.path());

    // certgen.sh encrypts rootCA.key: the error says how to decrypt it.
    let err = Ca::load(&s.ca_crt, &s.ca_key).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&s.ca_key.display().to_string()) && msg.contains("pass:kubeedge.io"),
        "{msg}"
    );

    // Decrypted (PKCS#1 RSA 4096), it signs new ECDSA certificates.
    let ca = Ca::load(&s.ca_crt, &s.ca_key_plain).unwrap();
    let server = ca.issue_server("cloudcore", &["127.0.0.1".to_owned()]).unwrap();
    let node = ca.issue_node("edge-node1").unwrap();
    let ca_pem = std::fs::read_to_string(&s.ca_crt).unwrap();
    ke_pki::verify::verify_leaf_pem(node.cert_pem.as_bytes(), ca_pem.as_bytes()).unwrap();

    let (id, _) = handshake(
        server_cfg(&ca_pem, &server),
        client_cfg(&ca_pem, &node),
        "127.0.0.1",
    )
    .await
    .assert_ok();
    assert_eq!(id, PeerIdentity::Node("edge-node1".into()));

    // A not-yet-migrated edge with the stock shared cert still connects to the new server.
    let legacy_client = tls::client_config(&s.ca_crt, &s.crt, &s.key).unwrap();
    let (id, _) = handshake(server_cfg(&ca_pem, &server), legacy_client, "127.0.0.1")
        .await
        .assert_ok();
    assert_eq!(id, PeerIdentity::Legacy);
}

#[test]
fn sec1_and_pkcs8_ec_ca_keys_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    let text = std::fs::read_to_string(d.join("ec.key")).unwrap();
    assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----"));
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ec.key",
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=ec-ca",
            "-out",
            "ec.crt",
        ],
    );
    openssl(
        d,
        &["pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec.p8"],
    );
    for key in ["ec.key", "ec.p8"] {
        let ca = Ca::load(&d.join("ec.crt"), &d.join(key)).unwrap();
        let node = ca.issue_node("edge-node1").unwrap();
        let p = node.write(d, "node").unwrap();
        ke_pki::verify::verify_leaf_files(&p.cert, &d.join("ec.crt")).unwrap();
    }
}
