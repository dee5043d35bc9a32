//! Offline checks: chain to the CA, validity window, errors naming the file.

use std::time::{Duration, SystemTime};

use ke_pki::Ca;
use ke_pki::rcgen::{CertificateParams, DnType};
use ke_pki::verify::{self, Error};

fn pair_valid(ca: &Ca, from_days: i64, to_days: i64) -> ke_pki::CertKeyPair {
    let mut params = CertificateParams::default();
    params.distinguished_name = ke_pki::rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "edge-node1");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    ca.issue_with_params(params).unwrap()
}

#[test]
fn expired_and_future_certificates_name_the_file() {
    let ca = Ca::create("test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("rootCA.crt");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();

    let expired = pair_valid(&ca, -30, -1).write(dir.path(), "old").unwrap();
    let err = verify::verify_leaf_files(&expired.cert, &ca_path).unwrap_err();
    assert!(matches!(err, Error::Expired { .. }), "{err}");
    assert!(err.to_string().contains(&expired.cert.display().to_string()));

    let future = pair_valid(&ca, 2, 30).write(dir.path(), "future").unwrap();
    let err = verify::verify_leaf_files(&future.cert, &ca_path).unwrap_err();
    assert!(matches!(err, Error::NotYetValid { .. }), "{err}");
    assert!(err.to_string().contains("clock"), "{err}");
    assert!(err.to_string().contains(&future.cert.display().to_string()));
}

#[test]
fn validity_is_checked_at_the_given_time() {
    let ca = Ca::create("test CA").unwrap();
    let node = ca.issue_node("edge-node1").unwrap();
    let cert = node.cert_der().unwrap();
    let cas = [ca.cert_der().clone()];
    let info = verify::verify_leaf_at(&cert, "n.crt", &cas, "ca", SystemTime::now()).unwrap();
    assert!(info.not_before < time::OffsetDateTime::now_utc());
    let in_two_years = SystemTime::now() + Duration::from_secs(2 * 366 * 86_400);
    assert!(matches!(
        verify::verify_leaf_at(&cert, "n.crt", &cas, "ca", in_two_years),
        Err(Error::Expired { .. })
    ));
    // Back-dated by an hour: an edge whose clock is 30 minutes behind still accepts it.
    let behind = SystemTime::now() - Duration::from_secs(30 * 60);
    verify::verify_leaf_at(&cert, "n.crt", &cas, "ca", behind).unwrap();
}

#[test]
fn certificate_from_another_ca_is_reported() {
    let ca = Ca::create("test CA").unwrap();
    let other = Ca::create("test CA").unwrap(); // same subject, different key
    let node = other.issue_node("edge-node1").unwrap();
    let err = verify::verify_leaf_pem(node.cert_pem.as_bytes(), ca.cert_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, Error::NotSignedByCa { .. }), "{err}");
    verify::verify_leaf_pem(node.cert_pem.as_bytes(), other.cert_pem().as_bytes()).unwrap();
}

/// A certificate whose version field is not v1–v3 (found by the `cert` fuzz target: X.509 parsers
/// pass any number on) is refused with the reason, not reported as "version 15".
#[test]
fn an_unknown_x509_version_is_refused() {
    let ca = Ca::create("test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = pair_valid(&ca, -1, 30).write(dir.path(), "leaf").unwrap();
    let mut der = ke_pki::load::load_certs(&files.cert).unwrap()[0].to_vec();
    let ok = verify::cert_info(&der.clone().into(), "leaf.crt").unwrap();
    assert_eq!(ok.version, 3);
    // TBSCertificate's explicit [0] version: A0 03 02 01 02 (v3) → 0x0e (v15).
    let at = der
        .windows(5)
        .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
        .expect("a v3 version field");
    der[at + 4] = 0x0e;
    let err = verify::cert_info(&der.into(), "leaf.crt").unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
    assert!(err.to_string().contains("leaf.crt"), "{err}");
}
