//! The KubeEdge v1.2 wire model, shared by every other crate. Pure: no I/O, no async.
//!
//! * [`message`]: the beehive envelope `{header, route, content}` exactly as it crosses the
//!   cloud–edge link (JSON keys, omitted-when-empty rules, the trailing `\n` of WebSocket frames),
//!   plus constructors for responses, acks and errors.
//! * [`resource`]: resource strings (`<ns>/<type>/<name>` at the edge, `node/<node>/…` in the cloud).
//! * [`names`]: module, group and operation names. They travel on the wire, so they are KubeEdge's.
//! * [`twin`]: the device-twin JSON payloads (membership, twin update/result/delta/document,
//!   device state) shared by the edge's devicetwin, the cloud's devicecontroller and the mappers.
//!
//! Facts come from `shared/spec/message.md`; start reading at [`Message`].
#![warn(missing_docs)]

pub mod message;
pub mod names;
pub mod resource;
pub mod twin;

pub use message::{DecodeError, MAX_MESSAGE_BYTES, Message, MessageHeader, MessageRoute};
