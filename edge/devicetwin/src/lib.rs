//! DeviceTwin: the edge's registry of devices and their twin state (KubeEdge v1.2 semantics,
//! `shared/spec/mqtt.md` §2–§7, `shared/spec/edge-storage.md` §6, `shared/spec/message.md` §7).
//!
//! Owns the `device`, `device_attr` and `device_twin` tables (through the shared
//! [`ke_store::Store`] handle, so the database keeps one writer) and an in-memory copy loaded at
//! start. Every change is computed on a copy, written in **one** SQLite transaction, and only then
//! made live and published: a crash never leaves a device half written, and a device never sees a
//! state that is not on disk.
//!
//! Start reading at [`DeviceTwin`]; the handlers are in `module.rs`, the pure merge rules (version
//! vectors, validation, delta) in `state.rs`, the SQL in `db.rs`, the JSON shapes in [`types`].
//!
//! # Beehive messages
//! Module `twin`, group `twin`.
//!
//! Consumes:
//! * from the eventbus (source `bus`, resource = URL-safe base64 of the MQTT topic, content = the
//!   payload): `$hw/events/device/<id>/twin/update`, `…/twin/get`, `…/twin/cloud_updated`,
//!   `…/state/update`, `$hw/events/node/<node>/membership/get`;
//! * from the cloud (group `twin`): `update` on `membership` (devices added/removed),
//!   `update` on `device/<id>/twin/cloud_updated`, `updated` on `device/<id>` (attributes),
//!   and a `membership/detail` answer (full device list);
//! * from edgehub: `publish` on `node/connection` (`cloud_connected` / `cloud_disconnected`);
//! * any cloud message whose `parent_msg_id` is one of the twin's unconfirmed messages confirms it.
//!
//! Emits:
//! * to module `eventbus`, `publish` (resource = topic, content = JSON payload string):
//!   `…/twin/update/result`, `…/twin/update/document`, `…/twin/update/delta`, `…/twin/get/result`,
//!   `…/state/update/result`, `$hw/events/device/<id>/updated`,
//!   `$hw/events/node/<node>/membership/updated`, `…/membership/get/result`;
//! * to module `websocket` (the cloud), source `twin`, group `resource`: `update`
//!   `device/<id>/twin/edge_updated` (object content), `update` `device/<id>/state` (string
//!   content), and `get` `membership/detail` (string content) on every connection.
//!
//! # Reliability
//! Messages to the cloud stay in a bounded queue ([`DeviceTwinOptions::max_pending`]) until a
//! cloud message names them as parent; they are sent at once when connected, and all of them again
//! on every reconnection and every [`DeviceTwinOptions::resend_interval`] while connected. So twin
//! changes made while offline reach the cloud after the link comes back.
//!
//! # Differences from v1.2 (dead ends fixed)
//! * Offline changes are queued and sent after reconnection (v1.2 only re-sent on a 60 s idle
//!   timer); the queue is bounded (v1.2's confirm map grew forever against a cloud that never
//!   confirms).
//! * `membership/detail` answers from the cloud are applied (full set; unlisted devices removed);
//!   v1.2 had no consumer.
//! * Request errors on `twin/update` (bad JSON, no `twin`, bad key/value characters) are published
//!   on v1.2's topic `$hw/events/device//twin/update/result` (empty device id, empty event id)
//!   **and** on the device's own result topic with its event id, which v1.2 never did.
//! * Value types are checked on every change; v1.2 skipped the check for the first value of a
//!   side on an existing twin (so `int` twins could hold `abc`). A type violation refuses the whole
//!   update without touching anything (v1.2 could keep twins changed before the bad one in memory).
//! * The actual-value metadata is re-attached when loading from SQLite (v1.2 lost it on restart).
//! * A re-sent membership add of a known device (every devicecontroller start) updates it in place
//!   instead of re-creating it.
//! * A panic while handling one message is contained: the twin reloads its state from SQLite and
//!   carries on ([`Health`] counts it); v1.2 restarted silent sub-module goroutines.
//! * `last_online` is written in UTC.
#![warn(missing_docs)]

mod db;
mod error;
mod module;
mod state;
pub mod types;

pub use error::{Error, Result};
pub use module::{
    DeviceTwin, DeviceTwinOptions, Health, REASON_BAD_KEY, REASON_BAD_VALUE, REASON_NO_DEVICE,
    REASON_NO_TWIN, REASON_UNMARSHAL, SUBMODULES, SubHealth,
};
