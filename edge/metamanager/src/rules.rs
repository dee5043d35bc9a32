//! Pure decisions: who sent a message, where a message goes, which rows it becomes.

use std::collections::BTreeMap;

use ke_core::Message;
use ke_core::names::{group, module};
use ke_core::resource::{Resource, kind};
use ke_store::MetaRow;
use serde_json::Value;

use crate::error::{Error, Result};

/// Legacy function-compute module names (v1.2 `funcmgr` / `edgefunction`).
pub(crate) const FUNCMGR: &str = "funcmgr";
/// See [`FUNCMGR`].
pub(crate) const EDGEFUNCTION: &str = "edgefunction";

/// Who a message comes from, as far as metaManager cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Delivered by edgehub from the link (route group `resource` or `func`).
    Cloud,
    /// edged (group `meta`).
    Edged,
    /// edgemesh.
    Edgemesh,
    /// Legacy function manager.
    FuncMgr,
    /// Legacy function runtime.
    EdgeFunction,
    /// Anything else (other edge modules, tests).
    Other,
}

impl Origin {
    pub(crate) fn of(msg: &Message) -> Self {
        match msg.source() {
            module::EDGED => Self::Edged,
            module::EDGEMESH => Self::Edgemesh,
            FUNCMGR => Self::FuncMgr,
            EDGEFUNCTION => Self::EdgeFunction,
            _ if matches!(msg.group(), group::RESOURCE | group::FUNC) => Self::Cloud,
            _ => Self::Other,
        }
    }

    /// The edge module to answer when the request was not synchronous.
    pub(crate) fn reply_module(self, kind: &str) -> &'static str {
        match self {
            Self::Edged => module::EDGED,
            Self::Edgemesh => module::EDGEMESH,
            _ => local_target(kind),
        }
    }
}

/// Edge module that consumes objects of `kind`: edgemesh for services, endpoints and the lists,
/// edged for everything else.
pub(crate) fn local_target(kind: &str) -> &'static str {
    match kind {
        kind::SERVICE | kind::ENDPOINTS | kind::SERVICELIST | kind::ENDPOINTSLIST | kind::PODLIST => {
            module::EDGEMESH
        }
        _ => module::EDGED,
    }
}

/// Types a query may fetch from the cloud when it is connected.
pub(crate) fn is_remote_type(k: &str) -> bool {
    matches!(
        k,
        kind::CONFIGMAP
            | kind::SECRET
            | kind::ENDPOINTS
            | kind::PERSISTENTVOLUME
            | kind::PERSISTENTVOLUMECLAIM
            | kind::VOLUMEATTACHMENT
            | kind::NODE
    )
}

/// Types that are always fetched from the cloud while connected, even when stored.
pub(crate) fn always_remote(k: &str) -> bool {
    matches!(k, kind::NODE | kind::VOLUMEATTACHMENT)
}

/// Parses the edge-form resource of `msg`.
pub(crate) fn resource(msg: &Message) -> Result<Resource<'_>> {
    Resource::parse(msg.resource())
        .filter(|r| !r.kind.is_empty())
        .ok_or_else(|| Error::BadResource {
            resource: msg.resource().to_owned(),
        })
}

/// The `value` column for a content: its JSON text (a JSON string content is stored quoted, as
/// v1.2 does for everything that arrived over WebSocket).
pub(crate) fn value_text(content: &Value) -> String {
    content.to_string()
}

/// Rows of a `servicelist` / `endpointslist` update: one `<ns>/<elem_kind>/<name>` row per element.
pub(crate) fn list_rows(msg: &Message, elem_kind: &str) -> Result<Vec<MetaRow>> {
    let bad = |reason| Error::BadList {
        resource: msg.resource().to_owned(),
        reason,
    };
    let items = msg
        .content
        .as_array()
        .ok_or_else(|| bad("content is not an array"))?;
    items
        .iter()
        .map(|item| {
            let meta = item.get("metadata");
            let field = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str);
            let name = field("name").ok_or_else(|| bad("an element has no metadata.name"))?;
            let ns = field("namespace").unwrap_or_default();
            Ok(MetaRow::new(
                format!("{ns}/{elem_kind}/{name}"),
                elem_kind,
                value_text(item),
            ))
        })
        .collect()
}

/// The pod row a podstatus row belongs to: `<ns>/podstatus/<name>` → `<ns>/pod/<name>`.
pub(crate) fn pod_key_of_status(status_key: &str) -> Option<String> {
    let r = Resource::parse(status_key)?;
    (r.kind == kind::PODSTATUS && !r.name.is_empty())
        .then(|| Resource::format(r.namespace, kind::POD, r.name))
}

