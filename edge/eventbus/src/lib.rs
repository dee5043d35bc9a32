//! EventBus: the edge's MQTT bridge, the beehive module `eventbus` (group `bus`).
//!
//! Owns the MQTT side of edgecore (`shared/spec/mqtt.md` §1–§3, §8): the embedded broker
//! (internal mode, on `mqttServerInternal`) and/or a client connection to an external broker such
//! as mosquitto (external mode), chosen by [`MqttMode`].
//!
//! # Messages
//! * **Emits**, for every MQTT message on one of the [`SUBSCRIBED_TOPICS`] (or a topic the cloud
//!   subscribed to): source `bus`, group `user`, operation `response`, resource = URL-safe base64
//!   (with `=`) of the topic ([`topic_resource`]), content = the payload as a JSON string. Topics
//!   under `$hw/events/device` or `$hw/events/node` go to group `twin`; everything else goes to the
//!   cloud through module `websocket` (dropped with a debug log if it is not registered).
//! * **Consumes** from its mailbox: `publish` (resource = topic, string content = payload; from the
//!   twin, from edgehub's `node/connection` events, and from the cloud), `subscribe` (resource =
//!   filter), `message` (content `{"message":{"topic":..}}`, republished as JSON) and `get_result` on
//!   `auth_info`. Anything else is ignored.
//!
//! Publishes go to every active broker: internally with the configured `mqttQOS`/`mqttRetain`,
//! externally with QoS 1, retain false (as KubeEdge does). The external connection retries every
//! [`EventBusOptions::reconnect_interval`] and re-subscribes after each (re)connection.
//!
//! ```mermaid
//! sequenceDiagram
//!   participant D as device / mapper
//!   participant B as MQTT broker
//!   participant E as eventbus
//!   participant T as twin
//!   D->>B: PUBLISH $hw/events/device/d1/twin/update
//!   B->>E: (topic, payload)
//!   E->>T: response, resource base64url(topic), content payload
//!   T->>E: publish, resource $hw/events/device/d1/twin/update/result
//!   E->>B: PUBLISH .../twin/update/result
//!   B->>D: deliver
//! ```
//!
//! Start reading at [`EventBus`] (`module.rs`); the pure MQTT ↔ beehive mapping is in `convert.rs`.
#![warn(missing_docs)]

mod convert;
mod error;
mod module;
mod options;

pub use convert::{SUBSCRIBED_TOPICS, topic_resource};
pub use error::{Error, Result};
pub use module::EventBus;
pub use options::{EventBusOptions, MqttMode};
