//! KubeEdge Bluetooth LE mapper, replacing v1.2's Go `bluetooth_mapper` with the same
//! `configuration/config.yaml` schema and runtime topics.
//!
//! * [`config`]: the YAML config (`mqtt`, `device-model-name`, `action-manager`, `scheduler`,
//!   `watcher`) and the runtime topic bodies.
//! * [`action`]: the action manager — actions derived from the config + device profile
//!   (bluetooth visitors: `characteristicUUID`, `dataWrite`, `dataConverter`) or created at runtime.
//! * [`converter`]: the read conversion with v1.2's quirks.
//! * [`scheduler`]: rounds of actions with occurrence limits, `scheduler/result`.
//! * [`watcher`]: which twin attributes need converging (pure); [`controller`] runs it all.
//! * [`gatt`]: BLE behind the [`gatt::Central`]/[`gatt::Gatt`] traits, with a simulated
//!   peripheral (the test machines have no radio). The real backend, `ble` (btleplug over
//!   BlueZ/D-Bus), is behind the cargo feature `ble`, off by default.
//!
//! Not a beehive module. MQTT: subscribes `$ke/device/bluetooth-mapper/<id>/{watcher/create,
//! scheduler/create, scheduler/delete, action-manager/create, action-manager/delete}` and
//! `$hw/events/device/<id>/twin/get/result`; publishes `.../scheduler/result`,
//! `$hw/events/device/<id>/twin/get` and `.../twin/update`.
//!
//! v1.2 bugs fixed: the fixed MQTT client id `eventbus` (now `bluetooth-mapper-<id>`, so two
//! mappers or edgecore cannot kick each other off the broker); `scheduler/create` blocked the
//! MQTT handler until the schedule ended (now each schedule is a task, deletable while running);
//! the watcher reported actual = expected even when an action failed (now only on success); the
//! `twin/cloud_updated` echo (always rejected by the edge) is not sent; twin updates carry the
//! property's type instead of the invalid `Updated`.
#![warn(missing_docs)]

pub mod action;
#[cfg(feature = "ble")]
pub mod ble;
pub mod config;
pub mod controller;
pub mod converter;
mod error;
pub mod gatt;
pub mod scheduler;
pub mod watcher;

pub use error::{Error, Result};
