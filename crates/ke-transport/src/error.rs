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
