//! Certificate bootstrap with a token (KubeEdge v1.3): how an edge with only `modules.edgehub.token`
//! and `httpServer` gets its TLS files.
//!
//! [`ensure_certificates`] runs at edgecore start-up, before the link is dialled:
//! 1. if `tlsCaFile`, `tlsCertFile` and `tlsPrivateKeyFile` all exist, nothing is fetched;
//! 2. otherwise the token `<caHash>.<jwt>` is parsed, `GET /ca.crt` is fetched over TLS without
//!    verifying the server (there is no CA yet) and the CA is accepted **only** if its SHA-256 equals
//!    `caHash` — the token pins the CA;
//! 3. a fresh ECDSA P-256 key and a CSR for the node (`hostnameOverride`) are made, and
//!    `GET /edge.crt` (body = CSR, `Authorization: Bearer <jwt>`, `NodeName: <node>`) is sent over TLS
//!    now verified against the fetched CA;
//! 4. the certificate is checked (it carries our key, it is valid by the local clock) and the three
//!    files are written atomically (key 0600, certificates 0644, missing directories created).
//!
//! Every failure is an [`Error`] that says what to do: malformed token, CA hash mismatch, 401 (bad or
//! expired token, with the cloud's reason), unreachable cloud, clock skew.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ke_pki::NodeCsr;
use ke_pki::token::{self, Token};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::info;

