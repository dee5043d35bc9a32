//! The beehive message envelope (`shared/spec/message.md` §2).
//!
//! On the link one message is one JSON object `{"header":…,"route":…,"content":…}`; the
//! WebSocket sender appends a single `\n` ([`Message::to_ws_frame`]). `content` is kept as a
//! [`serde_json::Value`] so that an object stays an object and a string that *contains* JSON stays a
//! string: KubeEdge consumers tell the two apart.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::names::{group, module, op, res};

/// Largest encoded message we accept from a peer (8 MiB). Kubernetes objects are capped at about
/// 1.5 MiB by etcd, so anything bigger is a broken or hostile peer.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Identity and correlation of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageHeader {
    /// Fresh UUID v4 per message (`msg_id`).
    #[serde(rename = "msg_id", default, deserialize_with = "null_as_default")]
    pub id: String,
    /// Id of the message answered (`parent_msg_id`), empty for unsolicited messages.
    #[serde(
        rename = "parent_msg_id",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_id: String,
    /// Creation time in milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "null_as_default")]
    pub timestamp: i64,
    /// Kubernetes `metadata.resourceVersion` of the object carried; drives acked delivery.
    #[serde(
        rename = "resourceversion",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    /// Set when the sender waits for a reply whose `parent_msg_id` is this message's id.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub sync: bool,
}

/// Where a message goes and what it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRoute {
    /// Sending module.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub source: String,
    /// Target group (the edge's dispatch key).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub group: String,
    /// Verb, see [`crate::names::op`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub operation: String,
    /// Resource path, see [`crate::resource`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub resource: String,
}

/// One beehive message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Identity and correlation.
    #[serde(default)]
    pub header: MessageHeader,
    /// Routing. The JSON key is `route`.
    #[serde(rename = "route", default)]
    pub route: MessageRoute,
    /// Payload: any JSON value, kept exactly as received (`null` when absent).
    #[serde(default)]
    pub content: Value,
}

