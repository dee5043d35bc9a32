//! Shared runtime of the KubeEdge device mappers (`mapper-modbus`, `mapper-bluetooth`).
//!
//! A mapper is an ordinary MQTT client of the edge broker. This crate owns what every mapper needs:
//! * [`profile`]: the device profile JSON the v1.2 cloud's devicecontroller writes into the
//!   ConfigMap `device-profile-config-<node>` (cloud field names), resolved into per-device,
//!   per-property bindings; [`watch::watch_profile`] reloads it on change (file watcher).
//! * [`twin`]: twin get / update / delta and `state/update` payloads and topics (mqtt.md §5).
//! * [`mqtt`]: one `rumqttc` client with re-subscription after reconnects.
//! * [`driver`]: the [`DeviceProtocol`] trait and a polling driver (read → `twin/update` when
//!   changed; delta / get-result → write; unreachable → `offline`, back → `online`).
//! * [`process`]: a mapper binary's log set-up and shutdown signal.
//!
//! Mappers are not beehive modules: they consume no beehive messages. On MQTT they publish
//! `$hw/events/device/<id>/twin/update`, `.../twin/get`, `.../state/update` and consume
//! `.../twin/update/delta` and `.../twin/get/result`.
//!
//! v1.2 bugs fixed: the Node.js Modbus mapper's `tyep` key (the edge saw no type), protocols
//! matched by model index, and a profile without `index` (every cloud-generated one) giving an
//! undefined start address.
#![warn(missing_docs)]

pub mod driver;
mod error;
pub mod mqtt;
pub mod process;
pub mod profile;
pub mod twin;
pub mod watch;

pub use driver::{DeviceProtocol, DriverOptions, ProtocolError, ProtocolErrorKind};
pub use error::{Error, Result};
pub use mqtt::{Incoming, MqttClient};
pub use profile::{DeviceBinding, DeviceProfile, PropertyBinding};
