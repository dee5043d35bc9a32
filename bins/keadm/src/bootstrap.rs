//! keadm's side of the token bootstrap (`ke_pki::token`, `edgehub::bootstrap`): the token checked
//! before anything is written, the certificates fetched at `join` (so every failure — unreachable
//! cloud, CA hash mismatch, refused token, clock skew — shows up in keadm's output, not later in a
//! log), and the config keys `init` and `join` write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use edgehub::bootstrap::{BootstrapOptions, Outcome};
use ke_config::cloudcore::CloudCoreConfig;
use ke_config::edgecore::EdgeCoreConfig;
use ke_pki::token::{self, Token};

/// Parses a `<caHash>.<jwt>` token and refuses one already expired by the local clock.
pub(crate) fn parse_token(text: &str) -> anyhow::Result<Token> {
    let t = Token::parse(text).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let now = token::unix_now();
    match t.expires_unverified() {
        Some(exp) if exp <= now => bail!(
            "--token: the token expired {} ago (exp {exp}, now {now}): get a fresh one with `keadm gettoken` on the cloud \
             (if it is fresh, this machine's clock is wrong)",
            human(now - exp)
        ),
        Some(_) => Ok(t),
        None => bail!("--token: the token carries no expiry: it was not made by `keadm gettoken`"),
    }
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// Where the edge's certificate files go.
pub(crate) struct EdgeFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Fetches the CA (pinned by the token) and a node certificate from cloudcore's HTTPS endpoint,
/// unless all three files exist already.
pub(crate) async fn fetch_certificates(
    host: &str,
    port: u16,
    token: &Token,
    node: &str,
    files: &EdgeFiles,
) -> anyhow::Result<Outcome> {
    let opts = BootstrapOptions {
        token: token.to_string(),
        server_host: host.to_owned(),
        server_port: port,
        node: node.to_owned(),
        ca_file: files.ca.clone(),
        cert_file: files.cert.clone(),
        key_file: files.key.clone(),
        timeout: Duration::from_secs(15),
    };
    Ok(edgehub::bootstrap::ensure_certificates(&opts).await?)
}

/// Turns on cloudhub's certificate endpoint (`modules.cloudhub.https`, `tlsCAKeyFile`).
pub(crate) fn enable_https(cfg: &mut CloudCoreConfig, address: &str, port: u16, ca_key: &Path) {
    let hub = &mut cfg.modules.cloudhub;
    hub.https.enable = true;
    hub.https.address = address.to_owned();
    hub.https.port = u32::from(port);
    hub.tls_ca_key_file = ca_key.display().to_string();
}

/// `modules.edgehub.token` and `httpServer`: edgecore fetches its certificates again with them if
/// the files go missing.
pub(crate) fn set_edge_token(cfg: &mut EdgeCoreConfig, token: &Token, http_server: &str) {
    cfg.modules.edgehub.token = token.to_string();
    cfg.modules.edgehub.http_server = http_server.to_owned();
}

/// A token for the CA of a keadm cloud installation, minted locally (no API server needed): the
/// signing key derives from the CA key, so cloudcore accepts it like the one it publishes.
pub(crate) fn mint(ca_dir: &Path) -> anyhow::Result<Token> {
    let ca = ke_pki::Ca::load(&ca_dir.join("rootCA.crt"), &ca_dir.join("rootCA.key"))?;
    Ok(token::TokenKey::from_ca(&ca).issue(token::DEFAULT_VALIDITY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_and_expiry_less_tokens_are_refused_before_anything_happens() {
        let key = token::TokenKey::new(b"k", "ab".repeat(32));
        assert!(parse_token(&key.issue(Duration::from_secs(600)).to_string()).is_ok());
        let old = key.issue_until(token::unix_now() - 7200).to_string();
        let err = parse_token(&old).unwrap_err().to_string();
        assert!(err.contains("expired 2 h ago"), "{err}");
        let err = parse_token("not-a-token").unwrap_err().to_string();
        assert!(err.contains("--token: malformed token"), "{err}");
    }

    #[test]
    fn a_minted_token_names_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = ke_pki::Ca::load_or_create(dir.path()).unwrap();
        let t = mint(dir.path()).unwrap();
        let key = token::TokenKey::from_ca(&ca);
        assert_eq!(t.ca_hash, key.ca_hash());
        assert!(key.verify(&t.to_string()).is_ok());
    }
}
