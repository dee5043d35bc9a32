//! The JSON payloads of the twin's MQTT and cloud messages (`shared/spec/mqtt.md` §4–§5).
//!
//! Field order and `omitempty` rules follow KubeEdge v1.2's Go structs so that the published
//! JSON is byte-for-byte the shape real devices and mappers parse (maps are emitted with sorted
//! keys, as Go does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `event_id` + `timestamp`, present in every payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseMessage {
    /// Correlation id chosen by the sender (echoed in replies).
    #[serde(default)]
    pub event_id: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp: i64,
}

/// `{"type": …}` metadata of a twin or attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeMetadata {
    /// Value type (`string`, `int`, `float`, `boolean`, `deleted`).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// `{"timestamp": …}` metadata of a twin value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMetadata {
    /// When the value was stored (edge time, ms).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timestamp: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One side (expected or actual) of a twin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinValue {
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// When it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ValueMetadata>,
}

/// A twin version vector (`shared/spec/mqtt.md` §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinVersion {
    /// Changes made by the cloud.
    #[serde(default)]
    pub cloud: i64,
    /// Changes made at the edge.
    #[serde(default)]
    pub edge: i64,
}

impl TwinVersion {
    /// Whether a change carrying `incoming` may be applied over `self`.
    pub fn accepts(&self, incoming: &TwinVersion) -> bool {
        self.cloud <= incoming.cloud && self.edge <= incoming.edge
    }
}

/// A twin property as carried in messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgTwin {
    /// Desired value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<TwinValue>,
    /// Reported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<TwinValue>,
    /// Whether the twin may be deleted from the edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Value type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TypeMetadata>,
    /// Version vector of `expected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<TwinVersion>,
    /// Version vector of `actual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_version: Option<TwinVersion>,
}

impl MsgTwin {
    /// The twin without its version vectors (what devices see).
    #[must_use]
    pub fn without_versions(mut self) -> Self {
        self.expected_version = None;
        self.actual_version = None;
        self
    }

    /// The declared type, if any.
    pub fn kind(&self) -> Option<&str> {
        self.metadata.as_ref().map(|m| m.kind.as_str())
    }
}

/// A device attribute as carried in messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgAttr {
    /// The value (always emitted).
    #[serde(default)]
    pub value: String,
    /// Whether the attribute may be deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Value type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TypeMetadata>,
}

/// A device as carried in membership messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgDevice {
    /// Device id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Device name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `online`, `offline`, `unknown`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// `YYYY-MM-DD HH:MM:SS` of the last state update.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_online: String,
    /// Attributes (`null` deletes one, in attribute updates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Option<MsgAttr>>,
    /// Twins (`null` deletes one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub twin: BTreeMap<String, Option<MsgTwin>>,
}

/// `membership` update from the cloud, and `membership/updated` to devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipUpdate {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Devices bound to this node.
    #[serde(default)]
    pub added_devices: Option<Vec<MsgDevice>>,
    /// Devices unbound from this node.
    #[serde(default)]
    pub removed_devices: Option<Vec<MsgDevice>>,
}

/// Full device list: `membership/get/result` to devices, and the cloud's `membership/detail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipDetail {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Every device.
    #[serde(default)]
    pub devices: Vec<MsgDevice>,
}

/// `twin/update` request, `twin/cloud_updated`, and `twin/update/result`, `edge_updated`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinUpdate {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Twins by name (`null` = delete).
    #[serde(default)]
    pub twin: Option<BTreeMap<String, Option<MsgTwin>>>,
}

/// One entry of a twin document: before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDoc {
    /// Before (`null` if new).
    pub last: Option<MsgTwin>,
    /// After (`null` if deleted).
    pub current: Option<MsgTwin>,
}

/// `twin/update/document`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDocument {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Changed twins.
    pub twin: BTreeMap<String, TwinDoc>,
}

/// `twin/update/delta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDelta {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Every twin with a desired value.
    pub twin: BTreeMap<String, MsgTwin>,
    /// Desired values that differ from the reported ones.
    pub delta: BTreeMap<String, String>,
}

/// An error reply (`code` 400/404/500).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResult {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// HTTP-like code.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub code: i32,
    /// Human-readable reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// `$hw/events/device/<id>/updated` (attribute changes), and the cloud's `updated` on `device/<id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAttrUpdate {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Attributes (`null` = delete, in cloud updates).
    #[serde(default)]
    pub attributes: BTreeMap<String, Option<MsgAttr>>,
}

/// `state/update` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct StateUpdate {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// `online`, `offline` or `unknown`.
    #[serde(default)]
    pub state: String,
}

/// `state/update/result` and the cloud's `device/<id>/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeviceStateMsg {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Name, state and last-online time.
    pub device: MsgDevice,
}
