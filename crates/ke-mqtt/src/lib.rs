//! Embedded MQTT 3.1.1 broker for edgecore's eventbus "internal mode" (KubeEdge's
//! `mqttServerInternal`, default `tcp://127.0.0.1:1884`), plus small client helpers.
//!
//! Why our own broker: `rumqttd` refuses every subscription whose filter starts with `$`, and every
//! KubeEdge topic is `$hw/...`. The wire codec is rumqttc's (`rumqttc::mqttbytes::v4`); this crate
//! owns sessions, routing, retained messages, wills, keepalive and flow control.
//!
//! # Where to start reading
//! * [`Broker`] (`broker.rs`): bind, accept loop, shutdown; [`BrokerHandle`]: the in-process API the
//!   eventbus uses (`publish`, `subscribe` -> channel of `(topic, payload)`).
//! * `conn.rs`: one TCP client — CONNECT handshake, reader, writer.
//! * `state.rs`: sessions, subscriptions, retained store, routing and the per-session outbox.
//! * [`topic`]: filter matching with the `$` rule (`#` does not match `$hw/...`, `$hw/events/#` does).
//!
//! # Behaviour (MQTT 3.1.1)
//! * CONNECT with a protocol level other than 4 gets CONNACK 0x01 (unacceptable protocol version);
//!   an empty client id with `clean_session = 0` gets 0x02. Username/password are accepted unchecked
//!   (KubeEdge's internal broker has no auth). A second CONNECT with the same client id disconnects the
//!   first connection (takeover; the old connection's will is **not** published).
//! * QoS: incoming QoS 0/1/2 are all accepted; QoS 2 is answered PUBREC, PUBREL -> PUBCOMP and routed
//!   exactly once. Deliveries are at most QoS 1: SUBACK grants `min(requested, 1)` and a message is
//!   delivered with `min(publish QoS, granted QoS)` (so QoS 2 is downgraded to 1). Overlapping
//!   subscriptions of one client give one delivery at the highest granted QoS.
//! * Retained messages are stored per topic, cleared by an empty retained payload, and sent (retain
//!   flag set) after the SUBACK of a matching subscription. Live deliveries carry retain = 0.
//! * Wills are published when the connection ends without DISCONNECT: I/O error, peer close,
//!   keepalive expiry (nothing received for 1.5 × keepalive), malformed/oversized packet or protocol
//!   violation. Not on DISCONNECT, takeover or broker shutdown.
//! * Sessions: `clean_session = 1` state dies with the connection. `clean_session = 0` sessions live
//!   for the broker process: subscriptions, queued QoS 1 messages (QoS 0 is not queued while offline)
//!   and unacknowledged QoS 1 messages (resent with DUP on reconnect); CONNACK reports
//!   `session_present`.
//!
//! # Flow control and robustness
//! * Each session has an outbox of [`BrokerOptions::queue_len`] messages (default 100) plus an
//!   in-flight window of [`BrokerOptions::max_inflight`] unacknowledged QoS 1 messages (default 32).
//!   Routing never waits for a client. **Overflow policy**: a QoS 0 message for a full queue is dropped;
//!   a QoS 1 message evicts the oldest queued QoS 0 message, else the oldest queued QoS 1 message
//!   (newest data wins, as twin/state updates supersede older ones). Drops are counted in
//!   [`Stats::messages_dropped`]; the slow client stays connected.
//! * Packets larger than [`BrokerOptions::max_packet_size`] (default 1 MiB remaining length) and
//!   undecodable bytes drop only that client. A new connection must send CONNECT within
//!   [`BrokerOptions::connect_timeout`].
//! * In-process subscribers get a bounded channel ([`BrokerOptions::local_queue_len`], default 1024);
//!   overflow drops and counts, never blocks the router.
//! * Routing is a linear scan over sessions × subscriptions: fine for an edge node's handful of
//!   mappers/apps, not meant for thousands of clients.

#![warn(missing_docs)]

mod broker;
mod conn;
mod error;
mod options;
mod state;
pub mod topic;
mod url;

pub use broker::{Broker, BrokerHandle};
pub use error::{Error, Result};
pub use options::BrokerOptions;
pub use rumqttc::mqttbytes::QoS;
pub use state::Stats;
pub use url::ServerUrl;
