//! The v1.2 message shapes edgecontroller sends (pure builders, no I/O).

use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_core::resource::{add_node_prefix, kind};
use serde_json::Value;

/// `node/<node>/<ns>/<kind>/<name>`.
pub fn object_resource(node: &str, namespace: &str, kind: &str, name: &str) -> String {
    add_node_prefix(node, &format!("{namespace}/{kind}/{name}"))
}

/// An object event for `node`: source `edgecontroller`, group `resource`, `resourceversion` = `rv`.
pub fn object(
    node: &str,
    operation: &str,
    namespace: &str,
    kind: &str,
    name: &str,
    rv: &str,
    content: Value,
) -> Message {
    Message::new(
        module::EDGECONTROLLER,
        group::RESOURCE,
        operation,
        object_resource(node, namespace, kind, name),
        content,
    )
    .with_resource_version(rv)
}

/// A list for `node` (`servicelist`, `endpointslist`, `podlist`): no resourceversion.
pub fn list(node: &str, resource: &str, items: Vec<Value>) -> Message {
    Message::new(
        module::EDGECONTROLLER,
        group::RESOURCE,
        op::UPDATE,
        add_node_prefix(node, resource),
        Value::Array(items),
    )
}

/// `namespace/servicelist/service`
pub const SERVICE_LIST: &str = "namespace/servicelist/service";
/// `namespace/endpointslist/endpoints`
pub const ENDPOINTS_LIST: &str = "namespace/endpointslist/endpoints";

/// `<svcNs>/podlist/<svcName>`
pub fn pod_list_resource(namespace: &str, service: &str) -> String {
    format!("{namespace}/{}/{service}", kind::PODLIST)
}

/// A reply to `request` on `resource` (cloud form): source `edgecontroller`, group `resource`,
/// operation `response`, parent = the request's id.
pub fn reply(request: &Message, resource: String, rv: &str, content: Value) -> Message {
    Message::new(
        module::EDGECONTROLLER,
        group::RESOURCE,
        op::RESPONSE,
        resource,
        content,
    )
    .with_parent(request.id())
    .with_resource_version(rv)
}

/// The stub content v1.2 sends with a delete it makes up (no object at hand):
/// `{"metadata":{"name","namespace"[,"uid"]}}`.
pub fn stub(namespace: &str, name: &str, uid: &str) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), namespace.into());
    if !uid.is_empty() {
        meta.insert("uid".into(), uid.into());
    }
    serde_json::json!({ "metadata": meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_message_is_v12_shaped() {
        let m = object(
            "edge-1",
            op::INSERT,
            "default",
            kind::POD,
            "nginx",
            "4711",
            serde_json::json!({"a":1}),
        );
        assert_eq!(m.source(), "edgecontroller");
        assert_eq!(m.group(), "resource");
        assert_eq!(m.operation(), "insert");
        assert_eq!(m.resource(), "node/edge-1/default/pod/nginx");
        assert_eq!(m.header.resource_version, "4711");
        assert!(m.parent_id().is_empty());
    }

    #[test]
    fn reply_names_its_request() {
        let q = Message::new(
            "edged",
            "meta",
            "query",
            "node/e/default/configmap/c",
            Value::Null,
        );
        let r = reply(
            &q,
            "node/e/default/configmap/c".into(),
            "9",
            serde_json::json!({}),
        );
        assert_eq!(r.parent_id(), q.id());
        assert_eq!(r.operation(), "response");
        assert_eq!(r.source(), "edgecontroller");
        assert_eq!(r.header.resource_version, "9");
    }

    #[test]
    fn lists_have_no_version() {
        let m = list("n", SERVICE_LIST, vec![]);
        assert_eq!(m.resource(), "node/n/namespace/servicelist/service");
        assert!(m.header.resource_version.is_empty());
        assert_eq!(m.content, Value::Array(vec![]));
        assert_eq!(pod_list_resource("ns", "svc"), "ns/podlist/svc");
    }
}
