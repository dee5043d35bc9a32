//! Mutual TLS between our server and client configs over loopback.

use ke_pki::rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose};
use ke_pki::{Ca, PeerIdentity};
use rustls::ProtocolVersion;

use crate::common::{anonymous_client, client_cfg, handshake, server_cfg, tls12_client};

fn sans(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn node_certificate_is_accepted_and_identifies_the_node() {
    let ca = Ca::create("test CA").unwrap();
    let server = ca
        .issue_server("cloudcore", &sans(&["127.0.0.1", "localhost"]))
        .unwrap();
    let node = ca.issue_node("edge-node1").unwrap();

    for name in ["127.0.0.1", "localhost"] {
        let (id, version) = handshake(
            server_cfg(ca.cert_pem(), &server),
            client_cfg(ca.cert_pem(), &node),
            name,
        )
        .await
        .assert_ok();
        assert_eq!(id, PeerIdentity::Node("edge-node1".into()));
        assert_eq!(version, ProtocolVersion::TLSv1_3);
    }
}

#[tokio::test]
async fn tls12_is_supported() {
    let ca = Ca::create("test CA").unwrap();
    let server = ca.issue_server("cloudcore", &sans(&["127.0.0.1"])).unwrap();
    let node = ca.issue_node("edge-node2").unwrap();
    let client = tls12_client(
        &[ca.cert_der().clone()],
        Some((vec![node.cert_der().unwrap()], node.key_der().unwrap())),
    );
    let (id, version) = handshake(server_cfg(ca.cert_pem(), &server), client, "127.0.0.1")
        .await
        .assert_ok();
    assert_eq!(id, PeerIdentity::Node("edge-node2".into()));
    assert_eq!(version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let server = ca.issue_server("cloudcore", &sans(&["127.0.0.1"])).unwrap();
    let (server_err, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        anonymous_client(ca.cert_pem()),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(server_err.contains("peer sent no certificates"), "{server_err}");

    // Same over TLS 1.2.
    let (server_err, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        tls12_client(&[ca.cert_der().clone()], None),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(server_err.contains("peer sent no certificates"), "{server_err}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let other = Ca::create("other CA").unwrap();
    let server = ca.issue_server("cloudcore", &sans(&["127.0.0.1"])).unwrap();
    let intruder = other.issue_node("edge-node1").unwrap();
    // The intruder trusts our CA (it knows the server), but its own cert comes from elsewhere.
    let (server_err, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        client_cfg(ca.cert_pem(), &intruder),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(server_err.contains("UnknownIssuer"), "{server_err}");
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let other = Ca::create("other CA").unwrap();
    let fake_server = other.issue_server("cloudcore", &sans(&["127.0.0.1"])).unwrap();
    let node = ca.issue_node("edge-node1").unwrap();
    let (_, client_err) = handshake(
        server_cfg(other.cert_pem(), &fake_server),
        client_cfg(ca.cert_pem(), &node),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(client_err.contains("UnknownIssuer"), "{client_err}");
}

#[tokio::test]
async fn server_san_mismatch_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let server = ca
        .issue_server("cloudcore", &sans(&["10.255.0.1", "cloud.example"]))
        .unwrap();
    let node = ca.issue_node("edge-node1").unwrap();
    for name in ["127.0.0.1", "other.example"] {
        let (_, client_err) = handshake(
            server_cfg(ca.cert_pem(), &server),
            client_cfg(ca.cert_pem(), &node),
            name,
        )
        .await
        .assert_refused();
        assert!(client_err.contains("not valid for name"), "{client_err}");
    }
}

/// A v3 server certificate like the ones v1.2 users may have made by hand: CN kubeedge.io, no SAN.
fn no_san_server(ca: &Ca) -> ke_pki::CertKeyPair {
    let mut params = CertificateParams::default();
    params.distinguished_name = ke_pki::rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "kubeedge.io");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
    ca.issue_with_params(params).unwrap()
}

#[tokio::test]
async fn legacy_server_certificate_without_san_is_accepted_if_signed_by_the_ca() {
    let ca = Ca::create("test CA").unwrap();
    let server = no_san_server(&ca);
    let node = ca.issue_node("edge-node1").unwrap();
    let (id, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        client_cfg(ca.cert_pem(), &node),
        "127.0.0.1",
    )
    .await
    .assert_ok();
    assert_eq!(id, PeerIdentity::Node("edge-node1".into()));

    // The shared legacy certificate used by both sides identifies as Legacy.
    let (id, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        client_cfg(ca.cert_pem(), &server),
        "cloud.example",
    )
    .await
    .assert_ok();
    assert_eq!(id, PeerIdentity::Legacy);
}

#[tokio::test]
async fn legacy_server_certificate_without_san_from_another_ca_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let other = Ca::create("other CA").unwrap();
    let server = no_san_server(&other);
    let node = ca.issue_node("edge-node1").unwrap();
    let (_, client_err) = handshake(
        server_cfg(other.cert_pem(), &server),
        client_cfg(ca.cert_pem(), &node),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(client_err.contains("UnknownIssuer"), "{client_err}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let server = ca.issue_server("cloudcore", &sans(&["127.0.0.1"])).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = ke_pki::rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "edge-old");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now - time::Duration::days(35);
    let node = ca.issue_with_params(params).unwrap();
    let (server_err, _) = handshake(
        server_cfg(ca.cert_pem(), &server),
        client_cfg(ca.cert_pem(), &node),
        "127.0.0.1",
    )
    .await
    .assert_refused();
    assert!(server_err.contains("certificate expired"), "{server_err}");
}

#[test]
fn identity_of_certificates() {
    let ca = Ca::create("test CA").unwrap();
    let node = ca.issue_node("edge-node1").unwrap().cert_der().unwrap();
    assert_eq!(ke_pki::common_name(&node).unwrap(), "edge-node1");
    assert_eq!(
        ke_pki::peer_identity(&node).unwrap().node_name(),
        Some("edge-node1")
    );
    let mut params = CertificateParams::default();
    params.distinguished_name = ke_pki::rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Not A Node");
    let odd = ca.issue_with_params(params).unwrap().cert_der().unwrap();
    assert!(matches!(
        ke_pki::peer_identity(&odd),
        Err(ke_pki::identity::Error::NotANodeName(_))
    ));
    let mut params = CertificateParams::default();
    params.distinguished_name = ke_pki::rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "x");
    let no_cn = ca.issue_with_params(params).unwrap().cert_der().unwrap();
    assert!(matches!(
        ke_pki::peer_identity(&no_cn),
        Err(ke_pki::identity::Error::NoCommonName)
    ));
}

#[test]
fn mismatched_certificate_and_key_name_both_files() {
    let ca = Ca::create("test CA").unwrap();
    let a = ca.issue_node("a").unwrap();
    let b = ca.issue_node("b").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pa = a.write(dir.path(), "a").unwrap();
    let pb = b.write(dir.path(), "b").unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let err = ke_pki::tls::server_config(&dir.path().join("ca.crt"), &pa.cert, &pb.key).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("a.crt") && msg.contains("b.key"), "{msg}");
}