/// Largest response accepted.
const MAX_RESPONSE: usize = 256 * 1024;

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is not `<caHash>.<jwt>`.
    #[error("modules.edgehub.token: {0}")]
    Token(#[from] token::Error),
    /// The CA served by the cloud is not the one the token names.
    #[error(
        "the CA served by {server} has SHA-256 {got}, but the token expects {expected}: refusing it (wrong httpServer, a token from another cluster, or someone in between); check modules.edgehub.httpServer and the token"
    )]
    CaHashMismatch {
        /// The URL asked.
        server: String,
        /// The token's caHash.
        expected: String,
        /// The served CA's hash.
        got: String,
    },
    /// The cloud refused the token.
    #[error(
        "cloudcore at {server} refused the token (401): {message}{hint}; get a fresh token with `keadm gettoken` on the cloud and set modules.edgehub.token"
    )]
    Unauthorized {
        /// The URL asked.
        server: String,
        /// The cloud's reason.
        message: String,
        /// A local-clock hint, possibly empty.
        hint: String,
    },
    /// The cloud answered with another error status.
    #[error("cloudcore at {server} answered {status} to {path}: {message}")]
    Status {
        /// The URL asked.
        server: String,
        /// The request path.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The body.
        message: String,
    },
    /// The cloud could not be reached or the exchange broke.
    #[error(
        "cannot reach cloudcore's certificate endpoint {server} ({what}): {detail}; check modules.edgehub.httpServer, that cloudcore runs with modules.cloudhub.https.enable: true, and the network"
    )]
    Unreachable {
        /// The URL asked.
        server: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// The issued certificate is not yet valid by the local clock.
    #[error(
        "clock skew: the certificate issued by cloudcore is valid from {not_before} but this machine's clock says {now}; fix the clock (e.g. enable NTP) and start edgecore again"
    )]
    ClockSkew {
        /// The certificate's notBefore.
        not_before: String,
        /// The local time.
        now: String,
    },
    /// The answer is not a usable certificate.
    #[error("cloudcore at {server} sent an unusable {what}: {detail}")]
    BadAnswer {
        /// The URL asked.
        server: String,
        /// What was expected.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A local key/CSR/file operation failed.
    #[error(transparent)]
    Local(#[from] ke_pki::ca::Error),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Inputs of [`ensure_certificates`].
#[derive(Clone)]
pub struct BootstrapOptions {
    /// `modules.edgehub.token`.
    pub token: String,
    /// Host of `modules.edgehub.httpServer` (IPv6 without brackets).
    pub server_host: String,
    /// Port of `modules.edgehub.httpServer`.
    pub server_port: u16,
    /// The node name (`modules.edged.hostnameOverride`), the certificate's CN.
    pub node: String,
    /// `modules.edgehub.tlsCaFile`.
    pub ca_file: PathBuf,
    /// `modules.edgehub.tlsCertFile`.
    pub cert_file: PathBuf,
    /// `modules.edgehub.tlsPrivateKeyFile`.
    pub key_file: PathBuf,
    /// Bound of each connection + request (default 30 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for BootstrapOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapOptions")
            .field("server_host", &self.server_host)
            .field("server_port", &self.server_port)
            .field("node", &self.node)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// What [`ensure_certificates`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// All three files existed: nothing fetched.
    Present,
    /// Files were missing and no token is configured: nothing done (loading them will fail).
    NoToken,
    /// The CA and a node certificate were fetched and written.
    Fetched,
}

impl BootstrapOptions {
    fn url(&self) -> String {
        if self.server_host.contains(':') {
            format!("https://[{}]:{}", self.server_host, self.server_port)
        } else {
            format!("https://{}:{}", self.server_host, self.server_port)
        }
    }
}

/// Fetches the CA and a node certificate with the token when a TLS file is missing (module docs).
pub async fn ensure_certificates(opts: &BootstrapOptions) -> Result<Outcome> {
    if [&opts.ca_file, &opts.cert_file, &opts.key_file]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(Outcome::Present);
    }
    if opts.token.trim().is_empty() {
        return Ok(Outcome::NoToken);
    }
    let token = Token::parse(&opts.token)?;
    let server = opts.url();
    info!(%server, node = %opts.node, "TLS files missing: fetching the CA and a node certificate with the token");

    let any = ke_pki::tls::bootstrap_client_config(None).map_err(|e| local_tls(&server, e))?;
    let (status, ca_der) = request(opts, any, "/ca.crt", &[], &[]).await?;
    if status != 200 {
        return Err(status_err(&server, "/ca.crt", status, &ca_der));
    }
    let got = token::ca_hash(&ca_der);
    if got != token.ca_hash {
        return Err(Error::CaHashMismatch {
            server,
            expected: token.ca_hash,
            got,
        });
    }
    let ca = CertificateDer::from(ca_der.clone());
    let verified = ke_pki::tls::bootstrap_client_config(Some(std::slice::from_ref(&ca))).map_err(|e| {
        Error::BadAnswer {
            server: server.clone(),
            what: "CA certificate",
            detail: e.to_string(),
        }
    })?;

    let csr = NodeCsr::generate(&opts.node)?;
    let auth = format!("Bearer {}", token.jwt);
    let (status, cert_der) = request(
        opts,
        verified,
        "/edge.crt",
        &[("Authorization", &auth), ("NodeName", &opts.node)],
        &csr.csr_der,
    )
    .await?;
    match status {
        200 => {}
        401 => {
            let now = token::unix_now();
            let hint = match token.expires_unverified() {
                Some(exp) if exp <= now => format!(
                    " (by this machine's clock the token expired {} s ago; if it is fresh, this clock is ahead)",
                    now - exp
                ),
                _ => String::new(),
            };
            return Err(Error::Unauthorized {
                server,
                message: String::from_utf8_lossy(&cert_der).trim().to_owned(),
                hint,
            });
        }
        s => return Err(status_err(&server, "/edge.crt", s, &cert_der)),
    }
    let cert = CertificateDer::from(cert_der.clone());
    let bad = |detail: String| Error::BadAnswer {
        server: server.clone(),
        what: "node certificate",
        detail,
    };
    let key = ke_pki::load::key_from_pem(csr.key_pem.as_bytes(), "<new node key>")
        .map_err(|e| bad(e.to_string()))?;
    ke_pki::tls::certified_key(vec![cert.clone()], key)
        .map_err(|e| bad(format!("it does not carry the key we sent: {e}")))?;
    let info = ke_pki::verify::cert_info(&cert, "<issued certificate>").map_err(|e| bad(e.to_string()))?;
    check_clock(&info, time::OffsetDateTime::now_utc())?;
    ke_pki::certgen::write_bootstrap_files(
        &ca_der,
        &opts.ca_file,
        &cert_der,
        &opts.cert_file,
        &csr.key_pem,
        &opts.key_file,
    )?;
    info!(
        node = %opts.node,
        ca = %opts.ca_file.display(),
        cert = %opts.cert_file.display(),
        key = %opts.key_file.display(),
        "certificate bootstrap done"
    );
    Ok(Outcome::Fetched)
}

/// Refuses a certificate that is not yet valid at `now` (the edge's clock is behind the cloud's by more
/// than the issuer's back-dating).
fn check_clock(info: &ke_pki::verify::CertInfo, now: time::OffsetDateTime) -> Result<()> {
    if info.not_before > now {
        return Err(Error::ClockSkew {
            not_before: info.not_before.to_string(),
            now: now.to_string(),
        });
    }
    Ok(())
}

fn local_tls(server: &str, e: ke_pki::tls::Error) -> Error {
    Error::Unreachable {
        server: server.to_owned(),
        what: "TLS setup",
        detail: e.to_string(),
    }
}

fn status_err(server: &str, path: &'static str, status: u16, body: &[u8]) -> Error {
    Error::Status {
        server: server.to_owned(),
        path,
        status,
        message: String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// One HTTP/1.1 request over TLS; returns status and body (the server closes the connection).
async fn request(
    opts: &BootstrapOptions,
    tls: Arc<rustls::ClientConfig>,
    path: &'static str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let server = opts.url();
    let fail = |what: &'static str| {
        let server = server.clone();
        move |e: std::io::Error| Error::Unreachable {
            server,
            what,
            detail: e.to_string(),
        }
    };
    let name = ServerName::try_from(opts.server_host.clone()).map_err(|e| Error::Unreachable {
        server: server.clone(),
        what: "server name",
        detail: e.to_string(),
    })?;
    let exchange = async {
        let tcp = TcpStream::connect((opts.server_host.as_str(), opts.server_port))
            .await
            .map_err(fail("connect"))?;
        let mut tls = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(fail("TLS handshake"))?;
        let host = if opts.server_host.contains(':') {
            format!("[{}]:{}", opts.server_host, opts.server_port)
        } else {
            format!("{}:{}", opts.server_host, opts.server_port)
        };
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: edgecore\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).await.map_err(fail("send"))?;
        tls.write_all(body).await.map_err(fail("send"))?;
        tls.flush().await.map_err(fail("send"))?;
        let mut resp = Vec::new();
        (&mut tls)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut resp)
            .await
            .map_err(fail("read the answer"))?;
        Ok::<_, Error>(resp)
    };
    let resp = tokio::time::timeout(opts.timeout, exchange)
        .await
        .map_err(|_| Error::Unreachable {
            server: server.clone(),
            what: "request",
            detail: format!("no answer within {:?}", opts.timeout),
        })??;
    parse_response(&resp).ok_or_else(|| Error::BadAnswer {
        server,
        what: "HTTP answer",
        detail: "not an HTTP/1.1 response with a Content-Length".into(),
    })
}

/// Status and body of a `Connection: close` response.
fn parse_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&resp[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let body = &resp[end + 4..];
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(body.len());
    Some((status, body.get(..len)?.to_vec()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_from_the_future_is_clock_skew() {
        let ca = ke_pki::Ca::create("t").unwrap();
        let pair = ca.issue_node("n1").unwrap();
        let info = ke_pki::verify::cert_info(&pair.cert_der().unwrap(), "c").unwrap();
        check_clock(&info, time::OffsetDateTime::now_utc()).unwrap();
        // An edge clock two hours behind the cloud's (certificates are back-dated by one hour).
        let behind = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
        let e = check_clock(&info, behind).unwrap_err();
        assert!(matches!(e, Error::ClockSkew { .. }), "{e}");
        assert!(e.to_string().contains("fix the clock"), "{e}");
    }

    #[test]
    fn responses_parse() {
        let r = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad";
        assert_eq!(parse_response(r), Some((401, b"bad".to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\nxy"),
            Some((200, b"xy".to_vec()))
        );
        assert_eq!(parse_response(b"garbage"), None);
        // Truncated body.
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nxy"),
            None
        );
    }
}
