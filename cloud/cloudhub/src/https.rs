//! Certificate bootstrap over HTTPS (KubeEdge v1.3, `modules.cloudhub.https`, default port 10002).
//!
//! | request | auth | answer |
//! |---|---|---|
//! | `GET /ca.crt` | none | 200, the CA certificate, DER |
//! | `GET /edge.crt` (or `POST`), body = PKCS#10 CSR (DER), header `NodeName: <node>` | `Authorization: Bearer <jwt>` (or the full `<caHash>.<jwt>` token) | 200, a node certificate, DER: CN = node name, clientAuth, 1 year, signed by the CA |
//!
//! A missing, malformed, foreign or expired token is **401** with the reason as a one-line text body;
//! a missing/invalid node name or an unparsable CSR (or one whose self-signature is wrong) is **400**.
//! The token is checked before anything else. Unlike v1.3, the certificate's subject is not copied
//! from the CSR: CN is the `NodeName` header (the identity cloudhub later checks on the link).
//!
//! TLS uses cloudhub's server certificate and asks no client certificate. HTTP is a deliberately small
//! HTTP/1.1 subset: one request per connection, `Content-Length` bodies up to 64 KiB, the request read
//! within 10 s; `Connection: close` on every answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ke_pki::token::TokenKey;
use ke_pki::{Ca, ca};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (a CSR is well under 2 KiB).
const MAX_BODY: usize = 64 * 1024;
/// Time for the TLS handshake plus the whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error(
        "cannot listen for certificate bootstrap (modules.cloudhub.https) on {addr}: {source}; pick a free port or set https.enable: false"
    )]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the bootstrap server needs.
pub struct CertServerOptions {
    /// Listen address (`https.address:https.port`).
    pub listen: SocketAddr,
    /// TLS configuration ([`ke_pki::tls::bootstrap_server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// The CA that signs node certificates.
    pub ca: Arc<Ca>,
    /// Verifies bearer tokens ([`TokenKey::from_ca`] of the same CA).
    pub token_key: Arc<TokenKey>,
}

impl std::fmt::Debug for CertServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertServerOptions")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Binds and serves until `cancel` fires; returns the bound address.
pub async fn serve(opts: CertServerOptions, cancel: CancellationToken) -> Result<SocketAddr> {
    let listener = ke_transport::ws::listen(opts.listen).map_err(|source| Error::Bind {
        addr: opts.listen,
        source,
    })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: opts.listen,
        source,
    })?;
    let acceptor = TlsAcceptor::from(opts.tls.clone());
    let state = Arc::new(State {
        ca_der: opts.ca.cert_der().to_vec(),
        ca: opts.ca,
        token_key: opts.token_key,
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let (acceptor, state) = (acceptor.clone(), state.clone());
                        tokio::spawn(async move {
                            let served = tokio::time::timeout(REQUEST_TIMEOUT, async {
                                let tls = acceptor.accept(tcp).await?;
                                answer(tls, &state, peer).await
                            });
                            match served.await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => debug!(%peer, error = %e, "bootstrap request failed"),
                                Err(_) => debug!(%peer, "bootstrap request timed out"),
                            }
                        });
                    }
                    Err(e) => warn!(error = %e, "bootstrap accept failed"),
                },
            }
        }
    });
    Ok(local)
}

struct State {
    ca: Arc<Ca>,
    ca_der: Vec<u8>,
    token_key: Arc<TokenKey>,
}

/// One parsed request.
#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    /// Header names lower-cased.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A response: status, content type, body.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn der(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            content_type: "application/octet-stream",
            body,
        }
    }

    fn text(status: u16, msg: impl Into<String>) -> Self {
        let mut body = msg.into().into_bytes();
        body.push(b'\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    state: &State,
    peer: SocketAddr,
) -> std::io::Result<()> {
    let resp = match read_request(&mut stream).await? {
        Ok(req) => handle(&req, state, peer),
        Err(resp) => resp,
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.shutdown().await
}

/// Reads one request; `Ok(Err(resp))` is a request we answer with an error without handling it.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Result<Request, Response>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err(Response::text(400, "request head too large")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(Err(Response::text(400, "malformed request line")));
    };
    let mut req = Request {
        method: method.to_owned(),
        path: target.split('?').next().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req.headers
                .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    if req.headers.contains_key("transfer-encoding") {
        return Ok(Err(Response::text(
            400,
            "chunked bodies are not supported: send Content-Length",
        )));
    }
    let len = match req.headers.get("content-length").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(Ok(_)) => return Ok(Err(Response::text(413, "request body too large"))),
        Some(Err(_)) => return Ok(Err(Response::text(400, "invalid Content-Length"))),
    };
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    req.body = body;
    Ok(Ok(req))
}

fn handle(req: &Request, state: &State, peer: SocketAddr) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/ca.crt") => Response::der(state.ca_der.clone()),
        ("GET" | "POST", "/edge.crt") => edge_cert(req, state, peer),
        (_, "/ca.crt" | "/edge.crt") => Response::text(405, "method not allowed"),
        _ => Response::text(404, "not found: use GET /ca.crt or GET /edge.crt"),
    }
}

fn edge_cert(req: &Request, state: &State, peer: SocketAddr) -> Response {
    let bearer = req.headers.get("authorization").and_then(|v| {
        let (scheme, cred) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| cred.trim())
    });
    let Some(bearer) = bearer else {
        warn!(%peer, "certificate request without a token refused");
        return Response::text(
            401,
            "unauthorized: missing `Authorization: Bearer <token>` header (get a token with `keadm gettoken`)",
        );
    };
    if let Err(e) = state.token_key.verify(bearer) {
        warn!(%peer, error = %e, "certificate request with a bad token refused");
        return Response::text(401, format!("unauthorized: {e}"));
    }
    let Some(node) = req.headers.get("nodename").filter(|n| !n.is_empty()) else {
        return Response::text(400, "bad request: missing NodeName header");
    };
    if req.body.is_empty() {
        return Response::text(
            400,
            "bad request: the body must be a PKCS#10 certificate signing request (DER)",
        );
    }
    match state.ca.sign_node_csr(node, &req.body) {
        Ok(der) => {
            info!(%peer, %node, "issued a node certificate (token bootstrap)");
            Response::der(der.to_vec())
        }
        Err(e @ (ca::Error::BadCsr(_) | ca::Error::InvalidNodeName(_) | ca::Error::ReservedNodeName)) => {
            Response::text(400, format!("bad request: {e}"))
        }
        Err(e) => {
            warn!(%node, error = %e, "cannot sign a node certificate");
            Response::text(500, format!("cannot sign the certificate: {e}"))
        }
    }
}
