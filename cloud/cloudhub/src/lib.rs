//! CloudHub: the cloud end of the cloud–edge link.
//!
//! It owns the listeners (WebSocket over mutual TLS, IETF QUIC, and the cloud-local unix socket),
//! one session per connected edge node, and one outbound [`queue::NodeQueue`] per node that outlives
//! the node's connections. Controllers hand it messages with [`CloudHub::send`]; everything the
//! edges send comes out as [`HubEvent`]s on the channel given to [`CloudHub::start`], with the
//! resource prefixed `node/<node>/` as KubeEdge's controllers expect.
//!
//! ```mermaid
//! sequenceDiagram
//!     participant C as controller
//!     participant H as cloudhub
//!     participant E as edgehub
//!     C->>H: send(insert node/n1/default/pod/p, rv=7)
//!     H->>E: insert default/pod/p (prefix stripped)
//!     E-->>H: response parent=<id> "OK"
//!     H->>C: HubEvent::Acked (the message leaves the queue)
//!     Note over H,E: no ack within 5 s → resend, back-off doubling to 60 s
//! ```
//!
//! What it fixes relative to KubeEdge v1.2 (`shared/spec/cloudhub-edgehub.md`):
//! * **identity**: the client certificate's CN must equal the `node_id` the edge claims; the shared
//!   v1.2 certificate (CN `kubeedge.io`) is refused unless `allowLegacyEdgeCert` is set;
//! * **node limit** is exactly `nodeLimit` connected nodes, enforced at the handshake (v1.2 silently
//!   dropped every message once `nodeLimit - 1` nodes were registered);
//! * **no read deadline bug**: a node is dropped only when nothing (keepalive, message or
//!   WebSocket ping) arrived for `keepaliveInterval` seconds, i.e. two missed 15 s heartbeats;
//! * **acked delivery** keeps unacked messages across disconnects and resends them with back-off
//!   instead of giving up after four tries (see [`queue`]), and across cloudcore restarts when a
//!   `queueStore` file is configured (see [`persist`]).
//!
//! Certificate bootstrap (KubeEdge v1.3, `modules.cloudhub.https`): [`https`] serves `/ca.crt` and
//! `/edge.crt` (a node certificate for a CSR, with a bearer token) and [`tokensecret`] keeps the
//! current token in the Secret `kubeedge/tokensecret` for `keadm gettoken`.
//!
//! High availability (`modules.cloudhub.ha`): several cloudcores share the nodes through one
//! Lease per node; [`ha`] has the design and its invariants.
//!
//! Start reading at [`CloudHub::start`]; sessions live in `hub.rs`.
#![warn(missing_docs)]

pub mod casecret;
pub mod ha;
pub mod https;
mod hub;
pub mod metrics;
pub mod persist;
pub mod queue;
pub mod tokensecret;

/// The HTTP status of a Kubernetes API error (`None` for transport errors).
pub(crate) fn api_status(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub use hub::{CloudHub, CloudHubOptions, HubError, HubEvent, Listening};
