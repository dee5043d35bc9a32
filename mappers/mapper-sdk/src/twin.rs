//! Twin and device-state payloads and topics of the edge's MQTT interface (spec: mqtt.md §4–5).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (the `timestamp` of every payload).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `$hw/events/device/<id>/twin/update` — a mapper reports actual values here.
pub fn twin_update_topic(id: &str) -> String {
    format!("$hw/events/device/{id}/twin/update")
}
/// `$hw/events/device/<id>/twin/get` — asks the edge for the device's twins.
pub fn twin_get_topic(id: &str) -> String {
    format!("$hw/events/device/{id}/twin/get")
}
/// `$hw/events/device/<id>/state/update` — online/offline.
pub fn state_update_topic(id: &str) -> String {
    format!("$hw/events/device/{id}/state/update")
}
/// Filter for every device's delta.
pub const DELTA_FILTER: &str = "$hw/events/device/+/twin/update/delta";
/// Filter for every device's twin get result.
pub const GET_RESULT_FILTER: &str = "$hw/events/device/+/twin/get/result";

/// The device id of a `$hw/events/device/<id>/...` topic (4th segment).
pub fn device_id_of(topic: &str) -> Option<&str> {
    let mut it = topic.split('/');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some("$hw"), Some("events"), Some("device"), Some(id)) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// `ValueMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMetadata {
    /// Edge storage time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

/// `TwinValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinValue {
    /// The value text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<ValueMetadata>,
}

/// `TypeMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeMetadata {
    /// `int`, `float`, `boolean`, `string`, `deleted`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `MsgTwin` (versions are ignored by mappers and not modelled).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgTwin {
    /// Desired value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<TwinValue>,
    /// Reported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<TwinValue>,
    /// Whether the twin may be deleted from the edge side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Value type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TypeMetadata>,
}

impl MsgTwin {
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

/// `DeviceTwinUpdate`: what a mapper publishes on `twin/update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinUpdate {
    /// Event id (mappers send `""`).
    #[serde(default)]
    pub event_id: String,
    /// ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Twins by name; `None` deletes an optional twin.
    #[serde(default)]
    pub twin: BTreeMap<String, Option<MsgTwin>>,
}

impl TwinUpdate {
    /// An update reporting `value` as the actual value of `name`, typed `data_type` (the model's
    /// `dataType`; the edge uses the type only when it creates the twin).
    ///
    /// v1.2 bug fixed: the Node.js mapper spelled the type key `tyep`.
    pub fn actual(name: &str, value: &str, data_type: &str) -> Self {
        let ts = now_ms();
        let twin = MsgTwin {
            actual: Some(TwinValue {
                value: Some(value.to_owned()),
                metadata: Some(ValueMetadata { timestamp: Some(ts) }),
            }),
            metadata: Some(TypeMetadata {
                kind: Some(if data_type.is_empty() { "string" } else { data_type }.to_owned()),
            }),
            ..MsgTwin::default()
        };
        Self {
            event_id: String::new(),
            timestamp: ts,
            twin: BTreeMap::from([(name.to_owned(), Some(twin))]),
        }
    }
}

/// `DeviceTwinResult` (`twin/get/result`, `twin/update/result`) or an error Result (`code`, `reason`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinResult {
    /// Echoed event id.
    #[serde(default)]
    pub event_id: String,
    /// ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Twins by name (`null` entries are deleted twins).
    #[serde(default)]
    pub twin: BTreeMap<String, Option<MsgTwin>>,
    /// Error code (400/404/500), absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `DeviceTwinDelta` (`twin/update/delta`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinDelta {
    /// Fresh event id.
    #[serde(default)]
    pub event_id: String,
    /// ms.
    #[serde(default)]
    pub timestamp: i64,
    /// Every twin with an expected value.
    #[serde(default)]
    pub twin: BTreeMap<String, Option<MsgTwin>>,
    /// Name -> expected value for the twins whose expected differs from actual.
    #[serde(default)]
    pub delta: BTreeMap<String, String>,
}

/// `state/update` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUpdate {
    /// Event id.
    pub event_id: String,
    /// ms.
    pub timestamp: i64,
    /// `online`, `offline` or `unknown`.
    pub state: String,
}

/// Device state a mapper reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// The device answers.
    Online,
    /// The device stopped answering.
    Offline,
}

impl DeviceState {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn update_shape_matches_the_edge() {
        let mut u = TwinUpdate::actual("temperature", "25", "int");
        u.timestamp = 1;
        if let Some(Some(t)) = u.twin.get_mut("temperature") {
            t.actual.as_mut().unwrap().metadata = None;
        }
        assert_eq!(
            serde_json::to_string(&u).unwrap(),
            r#"{"event_id":"","timestamp":1,"twin":{"temperature":{"actual":{"value":"25"},"metadata":{"type":"int"}}}}"#
        );
    }

    #[test]
    fn parses_transcript_delta_and_get_result() {
        let d: TwinDelta = serde_json::from_str(r#"{"event_id":"5a9287e3","timestamp":1795564553594,"twin":{"temperature":{"expected":{"value":"30","metadata":{"timestamp":1795564553586}},"actual":{"value":"25","metadata":{"timestamp":1795564551574}},"optional":true,"metadata":{"type":"string"}}},"delta":{"temperature":"30"}}"#).unwrap();
        assert_eq!(d.delta["temperature"], "30");
        let r: TwinResult = serde_json::from_str(r#"{"event_id":"evt-twinget-3","timestamp":1795564558634,"code":404,"reason":"Device no-such-device not found while getting twin"}"#).unwrap();
        assert_eq!(r.code, Some(404));
        let r: TwinResult = serde_json::from_str(r#"{"event_id":"g","timestamp":1,"twin":{"a":{"expected":{"value":"1"},"optional":true},"gone":null}}"#).unwrap();
        assert_eq!(r.twin["a"].as_ref().unwrap().expected_value(), Some("1"));
        assert!(r.twin["gone"].is_none());
    }

    #[test]
    fn device_id_from_topic() {
        assert_eq!(device_id_of("$hw/events/device/d1/twin/update/delta"), Some("d1"));
        assert_eq!(device_id_of("$hw/events/device//twin/update/result"), None);
        assert_eq!(device_id_of("$hw/events/node/n/membership/get"), None);
    }
}
