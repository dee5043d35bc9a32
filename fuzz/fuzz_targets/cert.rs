//! Fuzzes certificate and key loading in ke-pki, and the checks cloudhub and edgehub apply to the
//! certificate a TLS peer presents:
//! * PEM (input starting with `-----BEGIN`): `load::certs_from_pem`, `load::key_from_pem` +
//!   `load::to_pkcs8` (PKCS#8, PKCS#1 RSA, SEC1 EC: `tlsCAFile`, `tlsCertFile`,
//!   `tlsPrivateKeyFile`, `rootCA.key`), `Ca::from_pem`, `verify::verify_leaf_pem`, then every
//!   certificate found goes through the DER checks below;
//! * DER (anything else): the peer's leaf certificate as it arrives in a handshake, through
//!   `tls::client_cert_verifier` (cloudhub: webpki, or ke-pki's own X.509 v1 path),
//!   `tls::server_cert_verifier` (edgehub: SAN-less legacy path), `identity::peer_identity`,
//!   `verify::cert_info`, `verify::verify_leaf_at`, and as a CA file (`client_cert_verifier(&[it])`).
//!
//! The trusted CA is the fixed test CA in `fuzz/fixtures/` (its signed seeds are in the corpus).
//! Checks, besides never panicking: a certificate either verifier accepts is one `cert_info` and
//! `verify_leaf_at` accept too (parsable, signed by the CA, within its validity); a node identity is
//! a valid node name; `certs_from_pem` never returns an empty list.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use ke_pki::identity::{PeerIdentity, is_node_name};
use ke_pki::{Ca, load, tls, verify};
use libfuzzer_sys::fuzz_target;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;

const CA_PEM: &[u8] = include_bytes!("../fixtures/ca.crt");
const CA_KEY_PEM: &[u8] = include_bytes!("../fixtures/ca.key");

struct Trust {
    ca: Vec<CertificateDer<'static>>,
    client: Arc<dyn ClientCertVerifier>,
    server: Arc<dyn ServerCertVerifier>,
}

static TRUST: LazyLock<Trust> = LazyLock::new(|| {
    Ca::from_pem(CA_PEM, CA_KEY_PEM).expect("the fixture CA must load");
    let ca = load::certs_from_pem(CA_PEM, "fixtures/ca.crt").expect("the fixture CA must parse");
    Trust {
        client: tls::client_cert_verifier(&ca).expect("client verifier"),
        server: tls::server_cert_verifier(&ca).expect("server verifier"),
        ca,
    }
});

/// What the two TLS sides and the offline checks make of one DER certificate.
fn check_der(der: &CertificateDer<'_>) {
    let t = &*TRUST;
    let now = UnixTime::now();
    let info = verify::cert_info(der, "<fuzz>");
    if let Ok(i) = &info {
        assert!((1..=3).contains(&i.version), "X.509 version {}", i.version);
    }
    let identity = ke_pki::peer_identity(der);
    if let Ok(PeerIdentity::Node(n)) = &identity {
        assert!(is_node_name(n), "node identity {n:?} is not a node name");
    }
    let leaf = verify::verify_leaf_at(der, "<fuzz>", &t.ca, "<ca>", SystemTime::now());

    let by_client = t.client.verify_client_cert(der, &[], now).is_ok();
    let name = ServerName::try_from("localhost").expect("server name");
    let by_server = t.server.verify_server_cert(der, &[], &name, &[], now).is_ok();
    if by_client || by_server {
        // Accepted on the link: the offline checks and the identity read must agree.
        assert!(
            info.is_ok(),
            "verifier accepted a certificate cert_info rejects: {info:?}"
        );
        assert!(
            leaf.is_ok(),
            "verifier accepted a certificate verify_leaf_at rejects: {leaf:?}"
        );
    }

    // The same bytes as a CA file (`tlsCAFile`, `rootCA.crt`).
    let _ = tls::client_cert_verifier(std::slice::from_ref(der));
}

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(b"-----BEGIN") {
        check_der(&CertificateDer::from(data));
        return;
    }
    if let Ok(certs) = load::certs_from_pem(data, "<fuzz>") {
        assert!(
            !certs.is_empty(),
            "certs_from_pem returned no certificate without an error"
        );
        for c in certs.iter().take(4) {
            check_der(c);
        }
    }
    if let Ok(key) = load::key_from_pem(data, "<fuzz>")
        && let Ok(pkcs8) = load::to_pkcs8(&key, "<fuzz>")
    {
        let _ = ke_pki::rcgen::KeyPair::try_from(pkcs8.secret_pkcs8_der());
    }
    let _ = Ca::from_pem(data, data);
    let _ = verify::verify_leaf_pem(data, CA_PEM);
});
