//! The v1.2 messages devicecontroller exchanges with the edge's device twin
//! (`shared/spec/edgecontroller-devicecontroller.md` §5, `shared/spec/mqtt.md`). Pure builders.
//!
//! The payload types are [`ke_core::twin`]'s (re-exported here), the very ones the edge's
//! devicetwin uses: v1.2's cloud and edge Go structs carried the same JSON tags.

use std::collections::BTreeMap;

use ke_core::Message;
use ke_core::message::now_millis;
use ke_core::names::{group, module, op};
use ke_core::resource::add_node_prefix;
use serde::Serialize;
use serde_json::Value;

pub use ke_core::twin::{
    BaseMessage, MembershipDetail, MembershipUpdate, MsgDevice, MsgTwin, TwinUpdate, TwinValue, TwinVersion,
    TypeMetadata, ValueMetadata,
};

use crate::crd::{Device, Twin};

/// A fresh event id (UUID v4) stamped `timestamp`.
fn base(timestamp: i64) -> BaseMessage {
    BaseMessage {
        event_id: uuid::Uuid::new_v4().to_string(),
        timestamp,
    }
}

/// The message twin of one `status.twins[]` entry, as v1.2 builds it: expected = desired value
/// stamped now, never optional, type from the desired metadata (`string` by default), expected
/// version `{cloud: <device RV>, edge: 0}`.
pub fn msg_twin(t: &Twin, version: i64, now: i64) -> MsgTwin {
    let desired = t.desired.as_ref();
    let kind = desired
        .and_then(|d| d.metadata.get("type"))
        .filter(|k| !k.is_empty())
        .cloned()
        .unwrap_or_else(|| "string".to_owned());
    MsgTwin {
        expected: Some(TwinValue {
            value: Some(desired.map(|d| d.value.clone()).unwrap_or_default()),
            metadata: Some(ValueMetadata { timestamp: now }),
        }),
        optional: Some(false),
        metadata: Some(TypeMetadata { kind }),
        expected_version: Some(TwinVersion {
            cloud: version,
            edge: 0,
        }),
        ..MsgTwin::default()
    }
}

/// The membership shape of a device.
pub fn msg_device(d: &Device, now: i64) -> MsgDevice {
    let name = d.metadata.name.clone().unwrap_or_default();
    let version = d.version();
    MsgDevice {
        id: name.clone(),
        name,
        description: d.description().to_owned(),
        twin: d
            .twins()
            .iter()
            .map(|t| (t.property_name.clone(), Some(msg_twin(t, version, now))))
            .collect(),
        ..MsgDevice::default()
    }
}

