//! The JSON payloads of the twin's MQTT and cloud messages (`shared/spec/mqtt.md` §4–§5).
//!
//! They are defined once in [`ke_core::twin`] (shared with the cloud's devicecontroller and the
//! mappers) and re-exported here: field order and `omitempty` rules follow KubeEdge v1.2's Go
//! structs, so the published JSON is byte-for-byte the shape real devices and mappers parse.

pub use ke_core::twin::{
    BaseMessage, DeviceAttrUpdate, DeviceStateMsg, ErrorResult, MembershipDetail, MembershipUpdate, MsgAttr,
    MsgDevice, MsgTwin, StateUpdate, TwinDelta, TwinDoc, TwinDocument, TwinUpdate, TwinValue, TwinVersion,
    TypeMetadata, ValueMetadata,
};
