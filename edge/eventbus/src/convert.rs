//! Pure translation between MQTT and beehive messages (`shared/spec/mqtt.md` §2, §3, §8).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use ke_core::Message;
use ke_core::names::{group, module, op};
use serde_json::Value;

/// The topic filters the eventbus always subscribes to (`shared/spec/mqtt.md` §2).
pub const SUBSCRIBED_TOPICS: [&str; 5] = [
    "$hw/events/upload/#",
    "$hw/events/device/+/state/update",
    "$hw/events/device/+/twin/+",
    "$hw/events/node/+/membership/get",
    UPLOAD_RECORDS,
];

/// Upload topic forwarded to the cloud with its name, not its base64, as resource.
const UPLOAD_RECORDS: &str = "SYS/dis/upload_records";

/// Where an MQTT message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// The device twin (group `twin`).
    Twin,
    /// The cloud, through the edge hub (module `websocket`).
    Cloud,
}

/// The resource of a message built from `topic`: URL-safe base64 with `=` padding, except for
/// `SYS/dis/upload_records` which is kept as is.
pub fn topic_resource(topic: &str) -> String {
    if topic == UPLOAD_RECORDS {
        topic.to_owned()
    } else {
        URL_SAFE.encode(topic)
    }
}

/// Builds the beehive message for an MQTT message received on `topic`: source `bus`, group
/// `user`, operation `response`, content = the payload as a JSON string (invalid UTF-8 is replaced).
pub(crate) fn from_mqtt(topic: &str, payload: &[u8]) -> (Destination, Message) {
    let dest = if topic.starts_with("$hw/events/device") || topic.starts_with("$hw/events/node") {
        Destination::Twin
    } else {
        Destination::Cloud
    };
    let content = String::from_utf8_lossy(payload).into_owned();
    let msg = Message::new(
        module::BUS,
        group::USER,
        op::RESPONSE,
        topic_resource(topic),
        content,
    );
    (dest, msg)
}

/// What the eventbus does with a message from its mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Publish `payload` on `topic`.
    Publish {
        /// Topic name.
        topic: String,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// Subscribe to `filter` and forward what arrives like the fixed topics.
    Subscribe(String),
    /// Nothing to do; the text says why (logged).
    Ignore(String),
}

/// The payload of a `publish`: a string content verbatim (KubeEdge requires a string), anything
/// else as its JSON text (where v1.2.1 would crash).
fn payload_of(content: &Value) -> Vec<u8> {
    match content {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Decides what a mailbox message means (`shared/spec/mqtt.md` §8, `message.md` §7).
pub(crate) fn plan(msg: &Message, node_name: &str) -> Action {
    match msg.operation() {
        op::PUBLISH if msg.resource().is_empty() => Action::Ignore("publish without a topic".into()),
        op::PUBLISH => Action::Publish {
            topic: msg.resource().to_owned(),
            payload: payload_of(&msg.content),
        },
        op::SUBSCRIBE if msg.resource().is_empty() => {
            Action::Ignore("subscribe without a topic filter".into())
        }
        op::SUBSCRIBE => Action::Subscribe(msg.resource().to_owned()),
        op::MESSAGE => {
            let inner = msg.content.get("message");
            match inner.and_then(|m| m.get("topic")).and_then(Value::as_str) {
                Some(topic) if !topic.is_empty() => Action::Publish {
                    topic: topic.to_owned(),
                    payload: inner.map(Value::to_string).unwrap_or_default().into_bytes(),
                },
                _ => Action::Ignore("message without content.message.topic".into()),
            }
        }
        "get_result" if msg.resource() == "auth_info" => Action::Publish {
            topic: format!("$hw/events/node/{node_name}/authInfo/get/result"),
            payload: msg.content.to_string().into_bytes(),
        },
        other => Action::Ignore(format!(
            "operation {other:?} on resource {:?} is not for the eventbus",
            msg.resource()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE;
    use serde_json::json;

    #[test]
    fn resource_is_url_safe_base64_with_padding() {
        // The example of shared/spec/mqtt.md §2.
        assert_eq!(
            topic_resource("$hw/events/upload/temperature"),
            "JGh3L2V2ZW50cy91cGxvYWQvdGVtcGVyYXR1cmU="
        );
        assert_eq!(topic_resource("SYS/dis/upload_records"), "SYS/dis/upload_records");
        // '?' and '>' encode to '/' and '+' in standard base64; URL-safe uses '_' and '-'.
        let r = topic_resource("$hw/events/upload/??>>");
        assert!(!r.contains('/') && !r.contains('+'), "{r}");
        assert_eq!(URL_SAFE.decode(&r).unwrap(), b"$hw/events/upload/??>>");
    }

    #[test]
    fn routes_device_and_node_topics_to_twin_and_the_rest_to_cloud() {
        let (d, m) = from_mqtt("$hw/events/device/d1/twin/update", br#"{"twin":{}}"#);
        assert_eq!(d, Destination::Twin);
        assert_eq!(
            (m.source(), m.group(), m.operation()),
            (module::BUS, group::USER, op::RESPONSE)
        );
        assert_eq!(m.content, json!(r#"{"twin":{}}"#));
        assert_eq!(
            from_mqtt("$hw/events/node/n/membership/get", b"").0,
            Destination::Twin
        );
        assert_eq!(from_mqtt("$hw/events/upload/x", b"1").0, Destination::Cloud);
        let (d, m) = from_mqtt(UPLOAD_RECORDS, b"r");
        assert_eq!((d, m.resource()), (Destination::Cloud, UPLOAD_RECORDS));
    }

    #[test]
    fn plans_cloud_and_twin_operations() {
        let publish = Message::new(module::TWIN, group::USER, op::PUBLISH, "a/b", "{\"x\":1}");
        assert_eq!(
            plan(&publish, "n"),
            Action::Publish {
                topic: "a/b".into(),
                payload: b"{\"x\":1}".to_vec()
            }
        );
        let object = Message::new(module::TWIN, group::USER, op::PUBLISH, "a/b", json!({"x": 1}));
        assert!(matches!(plan(&object, "n"), Action::Publish { payload, .. } if payload == b"{\"x\":1}"));
        let sub = Message::new("edgecontroller", group::USER, op::SUBSCRIBE, "x/#", ());
        assert_eq!(plan(&sub, "n"), Action::Subscribe("x/#".into()));
        let m = Message::new(
            "edgecontroller",
            group::USER,
            op::MESSAGE,
            "",
            json!({"message": {"topic": "t/1", "v": 2}}),
        );
        match plan(&m, "n") {
            Action::Publish { topic, payload } => {
                assert_eq!(topic, "t/1");
                let v: Value = serde_json::from_slice(&payload).unwrap();
                assert_eq!(v, json!({"topic": "t/1", "v": 2}));
            }
            other => panic!("{other:?}"),
        }
        let bad = Message::new("edgecontroller", group::USER, op::MESSAGE, "", "text");
        assert!(matches!(plan(&bad, "n"), Action::Ignore(_)));
        let auth = Message::new(
            "edgecontroller",
            group::USER,
            "get_result",
            "auth_info",
            json!({"a": 1}),
        );
        assert!(matches!(plan(&auth, "edge-1"),
            Action::Publish { topic, .. } if topic == "$hw/events/node/edge-1/authInfo/get/result"));
        let get = Message::new("servicebus", group::USER, "GET", "x", ());
        assert!(matches!(plan(&get, "n"), Action::Ignore(_)));
    }
}
