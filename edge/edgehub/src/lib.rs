//! EdgeHub: the edge end of the cloud–edge link, as the beehive module `websocket` (group `hub`;
//! KubeEdge keeps that name even over QUIC).
//!
//! * **Up** (edge → cloud): everything sent to module `websocket` (or group `hub`) is written to the
//!   cloud in order. A message taken from the mailbox when the link breaks is kept and written first
//!   after the reconnect; the rest waits in the mailbox (bounded: senders get `QueueFull` after the
//!   bus's send timeout rather than losing messages silently).
//! * **Down** (cloud → edge): a message that answers a pending `send_sync` (its `parent_msg_id`) goes
//!   back to the waiting module; anything else is dispatched by `route.group`: `resource` and `func`
//!   → group `meta`, `twin` → `twin`, `user` → `bus`; other groups are dropped (as in v1.2).
//! * **Heartbeat**: the keepalive envelope immediately and then every `heartbeat`; over WebSocket
//!   also a ping frame, and the link is declared dead when nothing at all (not even a pong) arrived
//!   for `2 × heartbeat + 5 s` — v1.2 noticed a dead link only on its next failed write. QUIC uses
//!   its own keep-alive and idle timeout.
//! * **Connection events**: `cloud_connected` / `cloud_disconnected` (resource `node/connection`,
//!   operation `publish`, source `edgehub`) to groups `meta`, `twin` and `bus`.
//! * **Reconnect** with jittered exponential back-off from 1 s up to `2 × heartbeat`.
//! * **Acks are not sent here.** The module that stores a cloud message (MetaManager) sends the ack
//!   after its write is durable; EdgeHub only carries it. That is the hook for ack-after-commit.
//!
//! * **Certificate bootstrap** ([`bootstrap`], KubeEdge v1.3): with `modules.edgehub.token` set and a
//!   TLS file missing, edgecore fetches the CA (pinned by the token's hash) and a node certificate
//!   from cloudhub's HTTPS endpoint (`httpServer`) before the link is dialled.
//!
//! Start reading at [`EdgeHub::run`](ke_beehive::Module::run) in `hub.rs`.
#![warn(missing_docs)]

pub mod bootstrap;
mod hub;

pub use hub::{EdgeHub, EdgeHubMetrics, EdgeHubOptions, LinkKind};
