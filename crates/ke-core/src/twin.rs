//! The device-twin JSON payloads, shared by the edge's devicetwin, the cloud's devicecontroller and
//! the mappers (`shared/spec/mqtt.md` §4–§6, `shared/spec/edgecontroller-devicecontroller.md` §5).
//!
//! Field order and `omitempty` rules follow KubeEdge v1.2's Go structs (the edge's and the cloud's
//! used the same tags), so the published JSON is byte-for-byte the shape real devices, mappers and
//! cloud controllers parse; maps are emitted with sorted keys, as Go does. Parsing is lenient:
//! absent fields take their defaults.
//!
//! Builders that belong to one side (the cloud's membership messages, a mapper's reports) live in
//! the crate that sends them.

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

    /// The expected value, if any (empty counts as none).
    pub fn expected_value(&self) -> Option<&str> {
        self.expected
            .as_ref()
            .and_then(|v| v.value.as_deref())
            .filter(|v| !v.is_empty())
    }

    /// The actual value, if any (empty counts as none).
    pub fn actual_value(&self) -> Option<&str> {
        self.actual
            .as_ref()
            .and_then(|v| v.value.as_deref())
            .filter(|v| !v.is_empty())
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
    #[serde(default)]
    pub last: Option<MsgTwin>,
    /// After (`null` if deleted).
    #[serde(default)]
    pub current: Option<MsgTwin>,
}

/// `twin/update/document`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDocument {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Changed twins.
    #[serde(default)]
    pub twin: BTreeMap<String, TwinDoc>,
}

/// `twin/update/delta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDelta {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Every twin with a desired value.
    #[serde(default)]
    pub twin: BTreeMap<String, MsgTwin>,
    /// Desired values that differ from the reported ones.
    #[serde(default)]
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// `online`, `offline` or `unknown`.
    #[serde(default)]
    pub state: String,
}

/// `state/update/result` and the cloud's `device/<id>/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStateMsg {
    /// Event id and time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Name, state and last-online time.
    #[serde(default)]
    pub device: MsgDevice,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Parses `json` as `T` and serializes it back: v1.2's exact bytes must survive.
    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(json: &str) {
        let v: T = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), json);
    }

    #[test]
    fn transcript_payloads_round_trip_byte_for_byte() {
        // Lines of tests/fixtures/ground-truth/mqtt-twin-transcript.log (v1.2.1 edge output).
        round_trip::<MembershipUpdate>(
            r#"{"event_id":"fafbbbc3","timestamp":1795564547558,"added_devices":[{"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown","attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},"twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1700000000}},"actual":{"value":"19","metadata":{"timestamp":1700000000}},"optional":true,"metadata":{"type":"string"}}}}],"removed_devices":null}"#,
        );
        round_trip::<TwinDocument>(
            r#"{"event_id":"","timestamp":1795564547532,"twin":{"temperature":{"last":null,"current":{"expected":{"value":"20","metadata":{"timestamp":1795564547532}},"actual":{"value":"19"},"optional":true,"metadata":{"type":"string"}}}}}"#,
        );
        round_trip::<TwinDelta>(
            r#"{"event_id":"5a9287e3","timestamp":1795564553594,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1795564553586}},"actual":{"value":"25","metadata":{"timestamp":1795564551574}},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"30"}}"#,
        );
        round_trip::<TwinUpdate>(
            r#"{"event_id":"evt-twinupd-1","timestamp":1795564551574,"twin":{"temperature":{"actual":{"value":"25","metadata":{"timestamp":1795564551574}},"optional":true,"metadata":{"type":"string"}}}}"#,
        );
        round_trip::<ErrorResult>(
            r#"{"event_id":"evt-twinget-3","timestamp":1795564558634,"code":404,"reason":"Device no-such-device not found while getting twin"}"#,
        );
    }

    #[test]
    fn cloud_membership_matches_the_spec_example() {
        // shared/spec/edgecontroller-devicecontroller.md §5.1, with the version vector kept.
        round_trip::<MembershipUpdate>(
            r#"{"event_id":"u","timestamp":1585036800000,"added_devices":[{"id":"led-light-instance-01","name":"led-light-instance-01","description":"LEDLight","twin":{"power-status":{"expected":{"value":"ON","metadata":{"timestamp":1585036800000}},"optional":false,"metadata":{"type":"string"},"expected_version":{"cloud":123456,"edge":0}}}}],"removed_devices":null}"#,
        );
    }

    #[test]
    fn omitempty_rules_follow_go() {
        let t = MsgTwin {
            expected: Some(TwinValue {
                value: None,
                metadata: Some(ValueMetadata { timestamp: 0 }),
            }),
            metadata: Some(TypeMetadata::default()),
            ..MsgTwin::default()
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"expected":{"metadata":{}},"metadata":{}}"#
        );
        let u = TwinUpdate::default();
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"event_id":"","timestamp":0,"twin":null}"#
        );
    }

    #[test]
    fn parsing_is_lenient() {
        let d: TwinDelta = serde_json::from_str(r#"{"delta":{"a":"1"}}"#).unwrap();
        assert_eq!(d.delta["a"], "1");
        let u: TwinUpdate =
            serde_json::from_str(r#"{"twin":{"a":{"expected":{"value":""}},"gone":null}}"#).unwrap();
        let twin = u.twin.unwrap();
        assert_eq!(twin["a"].as_ref().unwrap().expected_value(), None);
        assert!(twin["gone"].is_none());
        assert!(TwinVersion { cloud: 1, edge: 2 }.accepts(&TwinVersion { cloud: 1, edge: 3 }));
        assert!(!TwinVersion { cloud: 2, edge: 0 }.accepts(&TwinVersion { cloud: 1, edge: 0 }));
    }
}
