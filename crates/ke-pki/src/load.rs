//! Loading PEM certificates and private keys from files or bytes.
//!
//! Keys may be PKCS#8 (`PRIVATE KEY`), PKCS#1 RSA (`RSA PRIVATE KEY`, what stock KubeEdge v1.2 `certgen.sh`
//! writes for `edge.key`) or SEC1 EC (`EC PRIVATE KEY`). Encrypted keys are refused with the command that
//! decrypts them. Every error names the file (or the in-memory source) and says what was expected.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::der;

/// Errors while reading PEM material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM text is malformed.
    #[error("{name} is not valid PEM: {detail}")]
    BadPem {
        /// The file or in-memory source.
        name: String,
        /// What the PEM parser said.
        detail: String,
    },
    /// No `CERTIFICATE` block.
    #[error("no certificate found in {0}: expected a PEM CERTIFICATE block")]
    NoCertificate(String),
    /// No private key block.
    #[error(
        "no private key found in {0}: expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block"
    )]
    NoKey(String),
    /// The key is passphrase-protected.
    #[error(
        "{0} is an encrypted private key: decrypt it first, e.g. `openssl pkey -in {0} -out {0}.plain` \
         (stock KubeEdge certgen.sh uses the passphrase kubeedge.io: add `-passin pass:kubeedge.io`), \
         then use the decrypted file in its place (keep it mode 0600)"
    )]
    EncryptedKey(String),
    /// The key is PEM but its DER content is not a key we can use.
    #[error("unsupported private key in {name}: {detail}")]
    UnsupportedKey {
        /// The file or in-memory source.
        name: String,
        /// Why.
        detail: String,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a whole file, naming it on failure.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(name: &str, err: pem::Error) -> Error {
    Error::BadPem {
        name: name.to_owned(),
        detail: err.to_string(),
    }
}

/// Parses every `CERTIFICATE` block of `pem`, in order. `name` labels errors (a path or e.g. `"<ca>"`).
pub fn certs_from_pem(pem: &[u8], name: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(name, e))?;
    if certs.is_empty() {
        return Err(Error::NoCertificate(name.to_owned()));
    }
    Ok(certs)
}

/// Reads every certificate of a PEM file, in order (leaf first for a chain file).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    certs_from_pem(&read_file(path)?, &path.display().to_string())
}

/// Parses the first private key of `pem` (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn key_from_pem(pem: &[u8], name: &str) -> Result<PrivateKeyDer<'static>> {
    // Both the PKCS#8 `ENCRYPTED PRIVATE KEY` label and the traditional OpenSSL `Proc-Type: 4,ENCRYPTED`
    // header (what `openssl genrsa -des3` wrote before OpenSSL 3) contain this marker.
    if contains(pem, b"ENCRYPTED") {
        return Err(Error::EncryptedKey(name.to_owned()));
    }
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(Error::NoKey(name.to_owned())),
        Err(e) => Err(bad_pem(name, e)),
    }
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    key_from_pem(&read_file(path)?, &path.display().to_string())
}

/// Converts any supported key encoding to PKCS#8 (needed to sign certificates with rcgen on ring).
pub fn to_pkcs8(key: &PrivateKeyDer<'_>, name: &str) -> Result<PrivatePkcs8KeyDer<'static>> {
    let unsupported = |detail: &str| Error::UnsupportedKey {
        name: name.to_owned(),
        detail: detail.to_owned(),
    };
    let der = match key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => der::pkcs1_to_pkcs8(k.secret_pkcs1_der())
            .ok_or_else(|| unsupported("malformed RSA PRIVATE KEY"))?,
        PrivateKeyDer::Sec1(k) => der::sec1_to_pkcs8(k.secret_sec1_der()).ok_or_else(|| {
            unsupported("EC PRIVATE KEY must name the curve (P-256 or P-384) and carry its public key")
        })?,
        _ => return Err(unsupported("unknown key encoding")),
    };
    Ok(PrivatePkcs8KeyDer::from(der))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_names_the_source_and_what_was_expected() {
        let err = certs_from_pem(b"", "/x/y.crt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no certificate found in /x/y.crt: expected a PEM CERTIFICATE block"
        );
        let err = key_from_pem(b"junk", "/x/y.key").unwrap_err();
        assert!(err.to_string().starts_with("no private key found in /x/y.key"));
    }

    #[test]
    fn a_key_file_is_not_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let err = certs_from_pem(key.as_bytes(), "k.pem").unwrap_err();
        assert!(matches!(err, Error::NoCertificate(_)));
    }

    #[test]
    fn traditional_encrypted_key_is_explained() {
        let pem = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,0011\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = key_from_pem(pem, "/etc/kubeedge/ca/rootCA.key").unwrap_err();
        assert!(matches!(err, Error::EncryptedKey(_)));
        assert!(err.to_string().contains("pass:kubeedge.io"));
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load_certs(Path::new("/nonexistent/ke-pki/edge.crt")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ke-pki/edge.crt"));
    }
}
