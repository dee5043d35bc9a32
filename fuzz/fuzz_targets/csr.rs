//! Fuzzes `ke_pki::Ca::sign_node_csr`, which cloudhub's `/edge.crt` applies to the request body
//! (a PKCS#10 CSR, DER) and the `NodeName` header an edge sends (after the token check). Input
//! starting with `-----BEGIN` is PEM-decoded first, so the seeds can be text; anything else is the
//! DER body as is. The CA is the fixed test CA in `fuzz/fixtures/`.
//!
//! Checks, besides never panicking:
//! * a request is refused only with `BadCsr` (cloudhub's 400), never another error (a 500);
//! * what is issued is a certificate the cloud accepts from that node: `cert_info` says X.509 v3,
//!   CN = node, not a CA; `peer_identity` is `Node(node)`; `verify_leaf_at` and cloudhub's client
//!   verifier accept it;
//! * the node name (first input line, with a known-good CSR) is refused exactly when it is not a
//!   Kubernetes node name or is the legacy `kubeedge.io`, and is then the certificate's CN.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use ke_pki::identity::{LEGACY_COMMON_NAME, PeerIdentity, is_node_name};
use ke_pki::{Ca, NodeCsr, ca, load, tls, verify};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

const CA_PEM: &[u8] = include_bytes!("../fixtures/ca.crt");
const CA_KEY_PEM: &[u8] = include_bytes!("../fixtures/ca.key");

struct Fixture {
    ca: Ca,
    ca_certs: Vec<CertificateDer<'static>>,
    client: Arc<dyn ClientCertVerifier>,
    good_csr: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let ca_certs = load::certs_from_pem(CA_PEM, "fixtures/ca.crt").expect("the fixture CA must parse");
    Fixture {
        ca: Ca::from_pem(CA_PEM, CA_KEY_PEM).expect("the fixture CA must load"),
        client: tls::client_cert_verifier(&ca_certs).expect("client verifier"),
        ca_certs,
        good_csr: NodeCsr::generate("edge-1").expect("a CSR").csr_der,
    }
});

/// Signs `csr` for `node` and checks the outcome.
fn sign(node: &str, csr: &[u8]) -> bool {
    let f = &*FIXTURE;
    let cert = match f.ca.sign_node_csr(node, csr) {
        Ok(cert) => cert,
        Err(ca::Error::BadCsr(_) | ca::Error::InvalidNodeName(_) | ca::Error::ReservedNodeName) => {
            return false;
        }
        Err(e) => panic!("a CSR from a peer must be refused as a bad request, got: {e}"),
    };
    let info = verify::cert_info(&cert, "<issued>").expect("an issued certificate must parse");
    assert_eq!(info.common_name.as_deref(), Some(node));
    assert_eq!(info.version, 3);
    assert!(!info.is_ca, "issued a CA certificate");
    assert_eq!(
        ke_pki::peer_identity(&cert).expect("identity of an issued certificate"),
        PeerIdentity::Node(node.to_owned())
    );
    verify::verify_leaf_at(&cert, "<issued>", &f.ca_certs, "<ca>", SystemTime::now())
        .expect("an issued certificate must verify against its CA");
    f.client
        .verify_client_cert(&cert, &[], UnixTime::now())
        .expect("cloudhub must accept the certificate it issued");
    true
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    // The body: DER, or PEM for the text seeds.
    let body = if data.starts_with(b"-----BEGIN") {
        match CertificateSigningRequestDer::from_pem_slice(data) {
            Ok(der) => der.as_ref().to_vec(),
            Err(_) => return,
        }
    } else {
        data.to_vec()
    };
    sign("edge-1", &body);

    // The NodeName header, with a request that is fine.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let node = text.lines().next().unwrap_or_default().trim();
    let valid = is_node_name(node) && node != LEGACY_COMMON_NAME;
    assert_eq!(sign(node, &f.good_csr), valid, "NodeName {node:?}");
});
