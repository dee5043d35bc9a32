//! Transports of the cloud–edge link. Each carries beehive envelopes ([`ke_core::Message`]) and
//! nothing else; sessions, queues and acks live in `cloudhub` and `edgehub`.
//!
//! * [`ws`]: WebSocket over mutual TLS, KubeEdge v1.2's link (`wss://<server>/<project>/<node>/events`,
//!   upgrade headers `node_id`, `project_id`, `ConnectionUse: msg`; one JSON envelope plus `\n` per text
//!   frame). Stock v1.2 edgecores and cloudcores speak it.
//! * [`quic`]: IETF QUIC (RFC 9000, quinn) between our own cloud and edge. v1.2's gQUIC is dead and no
//!   maintained library speaks it, so only the envelopes carry over. Framing is documented in [`quic`].
//! * [`unix`]: the cloud-local unix socket (one request envelope in, one reply envelope out).
//!
//! Both link transports produce the same pair: a [`LinkTx`] to send and a [`LinkRx`] to receive, so the
//! hubs do not care which one is in use. Start reading at [`ws::accept`] and [`ws::connect`].
#![warn(missing_docs)]

mod error;
mod link;
pub mod quic;
pub mod unix;
pub mod ws;

pub use error::{LinkError, Refusal, Result};
pub use link::{ConnInfo, Inbound, LinkRx, LinkTx, Transport};

use std::time::Duration;

/// The ALPN protocol our QUIC link negotiates.
pub const QUIC_ALPN: &[u8] = b"kubeedge";

/// Limits shared by both link transports.
#[derive(Debug, Clone)]
pub struct LinkLimits {
    /// Largest envelope accepted from a peer; a bigger frame drops the peer.
    pub max_message: usize,
    /// How long the TLS + upgrade (or QUIC + header) handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            max_message: ke_core::MAX_MESSAGE_BYTES,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// Identity an edge presents when it connects (the v1.2 upgrade headers).
#[derive(Debug, Clone)]
pub struct EdgeHello {
    /// Node name; the cloud's routing key (`node_id`).
    pub node_id: String,
    /// Project id (`project_id`), logged only.
    pub project_id: String,
}