fn to_edge(node: &str, operation: &str, resource: &str, content: Value) -> Message {
    Message::new(
        module::DEVICECONTROLLER,
        group::TWIN,
        operation,
        add_node_prefix(node, resource),
        content,
    )
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `update` `node/<node>/membership`: devices added to (or removed from) `node`.
pub fn membership(node: &str, added: Vec<MsgDevice>, removed: Vec<MsgDevice>) -> Message {
    let m = MembershipUpdate {
        base: base(now_millis()),
        added_devices: (!added.is_empty()).then_some(added),
        removed_devices: (!removed.is_empty()).then_some(removed),
    };
    to_edge(node, op::UPDATE, "membership", json(&m))
}

/// `update` `node/<node>/device/<id>/twin/cloud_updated`: the desired twins of `new`, plus the
/// twins only `old` had, typed `deleted`.
pub fn cloud_updated(node: &str, old: &Device, new: &Device) -> Message {
    let now = now_millis();
    let version = new.version();
    let mut twin: BTreeMap<String, Option<MsgTwin>> = BTreeMap::new();
    for t in old.twins() {
        let mut gone = msg_twin(t, version, now);
        gone.metadata = Some(TypeMetadata {
            kind: "deleted".into(),
        });
        twin.insert(t.property_name.clone(), Some(gone));
    }
    for t in new.twins() {
        twin.insert(t.property_name.clone(), Some(msg_twin(t, version, now)));
    }
    let name = new.metadata.name.clone().unwrap_or_default();
    let u = TwinUpdate {
        base: base(now),
        twin: Some(twin),
    };
    to_edge(
        node,
        op::UPDATE,
        &format!("device/{name}/twin/cloud_updated"),
        json(&u),
    )
}

/// The answer to the edge's `membership/detail` request: all of the node's devices.
pub fn detail_reply(request: &Message, devices: Vec<MsgDevice>) -> Message {
    let d = MembershipDetail {
        base: base(now_millis()),
        devices,
    };
    Message::new(
        module::DEVICECONTROLLER,
        group::TWIN,
        op::RESPONSE,
        request.resource(),
        json(&d),
    )
    .with_parent(request.id())
}

/// A confirmation of an edge message (`response` `"OK"`, parent = its id): the twin stops
/// re-sending it.
pub fn confirm(request: &Message) -> Message {
    Message::new(
        module::DEVICECONTROLLER,
        group::TWIN,
        op::RESPONSE,
        request.resource(),
        ke_core::names::res::ACK_OK,
    )
    .with_parent(request.id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device(rv: &str, twins: Value) -> Device {
        serde_json::from_value(json!({
            "metadata": {"name": "led", "namespace": "default", "resourceVersion": rv,
                         "labels": {"description": "LEDLight"}},
            "spec": {"deviceModelRef": {"name": "led-light"}},
            "status": {"twins": twins}
        }))
        .unwrap()
    }

    #[test]
    fn membership_add_is_v12_shaped() {
        let d = device(
            "123456",
            json!([{"propertyName": "power-status", "desired": {"value": "ON"}}]),
        );
        let m = membership("edge-1", vec![msg_device(&d, 1585036800000)], vec![]);
        assert_eq!(
            (m.source(), m.group(), m.operation(), m.resource()),
            ("devicecontroller", "twin", "update", "node/edge-1/membership")
        );
        assert!(m.header.resource_version.is_empty());
        let mut c = m.content.clone();
        assert_eq!(c["event_id"].as_str().map(str::len), Some(36));
        c["event_id"] = json!("");
        c["timestamp"] = json!(0);
        assert_eq!(
            c,
            json!({"event_id": "", "timestamp": 0,
                "added_devices": [{"id": "led", "name": "led", "description": "LEDLight",
                  "twin": {"power-status": {"expected": {"value": "ON", "metadata": {"timestamp": 1585036800000_i64}},
                    "optional": false, "metadata": {"type": "string"},
                    "expected_version": {"cloud": 123456, "edge": 0}}}}],
                "removed_devices": null})
        );
    }

    #[test]
    fn cloud_update_marks_vanished_twins_deleted() {
        let old = device(
            "1",
            json!([{"propertyName": "a", "desired": {"value": "x"}}, {"propertyName": "b", "desired": {"value": "y"}}]),
        );
        let new = device(
            "2",
            json!([{"propertyName": "a", "desired": {"value": "z", "metadata": {"type": "int"}}}]),
        );
        let m = cloud_updated("n", &old, &new);
        assert_eq!(m.resource(), "node/n/device/led/twin/cloud_updated");
        let t = &m.content["twin"];
        assert_eq!(t["a"]["expected"]["value"], json!("z"));
        assert_eq!(t["a"]["metadata"]["type"], json!("int"));
        assert_eq!(t["a"]["expected_version"], json!({"cloud": 2, "edge": 0}));
        assert_eq!(t["b"]["metadata"]["type"], json!("deleted"));
        assert_eq!(t["b"]["expected"]["value"], json!("y"));
    }

    #[test]
    fn replies_name_their_request() {
        let q = Message::new("twin", "resource", "get", "node/e/membership/detail", "{}");
        let r = detail_reply(&q, vec![]);
        assert_eq!(r.parent_id(), q.id());
        assert_eq!(r.resource(), "node/e/membership/detail");
        assert_eq!(r.content["devices"], json!([]));
        assert_eq!(confirm(&q).content, json!("OK"));
    }
}
