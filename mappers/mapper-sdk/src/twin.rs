//! Twin and device-state payloads and topics of the edge's MQTT interface (spec: mqtt.md §4–5).
//!
//! The payload types are [`ke_core::twin`]'s, shared with the edge's devicetwin (re-exported here):
//! a mapper parses what the edge publishes with the edge's own types, leniently (absent fields take
//! their defaults), and emits what the edge accepts. What only mappers need — topics, the combined
//! result/error reply, the actual-value report — lives here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use ke_core::message::now_millis as now_ms;
pub use ke_core::twin::{
    BaseMessage, MsgTwin, StateUpdate, TwinDelta, TwinUpdate, TwinValue, TypeMetadata, ValueMetadata,
};

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

/// An update reporting `value` as the actual value of `name`, typed `data_type` (the model's
/// `dataType`, `string` when empty; the edge uses the type only when it creates the twin).
///
/// v1.2 bug fixed: the Node.js mapper spelled the type key `tyep`.
pub fn actual_update(name: &str, value: &str, data_type: &str) -> TwinUpdate {
    let ts = now_ms();
    let twin = MsgTwin {
        actual: Some(TwinValue {
            value: Some(value.to_owned()),
            metadata: Some(ValueMetadata { timestamp: ts }),
        }),
        metadata: Some(TypeMetadata {
            kind: if data_type.is_empty() { "string" } else { data_type }.to_owned(),
        }),
        ..MsgTwin::default()
    };
    TwinUpdate {
        base: BaseMessage {
            event_id: String::new(),
            timestamp: ts,
        },
        twin: Some(BTreeMap::from([(name.to_owned(), Some(twin))])),
    }
}

/// A `state/update` request (mappers send an empty event id).
pub fn state_update(state: DeviceState) -> StateUpdate {
    StateUpdate {
        base: BaseMessage {
            event_id: String::new(),
            timestamp: now_ms(),
        },
        state: state.as_str().to_owned(),
    }
}

/// `DeviceTwinResult` (`twin/get/result`, `twin/update/result`) or an error Result (`code`,
/// `reason`): one lenient shape for both, since a mapper cannot tell them apart by topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwinResult {
    /// Echoed event id and the edge's time.
    #[serde(flatten)]
    pub base: BaseMessage,
    /// Twins by name (`null` entries are deleted twins; a `null` map reads as empty).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub twin: BTreeMap<String, Option<MsgTwin>>,
    /// Error code (400/404/500), absent on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<MsgTwin>>, D::Error> {
    Option::deserialize(d).map(Option::unwrap_or_default)
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
        let mut u = actual_update("temperature", "25", "int");
        u.base.timestamp = 1;
        if let Some(Some(t)) = u.twin.as_mut().unwrap().get_mut("temperature") {
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
        let r: TwinResult = serde_json::from_str(r#"{"event_id":"g","timestamp":1,"twin":null}"#).unwrap();
        assert!(r.twin.is_empty());
    }

    #[test]
    fn device_id_from_topic() {
        assert_eq!(device_id_of("$hw/events/device/d1/twin/update/delta"), Some("d1"));
        assert_eq!(device_id_of("$hw/events/device//twin/update/result"), None);
        assert_eq!(device_id_of("$hw/events/node/n/membership/get"), None);
    }
}