/// Groups podstatus rows by namespace (sorted) with each value decoded back to JSON. Rows whose
/// key or value cannot be read are returned separately (by key) so the caller can log them.
pub(crate) fn podstatus_by_namespace(rows: &[MetaRow]) -> (BTreeMap<String, Vec<Value>>, Vec<String>) {
    let mut by_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut bad = Vec::new();
    for row in rows {
        let ns = Resource::parse(&row.key).map(|r| r.namespace);
        match (ns, serde_json::from_str::<Value>(&row.value)) {
            (Some(ns), Ok(v)) => by_ns.entry(ns.to_owned()).or_default().push(v),
            _ => bad.push(row.key.clone()),
        }
    }
    (by_ns, bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ke_core::names::op;
    use serde_json::json;

    fn msg(source: &str, grp: &str, resource: &str, content: Value) -> Message {
        Message::new(source, grp, op::UPDATE, resource, content)
    }

    #[test]
    fn origin_and_destinations() {
        let cloud = msg(module::EDGECONTROLLER, group::RESOURCE, "a/pod/p", Value::Null);
        assert_eq!(Origin::of(&cloud), Origin::Cloud);
        assert_eq!(
            Origin::of(&msg("whatever", group::FUNC, "x/y", Value::Null)),
            Origin::Cloud
        );
        assert_eq!(
            Origin::of(&msg(module::EDGED, group::META, "a/pod", Value::Null)),
            Origin::Edged
        );
        assert_eq!(
            Origin::of(&msg(module::TWIN, group::META, "a/b", Value::Null)),
            Origin::Other
        );
        assert_eq!(local_target("service"), module::EDGEMESH);
        assert_eq!(local_target("podlist"), module::EDGEMESH);
        assert_eq!(local_target("configmap"), module::EDGED);
        assert_eq!(Origin::Edgemesh.reply_module("configmap"), module::EDGEMESH);
        assert_eq!(Origin::Cloud.reply_module("endpoints"), module::EDGEMESH);
        assert!(is_remote_type("secret") && is_remote_type("node") && !is_remote_type("pod"));
        assert!(always_remote("volumeattachment") && !always_remote("configmap"));
    }

    #[test]
    fn resources_and_values() {
        assert!(resource(&msg("s", "g", "node", Value::Null)).is_err());
        assert!(resource(&msg("s", "g", "ns/", Value::Null)).is_err());
        let m = msg("s", "g", "ns/pod", Value::Null);
        assert_eq!(resource(&m).map(|r| (r.kind, r.name)).ok(), Some(("pod", "")));
        assert_eq!(value_text(&json!({"b": 1, "a": "x"})), r#"{"a":"x","b":1}"#);
        assert_eq!(value_text(&json!("OK")), r#""OK""#);
        assert_eq!(pod_key_of_status("ns/podstatus/p").as_deref(), Some("ns/pod/p"));
        assert_eq!(pod_key_of_status("ns/podstatus"), None);
        assert_eq!(pod_key_of_status("ns/pod/p"), None);
    }

    #[test]
    fn list_updates_split_into_rows() {
        let m = msg(
            module::EDGECONTROLLER,
            group::RESOURCE,
            "namespace/servicelist/service",
            json!([
                {"metadata": {"name": "s1", "namespace": "a"}, "spec": {}},
                {"metadata": {"name": "s2", "namespace": "b"}}
            ]),
        );
        let rows = list_rows(&m, "service").unwrap_or_default();
        assert_eq!(
            rows,
            [
                MetaRow::new(
                    "a/service/s1",
                    "service",
                    r#"{"metadata":{"name":"s1","namespace":"a"},"spec":{}}"#
                ),
                MetaRow::new(
                    "b/service/s2",
                    "service",
                    r#"{"metadata":{"name":"s2","namespace":"b"}}"#
                ),
            ]
        );
        let empty = msg("s", "g", "namespace/servicelist/service", json!([]));
        assert_eq!(list_rows(&empty, "service").map(|r| r.len()).ok(), Some(0));
        let not_list = msg("s", "g", "namespace/servicelist/service", json!({}));
        assert!(matches!(
            list_rows(&not_list, "service"),
            Err(Error::BadList { .. })
        ));
        let nameless = msg(
            "s",
            "g",
            "namespace/servicelist/service",
            json!([{"metadata": {}}]),
        );
        assert!(matches!(
            list_rows(&nameless, "service"),
            Err(Error::BadList { .. })
        ));
    }

    #[test]
    fn podstatus_grouping() {
        let rows = [
            MetaRow::new("b/podstatus/x", "podstatus", r#"{"Name":"x"}"#),
            MetaRow::new("a/podstatus/y", "podstatus", r#"{"Name":"y"}"#),
            MetaRow::new("a/podstatus/z", "podstatus", r#"{"Name":"z"}"#),
            MetaRow::new("a/podstatus/bad", "podstatus", "not json"),
        ];
        let (by_ns, bad) = podstatus_by_namespace(&rows);
        assert_eq!(by_ns.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(by_ns["a"], [json!({"Name": "y"}), json!({"Name": "z"})]);
        assert_eq!(bad, ["a/podstatus/bad"]);
    }
}
