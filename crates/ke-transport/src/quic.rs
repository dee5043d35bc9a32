//! IETF QUIC link (RFC 9000, quinn), between our own cloudcore and edgecore.
//!
//! KubeEdge v1.2 used pre-standard Google QUIC, which no maintained library speaks; we keep its
//! *message* layer and change the framing to something simpler:
//!
//! * TLS 1.3 with mutual authentication (same certificates as the WebSocket link), ALPN `kubeedge`.
//! * The edge opens **one bidirectional stream** right after the handshake and uses it for the whole
//!   session, in both directions.
//! * Every frame on that stream is a 4-byte big-endian length followed by that many bytes of one JSON
//!   envelope (the same JSON as on WebSocket, without the trailing newline).
//! * The first frame from the edge is the v1.2 *header* message: `route.operation` and
//!   `route.resource` both `"header"`, content the header map
//!   `{"Node_id":["<node>"],"Project_id":["<project>"]}`. The cloud answers with one frame: a
//!   `response` whose `parent_msg_id` is the header's id and whose content is `"ack"`, or `"nack"`
//!   followed by closing the connection with the reason.
//! * Liveness is QUIC's own keep-alive (PING frames) plus the application keepalive envelope.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ke_core::Message;
use ke_core::names::op;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;
use serde_json::json;

use crate::link::{LinkRx, LinkTx};
use crate::{ConnInfo, EdgeHello, LinkError, LinkLimits, QUIC_ALPN, Refusal, Result, Transport};

const HEADER_OP: &str = "header";
const ACK: &str = "ack";
const NACK: &str = "nack";

/// Reads length-prefixed envelopes from a QUIC stream.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    max_message: usize,
    _conn: quinn::Connection,
}

/// Writes length-prefixed envelopes to a QUIC stream.
#[derive(Debug)]
pub struct FrameWriter {
    send: quinn::SendStream,
    conn: quinn::Connection,
    _endpoint: Option<quinn::Endpoint>,
}

impl FrameReader {
    /// Next envelope, `Ok(None)` when the peer finished the stream.
    pub async fn read(&mut self) -> Result<Option<Message>> {
        let mut len = [0u8; 4];
        match self.recv.read_exact(&mut len).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_message {
            return Err(ke_core::DecodeError::TooLarge {
                len,
                limit: self.max_message,
            }
            .into());
        }
        let mut buf = vec![0u8; len];
        self.recv.read_exact(&mut buf).await?;
        Ok(Some(Message::from_slice_limited(&buf, self.max_message)?))
    }
}

impl FrameWriter {
    /// Writes one envelope.
    pub async fn write(&mut self, msg: &Message) -> Result<()> {
        let body = msg.to_json_vec();
        let len = u32::try_from(body.len())
            .map_err(|_| LinkError::Invalid(format!("message of {} bytes is too large", body.len())))?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&body);
        self.send.write_all(&frame).await?;
        Ok(())
    }

    /// Finishes the stream and closes the connection.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
        self.conn.close(0u32.into(), b"bye");
    }
}

fn transport_config(keepalive: Duration) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(keepalive));
    if let Ok(idle) = quinn::IdleTimeout::try_from(keepalive.saturating_mul(4)) {
        t.max_idle_timeout(Some(idle));
    }
    // One long-lived stream per connection is all we use; don't let a peer open thousands.
    t.max_concurrent_bidi_streams(4u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    Arc::new(t)
}

/// Binds a QUIC server endpoint. `tls` must require client certificates; ALPN is set here.
pub fn server_endpoint(
    addr: SocketAddr,
    tls: &rustls::ServerConfig,
    keepalive: Duration,
) -> Result<quinn::Endpoint> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto =
        QuicServerConfig::try_from(Arc::new(tls)).map_err(|e| LinkError::QuicConfig(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport_config(keepalive));
    Ok(quinn::Endpoint::server(cfg, addr)?)
}

