use std::sync::Arc;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use ke_core::Message;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::quic::{FrameReader, FrameWriter};
use crate::{LinkError, Result};

pub(crate) type WsStream = WebSocketStream<TlsStream<TcpStream>>;

/// Which transport carries a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket over TLS.
    WebSocket,
    /// IETF QUIC.
    Quic,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "websocket",
            Transport::Quic => "quic",
        })
    }
}

/// What the cloud knows about a connected edge.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// `node_id` the edge claimed.
    pub node_id: String,
    /// `project_id` the edge sent.
    pub project_id: String,
    /// Remote socket address.
    pub remote: String,
    /// Transport in use.
    pub transport: Transport,
    /// The client certificate chain the edge presented (leaf first).
    pub peer_certs: Arc<Vec<CertificateDer<'static>>>,
}

/// What a receive returns.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // the message is the common case; boxing it would cost an allocation each
pub enum Inbound {
    /// An envelope.
    Message(Message),
    /// A control frame (WebSocket ping/pong): the peer is alive, nothing to route.
    Alive,
}

/// Receiving half of a link.
#[derive(Debug)]
pub enum LinkRx {
    /// WebSocket.
    Ws {
        /// Frame stream.
        stream: SplitStream<WsStream>,
        /// Envelope size limit.
        max_message: usize,
    },
    /// QUIC.
    Quic(FrameReader),
}

/// Sending half of a link.
#[derive(Debug)]
pub enum LinkTx {
    /// WebSocket.
    Ws(SplitSink<WsStream, WsMessage>),
    /// QUIC.
    Quic(FrameWriter),
}

impl LinkRx {
    /// The next inbound item; `Ok(None)` when the peer closed the link cleanly. A frame that is not
    /// an envelope, or is larger than the limit, is an error: the caller drops the peer.
    pub async fn recv(&mut self) -> Result<Option<Inbound>> {
        match self {
            LinkRx::Ws { stream, max_message } => loop {
                let Some(frame) = stream.next().await else {
                    return Ok(None);
                };
                let bytes = match frame? {
                    WsMessage::Text(t) => bytes::Bytes::from(t),
                    WsMessage::Binary(b) => b,
                    WsMessage::Ping(_) | WsMessage::Pong(_) => return Ok(Some(Inbound::Alive)),
                    WsMessage::Close(_) => return Ok(None),
                    WsMessage::Frame(_) => continue,
                };
                let msg = Message::from_slice_limited(&bytes, *max_message)?;
                return Ok(Some(Inbound::Message(msg)));
            },
            LinkRx::Quic(r) => Ok(r.read().await?.map(Inbound::Message)),
        }
    }

    /// Like [`recv`](Self::recv) but skips control frames.
    pub async fn recv_message(&mut self) -> Result<Option<Message>> {
        loop {
            match self.recv().await? {
                Some(Inbound::Message(m)) => return Ok(Some(m)),
                Some(Inbound::Alive) => continue,
                None => return Ok(None),
            }
        }
    }
}

impl LinkTx {
    /// Sends one envelope (WebSocket: a text frame with the JSON and a trailing `\n`).
    pub async fn send(&mut self, msg: &Message) -> Result<()> {
        match self {
            LinkTx::Ws(sink) => Ok(sink.send(WsMessage::text(msg.to_ws_frame())).await?),
            LinkTx::Quic(w) => w.write(msg).await,
        }
    }

    /// Sends a liveness probe the peer answers without the application seeing it (WebSocket ping;
    /// QUIC has its own keep-alive, so this is a no-op there).
    pub async fn ping(&mut self) -> Result<()> {
        match self {
            LinkTx::Ws(sink) => Ok(sink.send(WsMessage::Ping(bytes::Bytes::new())).await?),
            LinkTx::Quic(_) => Ok(()),
        }
    }

    /// Closes the link politely.
    pub async fn close(&mut self) -> Result<()> {
        match self {
            LinkTx::Ws(sink) => match sink.close().await {
                Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Ok(()),
                Err(e) => Err(LinkError::WebSocket(e)),
            },
            LinkTx::Quic(w) => {
                w.finish();
                Ok(())
            }
        }
    }
}
