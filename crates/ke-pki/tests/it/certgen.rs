//! `keadm certgen` as a library: layout, permissions, CA reuse.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ke_pki::certgen::{self, gen_ca, gen_node, gen_server};
use ke_pki::{PeerIdentity, Provenance, tls};

use crate::common::handshake;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn certgen_writes_the_kubeedge_layout_and_reuses_the_ca() {
    let root = tempfile::tempdir().unwrap();
    let ca_dir = root.path().join("etc/kubeedge/ca");
    let certs_dir = root.path().join("etc/kubeedge/certs");

    let ca = gen_ca(&ca_dir).unwrap();
    assert_eq!(ca.provenance, Provenance::Created);
    assert_eq!(ca.cert, ca_dir.join("rootCA.crt"));
    assert_eq!(ca.key, ca_dir.join("rootCA.key"));
    assert_eq!(mode(&ca.key), 0o600);
    assert_eq!(mode(&ca.cert), 0o644);
    let ca_bytes = (std::fs::read(&ca.cert).unwrap(), std::fs::read(&ca.key).unwrap());
    let info =
        ke_pki::verify::cert_info(&ke_pki::load::load_certs(&ca.cert).unwrap()[0], "rootCA.crt").unwrap();
    assert!(info.is_ca);
    let years = (info.not_after - info.not_before).whole_days() / 365;
    assert_eq!(years, 10);

    // Second run: reused, untouched.
    assert_eq!(gen_ca(&ca_dir).unwrap().provenance, Provenance::Loaded);

    let server = gen_server(
        &ca_dir,
        &certs_dir,
        certgen::DEFAULT_SERVER_STEM,
        certgen::DEFAULT_SERVER_CN,
        &["127.0.0.1".to_owned(), "cloud.example".to_owned()],
    )
    .unwrap();
    assert_eq!(server.ca.provenance, Provenance::Loaded);
    assert_eq!(server.pair.cert, certs_dir.join("edge.crt"));
    assert_eq!(server.pair.key, certs_dir.join("edge.key"));
    assert_eq!(mode(&server.pair.key), 0o600);
    assert_eq!(mode(&server.pair.cert), 0o644);
    assert_eq!(mode(&certs_dir), 0o755);

    let node = gen_node(&ca_dir, &certs_dir, "edge-node1", "edge-node1").unwrap();
    assert_eq!(node.pair.cert, certs_dir.join("edge-node1.crt"));
    assert_eq!(mode(&node.pair.key), 0o600);

    assert_eq!(
        (std::fs::read(&ca.cert).unwrap(), std::fs::read(&ca.key).unwrap()),
        ca_bytes,
        "the CA must never be rewritten"
    );

    let s = ke_pki::verify::verify_leaf_files(&server.pair.cert, &ca.cert).unwrap();
    assert_eq!(s.sans, vec!["127.0.0.1".to_owned(), "cloud.example".to_owned()]);
    assert_eq!((s.not_after - s.not_before).whole_days(), 365);
    let n = ke_pki::verify::verify_leaf_files(&node.pair.cert, &ca.cert).unwrap();
    assert_eq!(n.common_name.as_deref(), Some("edge-node1"));

    // The files work as cloudhub / edgehub configuration.
    let server_cfg = tls::server_config(&ca.cert, &server.pair.cert, &server.pair.key).unwrap();
    let client_cfg = tls::client_config(&ca.cert, &node.pair.cert, &node.pair.key).unwrap();
    let (id, _) = handshake(server_cfg, client_cfg, "cloud.example")
        .await
        .assert_ok();
    assert_eq!(id, PeerIdentity::Node("edge-node1".into()));

    // Re-issuing replaces the pair (new key), still with the right modes.
    let old_key = std::fs::read(&node.pair.key).unwrap();
    let again = gen_node(&ca_dir, &certs_dir, "edge-node1", "edge-node1").unwrap();
    assert_ne!(std::fs::read(&again.pair.key).unwrap(), old_key);
    assert_eq!(mode(&again.pair.key), 0o600);
}

#[test]
fn issuing_without_a_ca_creates_one() {
    let root = tempfile::tempdir().unwrap();
    let issued = gen_node(&root.path().join("ca"), &root.path().join("certs"), "n", "n1").unwrap();
    assert_eq!(issued.ca.provenance, Provenance::Created);
    ke_pki::verify::verify_leaf_files(&issued.pair.cert, &issued.ca.cert).unwrap();
}

#[test]
fn a_partial_ca_is_never_overwritten() {
    let root = tempfile::tempdir().unwrap();
    let ca_dir = root.path().join("ca");
    let ca = gen_ca(&ca_dir).unwrap();
    let cert_bytes = std::fs::read(&ca.cert).unwrap();
    std::fs::remove_file(&ca.key).unwrap();

    for result in [
        gen_ca(&ca_dir).map(|_| ()),
        gen_node(&ca_dir, &root.path().join("certs"), "n", "n1").map(|_| ()),
    ] {
        let msg = result.unwrap_err().to_string();
        assert!(
            msg.contains("rootCA.key") && msg.contains("never overwritten"),
            "{msg}"
        );
    }
    assert_eq!(std::fs::read(&ca.cert).unwrap(), cert_bytes);
    assert!(!ca.key.exists());
}

#[test]
fn bad_inputs_are_explained() {
    let root = tempfile::tempdir().unwrap();
    let (ca, certs) = (root.path().join("ca"), root.path().join("certs"));
    let msg = gen_node(&ca, &certs, "../x", "n1").unwrap_err().to_string();
    assert!(msg.contains("../x"), "{msg}");
    let msg = gen_node(&ca, &certs, "n", "Edge_1").unwrap_err().to_string();
    assert!(msg.contains("not a valid node name"), "{msg}");
    let msg = gen_server(&ca, &certs, "edge", "cloudcore", &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("subjectAltName"), "{msg}");
    let msg = gen_server(&ca, &certs, "edge", "cloudcore", &["not a name".into()])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a name"), "{msg}");
}