/// Server side of one incoming connection: QUIC handshake, then the header exchange. `admit` may
/// refuse the edge (it then gets `nack` and the connection is closed with the reason).
pub async fn accept<F>(
    incoming: quinn::Incoming,
    limits: &LinkLimits,
    admit: F,
) -> Result<(ConnInfo, LinkTx, LinkRx)>
where
    F: FnOnce(&ConnInfo) -> std::result::Result<(), Refusal>,
{
    let remote = incoming.remote_address().to_string();
    let fut = async {
        let conn = incoming.await?;
        let certs = conn
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        let (send, recv) = conn.accept_bi().await?;
        let mut reader = FrameReader {
            recv,
            max_message: limits.max_message,
            _conn: conn.clone(),
        };
        let mut writer = FrameWriter {
            send,
            conn: conn.clone(),
            _endpoint: None,
        };
        let hello = reader
            .read()
            .await?
            .ok_or_else(|| LinkError::Invalid("edge closed the stream before its header".into()))?;
        let first = |key: &str| -> String {
            hello
                .content
                .get(key)
                .and_then(|v| v.get(0))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let info = ConnInfo {
            node_id: first("Node_id"),
            project_id: first("Project_id"),
            remote: remote.clone(),
            transport: Transport::Quic,
            peer_certs: Arc::new(certs),
        };
        let verdict = if hello.operation() != HEADER_OP {
            Err(Refusal::new(400, "first QUIC frame must be the header message"))
        } else if info.node_id.is_empty() {
            Err(Refusal::new(400, "Node_id header is missing"))
        } else {
            admit(&info)
        };
        match verdict {
            Ok(()) => {
                writer.write(&hello.response(ACK)).await?;
                Ok((info, writer, reader))
            }
            Err(r) => {
                let _ = writer.write(&hello.response(NACK)).await;
                let _ = writer.send.finish();
                conn.close(u32::from(r.status).into(), r.reason.as_bytes());
                Err(LinkError::Refused(r))
            }
        }
    };
    let (info, w, r) = tokio::time::timeout(limits.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::HandshakeTimeout(limits.handshake_timeout))??;
    Ok((info, LinkTx::Quic(w), LinkRx::Quic(r)))
}

/// Edge side: connect to `server` (`host:port`), present the client certificate, send the header.
pub async fn connect(
    server: &str,
    hello: &EdgeHello,
    tls: &rustls::ClientConfig,
    limits: &LinkLimits,
    keepalive: Duration,
) -> Result<(LinkTx, LinkRx)> {
    let name = crate::ws::server_name(server)?;
    let host = match &name {
        rustls_pki_types::ServerName::DnsName(d) => d.as_ref().to_owned(),
        rustls_pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => {
            return Err(LinkError::Invalid(format!(
                "unsupported server name in {server:?}"
            )));
        }
    };
    let addr = tokio::net::lookup_host(server)
        .await?
        .next()
        .ok_or_else(|| LinkError::Invalid(format!("{server:?} did not resolve to an address")))?;
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![QUIC_ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| LinkError::QuicConfig(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport_config(keepalive));
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(cfg);
    let fut = async {
        let conn = endpoint.connect(addr, &host)?.await?;
        let (send, recv) = conn.open_bi().await?;
        let mut reader = FrameReader {
            recv,
            max_message: limits.max_message,
            _conn: conn.clone(),
        };
        let mut writer = FrameWriter {
            send,
            conn: conn.clone(),
            _endpoint: Some(endpoint.clone()),
        };
        let header = Message::new(
            "",
            "",
            HEADER_OP,
            HEADER_OP,
            json!({"Node_id": [hello.node_id], "Project_id": [hello.project_id]}),
        );
        writer.write(&header).await?;
        let reply = reader.read().await;
        match reply {
            Ok(Some(r)) if r.operation() == op::RESPONSE && r.content_str() == Some(ACK) => {
                Ok((writer, reader))
            }
            other => {
                let reason = match conn.close_reason() {
                    Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                        return Err(LinkError::Refused(Refusal::new(
                            u16::try_from(c.error_code.into_inner()).unwrap_or(403),
                            String::from_utf8_lossy(&c.reason).into_owned(),
                        )));
                    }
                    _ => format!("cloud did not acknowledge the QUIC header: {other:?}"),
                };
                Err(LinkError::Refused(Refusal::new(403, reason)))
            }
        }
    };
    let (w, r) = tokio::time::timeout(limits.handshake_timeout, fut)
        .await
        .map_err(|_| LinkError::HandshakeTimeout(limits.handshake_timeout))??;
    Ok((LinkTx::Quic(w), LinkRx::Quic(r)))
}