/// Why bytes from a peer are not a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_MESSAGE_BYTES`] (or the limit a transport set).
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size received.
        len: usize,
        /// Limit in force.
        limit: usize,
    },
    /// Not JSON, or JSON that is not an envelope object.
    #[error("malformed message envelope: {0}")]
    Malformed(#[from] serde_json::Error),
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Go's JSON decoder leaves a field at its zero value when the input says `null`; do the same.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Milliseconds since the Unix epoch, as KubeEdge stamps `header.timestamp`.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh lowercase hyphenated UUID v4, as KubeEdge uses for `msg_id`.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Message {
    /// A new message with a fresh id and the current time.
    pub fn new(
        source: impl Into<String>,
        group: impl Into<String>,
        operation: impl Into<String>,
        resource: impl Into<String>,
        content: impl Into<Value>,
    ) -> Self {
        Self {
            header: MessageHeader {
                id: new_id(),
                timestamp: now_millis(),
                ..Default::default()
            },
            route: MessageRoute {
                source: source.into(),
                group: group.into(),
                operation: operation.into(),
                resource: resource.into(),
            },
            content: content.into(),
        }
    }

    /// The edge heartbeat: `{websocket, resource, keepalive, "node"}` with content `"ping"`.
    pub fn keepalive() -> Self {
        Self::new(
            module::EDGEHUB,
            group::RESOURCE,
            op::KEEPALIVE,
            res::KEEPALIVE,
            res::KEEPALIVE_CONTENT,
        )
    }

    /// Sets `header.resourceversion`.
    #[must_use]
    pub fn with_resource_version(mut self, rv: impl Into<String>) -> Self {
        self.header.resource_version = rv.into();
        self
    }

    /// Sets `header.parent_msg_id`.
    #[must_use]
    pub fn with_parent(mut self, parent: impl Into<String>) -> Self {
        self.header.parent_id = parent.into();
        self
    }

    /// Sets `header.sync`.
    #[must_use]
    pub fn with_sync(mut self, sync: bool) -> Self {
        self.header.sync = sync;
        self
    }

    /// A reply: new id, `parent_msg_id` = this id, same source, group and resource, operation
    /// `response` (`shared/spec/message.md` §4).
    pub fn response(&self, content: impl Into<Value>) -> Self {
        Self::new(
            self.route.source.clone(),
            self.route.group.clone(),
            op::RESPONSE,
            self.route.resource.clone(),
            content,
        )
        .with_parent(self.header.id.clone())
    }

    /// An ack: a [`response`](Self::response) with content `"OK"`.
    pub fn ack(&self) -> Self {
        self.response(res::ACK_OK)
    }

    /// An error reply: like a response, operation `error`, content the error text. Unlike v1.2's
    /// metaManager, the parent id is this message's id, so the sender can correlate it.
    pub fn error_reply(&self, text: impl Into<String>) -> Self {
        let mut m = self.response(Value::String(text.into()));
        m.route.operation = op::ERROR.to_owned();
        m
    }

    /// Id of this message.
    pub fn id(&self) -> &str {
        &self.header.id
    }

    /// Id of the message this one answers (empty if none).
    pub fn parent_id(&self) -> &str {
        &self.header.parent_id
    }

    /// `route.operation`.
    pub fn operation(&self) -> &str {
        &self.route.operation
    }

    /// `route.resource`.
    pub fn resource(&self) -> &str {
        &self.route.resource
    }

    /// `route.group`.
    pub fn group(&self) -> &str {
        &self.route.group
    }

    /// `route.source`.
    pub fn source(&self) -> &str {
        &self.route.source
    }

    /// True for an edge heartbeat.
    pub fn is_keepalive(&self) -> bool {
        self.route.operation == op::KEEPALIVE
    }

    /// True for a `response` that answers `parent` (an ack or a sync reply).
    pub fn is_response_to(&self, parent: &str) -> bool {
        self.route.operation == op::RESPONSE && !parent.is_empty() && self.header.parent_id == parent
    }

    /// The content as text if it is a JSON string.
    pub fn content_str(&self) -> Option<&str> {
        self.content.as_str()
    }

    /// The content as JSON text: a string content is returned as is (it usually *contains*
    /// JSON), anything else is serialised. This is how KubeEdge consumers read a payload.
    pub fn content_json_text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Encodes to compact JSON bytes (no trailing newline).
    pub fn to_json_vec(&self) -> Vec<u8> {
        // Serialising a struct of strings, ints, bools and a `Value` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Encodes as a WebSocket text frame payload: the JSON followed by one `\n`, as KubeEdge sends.
    pub fn to_ws_frame(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Decodes one message, tolerating surrounding whitespace (the trailing `\n`), unknown keys and
    /// missing keys. Fails on anything over [`MAX_MESSAGE_BYTES`] or that is not a JSON object.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_slice_limited(bytes, MAX_MESSAGE_BYTES)
    }

    /// [`from_slice`](Self::from_slice) with an explicit size limit.
    pub fn from_slice_limited(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}/{} {} {}",
            self.header.id, self.route.source, self.route.group, self.route.operation, self.route.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn roundtrip(text: &str) -> Message {
        let m = Message::from_slice(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        let again = Message::from_slice(m.to_ws_frame().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m, again);
        // Printing then parsing gives the same JSON value as the input (key order aside).
        let a: Value = serde_json::from_str(text).unwrap_or_default();
        let b: Value = serde_json::from_slice(&m.to_json_vec()).unwrap_or_default();
        assert_eq!(a, b, "re-encoding changed the envelope");
        m
    }

    /// Found by the `envelope` fuzz target: without serde_json's `float_roundtrip`, 1e49 decoded
    /// as 1.0000000000000001e49, so content relayed by a hub changed its numbers.
    #[test]
    fn numbers_in_content_keep_their_value() {
        let m = roundtrip(
            r#"{"header":{"msg_id":"1","timestamp":0},"route":{},"content":{"value":10000000000000000000000000000000000000000000000000,"f":0.1,"g":2.2250738585072014e-308}}"#,
        );
        assert_eq!(m.content["value"].as_f64(), Some(1e49));
    }

    #[test]
    fn spec_examples_round_trip() {
        let cm = roundtrip(
            r#"{"header":{"msg_id":"c52500be-a053-4be8-a71b-68a5ff249436","timestamp":1585036800123,"resourceversion":"123"},
             "route":{"source":"edgecontroller","group":"resource","operation":"insert","resource":"default/configmap/cm1"},
             "content":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1","namespace":"default"},"data":{"a":"b"}}}"#,
        );
        assert_eq!(cm.header.resource_version, "123");
        assert!(cm.content.is_object());
        let ka = roundtrip(
            r#"{"header":{"msg_id":"3f0e","timestamp":1585036800456},"route":{"source":"websocket","group":"resource","operation":"keepalive","resource":"node"},"content":"ping"}"#,
        );
        assert!(ka.is_keepalive());
        assert_eq!(ka.content_str(), Some("ping"));
        let ack = roundtrip(
            r#"{"header":{"msg_id":"9a1b","parent_msg_id":"c52500be-a053-4be8-a71b-68a5ff249436","timestamp":1585036800500},
             "route":{"source":"edgecontroller","group":"resource","operation":"response","resource":"default/configmap/cm1"},
             "content":"OK"}"#,
        );
        assert!(ack.is_response_to(cm.id()));
        // A string that contains JSON stays a string.
        let state = roundtrip(
            r#"{"header":{"msg_id":"x","timestamp":1},"route":{"source":"twin","group":"resource","operation":"update","resource":"device/d1/state"},"content":"{\"state\":\"online\"}"}"#,
        );
        assert!(state.content.is_string());
        let list = roundtrip(
            r#"{"header":{"msg_id":"y","timestamp":2},"route":{"operation":"update","resource":"namespace/servicelist/service"},"content":[{"a":1}]}"#,
        );
        assert!(list.content.is_array());
        let q = roundtrip(
            r#"{"header":{"msg_id":"z","timestamp":3,"sync":true},"route":{"source":"edged","group":"meta","operation":"query","resource":"default/configmap/cfg"},"content":null}"#,
        );
        assert!(q.header.sync && q.content.is_null());
    }

    #[test]
    fn empty_fields_are_omitted_and_content_always_present() {
        let m = Message {
            header: MessageHeader {
                id: "a".into(),
                timestamp: 5,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&m.to_json_vec()),
            r#"{"header":{"msg_id":"a","timestamp":5},"route":{},"content":null}"#
        );
        assert!(m.to_ws_frame().ends_with("}\n"));
    }

    #[test]
    fn tolerant_decoding() {
        let m = Message::from_slice(b"  {\"header\":{\"msg_id\":null,\"extra\":1},\"route\":{\"resource\":\"a/b/c\"},\"new\":true}\n\n")
            .unwrap_or_default();
        assert_eq!(m.resource(), "a/b/c");
        assert!(m.id().is_empty());
        assert!(Message::from_slice(b"[1,2]").is_err());
        assert!(Message::from_slice(b"{\"header\":").is_err());
        assert!(matches!(
            Message::from_slice_limited(&[b' '; 11], 10),
            Err(DecodeError::TooLarge { len: 11, limit: 10 })
        ));
    }

    #[test]
    fn response_rules() {
        let req = Message::new(
            "edgecontroller",
            "resource",
            "insert",
            "default/pod/p",
            json!({"a": 1}),
        )
        .with_resource_version("7");
        let ack = req.ack();
        assert_ne!(ack.id(), req.id());
        assert_eq!(ack.parent_id(), req.id());
        assert_eq!(
            (ack.source(), ack.group(), ack.operation(), ack.resource()),
            ("edgecontroller", "resource", "response", "default/pod/p")
        );
        assert_eq!(ack.content, json!("OK"));
        assert!(ack.header.resource_version.is_empty());
        let err = req.error_reply("boom");
        assert_eq!((err.operation(), err.parent_id()), ("error", req.id()));
        assert_eq!(
            uuid::Uuid::parse_str(ack.id())
                .map(|u| u.get_version_num())
                .unwrap_or(0),
            4
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parse_print_roundtrip(id in ".*", parent in ".*", ts in any::<i64>(), rv in ".*", sync in any::<bool>(),
                                 source in ".*", group in ".*", operation in ".*", resource in ".*", content in arb_json()) {
            let m = Message {
                header: MessageHeader { id, parent_id: parent, timestamp: ts, resource_version: rv, sync },
                route: MessageRoute { source, group, operation, resource },
                content,
            };
            let back = Message::from_slice(m.to_ws_frame().as_bytes());
            prop_assert!(back.is_ok());
            prop_assert_eq!(back.unwrap_or_default(), m);
        }

        #[test]
        fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::from_slice(&bytes);
        }
    }
}
