//! What `keadm certgen` does, as a library: the KubeEdge file layout, CA reuse, permissions.
//!
//! Layout (as stock `certgen.sh`): the CA lives in `<ca_dir>/rootCA.crt` + `<ca_dir>/rootCA.key`
//! (default `/etc/kubeedge/ca`), issued pairs in `<certs_dir>/<stem>.crt` + `<certs_dir>/<stem>.key`
//! (default `/etc/kubeedge/certs`). Keys are mode 0600, certificates 0644, directories 0755.
//!
//! An existing CA is always reused and never overwritten; a missing CA is created first (like
//! `certgen.sh`). Issued pairs are (re)written atomically. Unlike stock certgen, cloud and edges get
//! different certificates: the server certificate carries SANs, each node's certificate its name.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::ca::{self, CA_CERT_FILE, CA_KEY_FILE, Ca, Provenance, WrittenPair};
use crate::fsutil;

/// Default CA directory.
pub const DEFAULT_CA_DIR: &str = "/etc/kubeedge/ca";
/// Default directory of issued certificates.
pub const DEFAULT_CERTS_DIR: &str = "/etc/kubeedge/certs";
/// Default stem of cloudcore's server pair (`edge.crt` / `edge.key`, the file names cloudcore.yaml
/// defaults to).
pub const DEFAULT_SERVER_STEM: &str = "edge";
/// Default CN of cloudcore's server certificate.
pub const DEFAULT_SERVER_CN: &str = "cloudcore";
/// Subject CN of a CA created by certgen.
pub const DEFAULT_CA_CN: &str = "KubeEdge root CA";

/// Errors of certgen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CA or issuing error.
    #[error(transparent)]
    Ca(#[from] ca::Error),
    /// The stem would not produce a plain file name.
    #[error(
        "invalid certificate name {0:?}: use a plain file stem such as `edge` or `edge-node1` (no `/`, not empty)"
    )]
    InvalidStem(String),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Outcome of [`gen_ca`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// `<ca_dir>/rootCA.crt`.
    pub cert: PathBuf,
    /// `<ca_dir>/rootCA.key`.
    pub key: PathBuf,
    /// Whether the CA was created now or reused.
    pub provenance: Provenance,
}

/// Outcome of [`gen_server`] / [`gen_node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The CA used.
    pub ca: CaFiles,
    /// The pair written.
    pub pair: WrittenPair,
}

fn ca_files(ca_dir: &Path, provenance: Provenance) -> CaFiles {
    CaFiles {
        cert: ca_dir.join(CA_CERT_FILE),
        key: ca_dir.join(CA_KEY_FILE),
        provenance,
    }
}

fn check_stem(stem: &str) -> Result<()> {
    if stem.is_empty() || stem == "." || stem == ".." || stem.contains(['/', '\0']) {
        return Err(Error::InvalidStem(stem.to_owned()));
    }
    Ok(())
}

/// Ensures a CA exists in `ca_dir` (creates one if neither file exists; reuses it otherwise).
pub fn gen_ca(ca_dir: &Path) -> Result<CaFiles> {
    let (_, provenance) = Ca::load_or_create(ca_dir)?;
    Ok(ca_files(ca_dir, provenance))
}

/// Issues cloudcore's server pair `<certs_dir>/<stem>.{crt,key}` from the CA in `ca_dir` (created if
/// missing). `sans`: IP addresses and/or DNS names edges use to reach cloudcore (at least one).
pub fn gen_server(ca_dir: &Path, certs_dir: &Path, stem: &str, cn: &str, sans: &[String]) -> Result<Issued> {
    check_stem(stem)?;
    let (ca, provenance) = Ca::load_or_create(ca_dir)?;
    let pair = ca.issue_server(cn, sans)?.write(certs_dir, stem)?;
    Ok(Issued {
        ca: ca_files(ca_dir, provenance),
        pair,
    })
}

/// Issues node `node`'s client pair `<certs_dir>/<stem>.{crt,key}` (CN = node name) from the CA in
/// `ca_dir` (created if missing).
pub fn gen_node(ca_dir: &Path, certs_dir: &Path, stem: &str, node: &str) -> Result<Issued> {
    check_stem(stem)?;
    let (ca, provenance) = Ca::load_or_create(ca_dir)?;
    let pair = ca.issue_node(node)?.write(certs_dir, stem)?;
    Ok(Issued {
        ca: ca_files(ca_dir, provenance),
        pair,
    })
}

/// A DER certificate as PEM text (`CERTIFICATE` block, 64-column lines).
pub fn cert_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Writes what token bootstrap obtained: the CA certificate and the node certificate as PEM (0644)
/// and the node key (0600), each atomically, creating missing parent directories (0755).
pub fn write_bootstrap_files(
    ca_der: &[u8],
    ca_file: &Path,
    cert_der: &[u8],
    cert_file: &Path,
    key_pem: &str,
    key_file: &Path,
) -> Result<(), ca::Error> {
    for (path, data, mode) in [
        (key_file, key_pem.to_owned(), fsutil::KEY_MODE),
        (cert_file, cert_pem(cert_der), fsutil::CERT_MODE),
        (ca_file, cert_pem(ca_der), fsutil::CERT_MODE),
    ] {
        let werr = |source| ca::Error::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fsutil::ensure_dir(dir).map_err(werr)?;
        }
        fsutil::write_replace(path, data.as_bytes(), mode).map_err(werr)?;
    }
    Ok(())
}
