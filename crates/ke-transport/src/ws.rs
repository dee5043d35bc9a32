//! WebSocket over mutual TLS: KubeEdge v1.2's link (`shared/spec/cloudhub-edgehub.md` §2–§4).
//!
//! The edge dials `wss://<server>/<project>/<node>/events` with the headers `node_id`, `project_id`
//! and `ConnectionUse: msg`; the cloud ignores the path. Each envelope is one text frame holding
//! the JSON and a trailing `\n`; both text and binary frames are accepted on receipt. Large messages
//! may arrive in continuation frames, which tungstenite reassembles.

use std::sync::Arc;

use futures_util::StreamExt;
use ke_core::names::header;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::link::{LinkRx, LinkTx};
use crate::{ConnInfo, EdgeHello, LinkError, LinkLimits, Refusal, Result, Transport};

fn ws_config(limits: &LinkLimits) -> WebSocketConfig {
    // Small buffers: the cloud holds one socket per edge node, and tungstenite's 128 KiB default read
    // buffer would dominate memory at 10,000 nodes. Buffers grow for large messages as needed.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message))
}

fn header_value<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn refusal_response(r: &Refusal) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(r.reason.clone()));
    *resp.status_mut() = http::StatusCode::from_u16(r.status).unwrap_or(http::StatusCode::FORBIDDEN);
    resp
}

/// Accept-queue length asked of the kernel for a cloud listener (it caps the value at
/// `net.core.somaxconn`). Thousands of edges reconnect at once when a cloudcore dies; with the
/// usual 1024 the overflow's SYNs are dropped and those edges wait out TCP's SYN back-off
/// (1, 3, 7, 15, 31, 63 s…) instead of being accepted a moment later.
pub const LISTEN_BACKLOG: u32 = 8192;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `tokio::net::TcpListener::bind` sets it).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Server side: TLS handshake (client certificate required by `tls`), then the WebSocket upgrade.
///
/// `admit` sees the edge's claimed identity and its certificate before the upgrade completes and may
/// refuse it; the refusal is sent as an HTTP error status. The `ConnectionUse: msg` header is
/// required (v1.2 edges always send it).
pub async fn accept<F>(
    tcp: TcpStream,
    tls: &TlsAcceptor,
    limits: &LinkLimits,
    admit: F,
) -> Result<(ConnInfo, LinkTx, LinkRx)>
where
    F: FnOnce(&ConnInfo) -> std::result::Result<(), Refusal> + Unpin,
{
    let remote = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let fut = async {
        let tls_stream = tls.accept(tcp).await.map_err(|source| LinkError::Tls {
            peer: remote.clone(),
            source,
        })?;
        let certs = tls_stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut info = ConnInfo {
            node_id: String::new(),
            project_id: String::new(),
            remote: remote.clone(),
            transport: Transport::WebSocket,
            peer_certs: Arc::new(certs),
        };
        let mut refused = None;
        let info_ref = &mut info;
        let refused_ref = &mut refused;
        #[allow(clippy::result_large_err)] // the error type is fixed by tungstenite's Callback trait
        let callback = move |req: &Request, resp: Response| {
            info_ref.node_id = header_value(req, header::NODE_ID).to_owned();
            info_ref.project_id = header_value(req, header::PROJECT_ID).to_owned();
            let verdict = if header_value(req, header::CONNECTION_USE) != header::CONNECTION_USE_MSG {
                Err(Refusal::new(400, "ConnectionUse header must be \"msg\""))
            } else if info_ref.node_id.is_empty() {
                Err(Refusal::new(400, "node_id header is missing"))
            } else {
                admit(info_ref)
            };
            match verdict {
                Ok(()) => Ok(resp),
                Err(r) => {
                    let e = refusal_response(&r);
                    *refused_ref = Some(r);
                    Err(e)
                }
            }
        };
        let ws = tokio_tungstenite::accept_hdr_async_with_config(
            TlsStream::Server(tls_stream),
            callback,
            Some(ws_config(limits)),
        )
        .await;
        match (ws, refused) {
            (Ok(ws), _) => Ok((info, ws)),
            (Err(_), Some(r)) => Err(LinkError::Refused(r)),
            (Err(e), None) => Err(LinkError::WebSocket(e)),
        }
    };
    let (info, ws) = tokio::time::timeout(limits.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::HandshakeTimeout(limits.handshake_timeout))??;
    let (sink, stream) = ws.split();
    Ok((
        info,
        LinkTx::Ws(sink),
        LinkRx::Ws {
            stream,
            max_message: limits.max_message,
        },
    ))
}

/// Splits `host:port` into the TLS server name and the address to dial.
pub(crate) fn server_name(server: &str) -> Result<ServerName<'static>> {
    let host = match server.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => server,
    };
    ServerName::try_from(host.to_owned())
        .map_err(|e| LinkError::Invalid(format!("server address {server:?} has no valid host name: {e}")))
}

/// Edge side: dial `server` (`host:port`), TLS with the client certificate in `tls`, upgrade with the
/// v1.2 headers.
pub async fn connect(
    server: &str,
    hello: &EdgeHello,
    tls: Arc<rustls::ClientConfig>,
    limits: &LinkLimits,
) -> Result<(LinkTx, LinkRx)> {
    let name = server_name(server)?;
    let fut = async {
        let tcp = TcpStream::connect(server).await?;
        tcp.set_nodelay(true)?;
        let tls_stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|source| LinkError::Tls {
                peer: server.to_owned(),
                source,
            })?;
        let uri = format!("wss://{server}/{}/{}/events", hello.project_id, hello.node_id);
        let req = http::Request::builder()
            .method("GET")
            .uri(&uri)
            .header("Host", server)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", generate_key())
            .header(header::NODE_ID, &hello.node_id)
            .header(header::PROJECT_ID, &hello.project_id)
            .header(header::CONNECTION_USE, header::CONNECTION_USE_MSG)
            .body(())
            .map_err(|e| LinkError::Invalid(format!("cannot build upgrade request for {uri}: {e}")))?;
        let res = tokio_tungstenite::client_async_with_config(
            req,
            TlsStream::Client(tls_stream),
            Some(ws_config(limits)),
        )
        .await;
        match res {
            Ok((ws, _resp)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let reason = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(LinkError::Refused(Refusal::new(resp.status().as_u16(), reason)))
            }
            Err(e) => Err(LinkError::WebSocket(e)),
        }
    };
    let ws = tokio::time::timeout(limits.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::HandshakeTimeout(limits.handshake_timeout))??;
    let (sink, stream) = ws.split();
    Ok((
        LinkTx::Ws(sink),
        LinkRx::Ws {
            stream,
            max_message: limits.max_message,
        },
    ))
}
