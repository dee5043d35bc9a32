use ke_core::DecodeError;

/// Why a link could not be set up or broke.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP / socket level failure.
    #[error("i/o error on the link: {0}")]
    Io(#[from] std::io::Error),
    /// TLS handshake failed (bad or missing certificate, unknown CA, …).
    #[error("TLS handshake with {peer} failed: {source}")]
    Tls {
        /// Remote address.
        peer: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// WebSocket protocol error.
    #[error("websocket error: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// QUIC connection error.
    #[error("QUIC connection error: {0}")]
    Quic(#[from] quinn::ConnectionError),
    /// QUIC connect could not start.
    #[error("QUIC connect error: {0}")]
    QuicConnect(#[from] quinn::ConnectError),
    /// QUIC stream write error.
    #[error("QUIC write error: {0}")]
    QuicWrite(#[from] quinn::WriteError),
    /// QUIC stream read error.
    #[error("QUIC read error: {0}")]
    QuicRead(#[from] quinn::ReadExactError),
    /// TLS configuration cannot be used for QUIC (it needs TLS 1.3).
    #[error("TLS configuration unusable for QUIC: {0}")]
    QuicConfig(String),
    /// The peer sent a frame that is not an envelope, or one that is too large.
    #[error("bad frame from peer: {0}")]
    BadFrame(#[from] DecodeError),
    /// The peer refused us, or we refused the peer.
    #[error("connection refused: {0}")]
    Refused(Refusal),
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// Something about the address or request was invalid.
    #[error("invalid link setting: {0}")]
    Invalid(String),
}

impl LinkError {
    /// The peer broke the protocol — a frame that is not an envelope, one over the size limit,
    /// text that is not UTF-8, an unmasked or otherwise malformed WebSocket frame — as opposed to
    /// the link failing or closing. Such a peer is dropped and counted as a bad peer.
    pub fn is_bad_frame(&self) -> bool {
        use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
        match self {
            LinkError::BadFrame(_) => true,
            LinkError::WebSocket(WsError::Capacity(_) | WsError::Utf8(_) | WsError::AttackAttempt) => true,
            // A reset without a close frame is a link that died, not a bad peer.
            LinkError::WebSocket(WsError::Protocol(p)) => {
                !matches!(p, ProtocolError::ResetWithoutClosingHandshake)
            }
            _ => false,
        }
    }
}

/// Why a connection was refused at the upgrade step. Carried to the peer as an HTTP status (WebSocket)
/// or a `nack` (QUIC).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    /// HTTP status sent to a WebSocket peer (403 identity, 400 bad headers, 503 node limit).
    pub status: u16,
    /// Human-readable reason, logged on both sides.
    pub reason: String,
}

impl Refusal {
    /// A refusal with the given status and reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Result with [`LinkError`].
pub type Result<T, E = LinkError> = std::result::Result<T, E>;

#[cfg(test)]
mod bad_frame_tests {
    use super::*;
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

    #[test]
    fn protocol_violations_are_bad_frames_and_dead_links_are_not() {
        let bad = [
            LinkError::WebSocket(WsError::Utf8("invalid".into())),
            LinkError::WebSocket(WsError::Capacity(CapacityError::MessageTooLong {
                size: 9,
                max_size: 8,
            })),
            LinkError::WebSocket(WsError::Protocol(ProtocolError::UnmaskedFrameFromClient)),
            LinkError::WebSocket(WsError::AttackAttempt),
        ];
        for e in &bad {
            assert!(e.is_bad_frame(), "{e}");
        }
        let not = [
            LinkError::WebSocket(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)),
            LinkError::WebSocket(WsError::ConnectionClosed),
            LinkError::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
            LinkError::HandshakeTimeout(std::time::Duration::from_secs(1)),
        ];
        for e in &not {
            assert!(!e.is_bad_frame(), "{e}");
        }
    }
}
