//! KubeEdge Modbus mapper (TCP and RTU), replacing v1.2's Node.js `modbus_mapper`.
//!
//! Reads the device profile the v1.2 cloud generates (cloud field names: visitor `offset` = start
//! address, `limit` = count, `scale`, `isSwap`, `isRegisterSwap`; protocol `modbus-tcp`
//! `{ip, port, slaveID}` / `modbus-rtu` `{serialPort, baudRate, dataBits, parity, stopBits, slaveID}`),
//! polls coils, discrete inputs, holding and input registers, reports changed values on
//! `$hw/events/device/<id>/twin/update`, writes desired values (`twin/update/delta`,
//! `twin/get/result`) to coils and holding registers, and reports `offline`/`online` on
//! `state/update`. The polling, MQTT and hot-reload machinery is `mapper-sdk`'s; this crate owns
//! [`config`] (profile blocks), [`codec`] (pure value conversion) and [`ModbusProtocol`] (I/O).
//!
//! Not a beehive module: it consumes and emits MQTT only (see `mapper_sdk`).
//!
//! v1.2 bugs fixed: cloud-generated profiles work (v1.2 read `index`, which the cloud never
//! writes); the twin type key is `type` (v1.2: `tyep`); one connection per endpoint instead of a
//! new connection per read; a device that stops answering is reported offline.
#![warn(missing_docs)]

pub mod codec;
pub mod config;
mod error;
mod protocol;

pub use error::{Error, Result};
pub use protocol::ModbusProtocol;
