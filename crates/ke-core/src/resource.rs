//! Resource strings (`shared/spec/message.md` §7).
//!
//! At the edge a resource is `<namespace>/<type>/<name>` (sometimes `<namespace>/<type>`, or a
//! literal such as `node`, `membership`, `device/<id>/twin/edge_updated`). Inside cloudcore a
//! per-node resource is prefixed `node/<node>/`; cloudhub strips the prefix before sending and adds
//! it to everything it receives.

/// Segment that starts a cloud-side per-node resource.
pub const NODE_PREFIX: &str = "node";

/// Resource types that carry a namespace and name at the edge.
pub mod kind {
    /// `pod`
    pub const POD: &str = "pod";
    /// `configmap`
    pub const CONFIGMAP: &str = "configmap";
    /// `secret`
    pub const SECRET: &str = "secret";
    /// `service`
    pub const SERVICE: &str = "service";
    /// `endpoints`
    pub const ENDPOINTS: &str = "endpoints";
    /// `node`
    pub const NODE: &str = "node";
    /// `nodestatus`
    pub const NODESTATUS: &str = "nodestatus";
    /// `podstatus`
    pub const PODSTATUS: &str = "podstatus";
    /// `podlist`
    pub const PODLIST: &str = "podlist";
    /// `servicelist`
    pub const SERVICELIST: &str = "servicelist";
    /// `endpointslist`
    pub const ENDPOINTSLIST: &str = "endpointslist";
    /// `persistentvolume`
    pub const PERSISTENTVOLUME: &str = "persistentvolume";
    /// `persistentvolumeclaim`
    pub const PERSISTENTVOLUMECLAIM: &str = "persistentvolumeclaim";
    /// `volumeattachment`
    pub const VOLUMEATTACHMENT: &str = "volumeattachment";
    /// `volume` (CSI over the unix socket)
    pub const VOLUME: &str = "volume";
    /// `membership`
    pub const MEMBERSHIP: &str = "membership";
}

/// An edge-form resource `<namespace>/<type>[/<name>]`, borrowed from the string it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Namespace segment.
    pub namespace: &'a str,
    /// Resource type segment (`pod`, `configmap`, …).
    pub kind: &'a str,
    /// Name; may contain further `/` (everything after the type). Empty when absent.
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// Parses `<ns>/<type>[/<name>]`. Returns `None` for fewer than two segments.
    pub fn parse(resource: &'a str) -> Option<Self> {
        let mut it = resource.splitn(3, '/');
        let namespace = it.next()?;
        let kind = it.next()?;
        let name = it.next().unwrap_or("");
        Some(Self {
            namespace,
            kind,
            name,
        })
    }

    /// Formats `<ns>/<type>/<name>` (or `<ns>/<type>` when the name is empty).
    pub fn format(namespace: &str, kind: &str, name: &str) -> String {
        if name.is_empty() {
            format!("{namespace}/{kind}")
        } else {
            format!("{namespace}/{kind}/{name}")
        }
    }
}

/// Adds the cloud's `node/<node>/` prefix to a resource received from edge `node`.
pub fn add_node_prefix(node: &str, resource: &str) -> String {
    format!("{NODE_PREFIX}/{node}/{resource}")
}

/// Splits a cloud-side resource into `(node, edge resource)`. As in v1.2, only a resource that
/// starts with `node` and has at least three segments is prefixed; anything else is `None`.
pub fn strip_node_prefix(resource: &str) -> Option<(&str, &str)> {
    let rest = resource.strip_prefix(NODE_PREFIX)?.strip_prefix('/')?;
    let (node, tail) = rest.split_once('/')?;
    if node.is_empty() || tail.is_empty() {
        return None;
    }
    Some((node, tail))
}

/// The node a cloud-side resource is addressed to: the segment after the first `node` segment.
pub fn node_of(resource: &str) -> Option<&str> {
    let mut segs = resource.split('/');
    while let Some(s) = segs.next() {
        if s == NODE_PREFIX {
            return segs.next().filter(|n| !n.is_empty());
        }
    }
    None
}

/// The type segment of an edge-form resource (`default/pod/x` → `pod`).
pub fn edge_kind(resource: &str) -> Option<&str> {
    Resource::parse(resource).map(|r| r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_edge_forms() {
        assert_eq!(
            Resource::parse("default/pod/nginx"),
            Some(Resource {
                namespace: "default",
                kind: "pod",
                name: "nginx"
            })
        );
        assert_eq!(
            Resource::parse("default/podstatus"),
            Some(Resource {
                namespace: "default",
                kind: "podstatus",
                name: ""
            })
        );
        assert_eq!(Resource::parse("node"), None);
        assert_eq!(Resource::parse("a/b/c/d").map(|r| r.name), Some("c/d"));
        assert_eq!(Resource::format("ns", "secret", ""), "ns/secret");
    }

    #[test]
    fn node_prefix_rules() {
        assert_eq!(
            strip_node_prefix("node/edge-1/default/pod/p"),
            Some(("edge-1", "default/pod/p"))
        );
        assert_eq!(
            strip_node_prefix("node/edge-1/membership"),
            Some(("edge-1", "membership"))
        );
        assert_eq!(strip_node_prefix("node/edge-1"), None);
        assert_eq!(strip_node_prefix("nodes/x/y"), None);
        assert_eq!(strip_node_prefix("default/pod/p"), None);
        assert_eq!(
            add_node_prefix("n1", "default/podstatus/p"),
            "node/n1/default/podstatus/p"
        );
        assert_eq!(node_of("node/n1/default/pod/p"), Some("n1"));
        assert_eq!(node_of("node/n1"), Some("n1"));
        assert_eq!(node_of("default/pod/p"), None);
    }

    proptest! {
        #[test]
        fn prefix_roundtrip(node in "[a-z0-9][a-z0-9.-]{0,20}", res in "[a-z0-9]{1,8}(/[a-z0-9.-]{1,8}){0,3}") {
            let full = add_node_prefix(&node, &res);
            prop_assert_eq!(strip_node_prefix(&full), Some((node.as_str(), res.as_str())));
            prop_assert_eq!(node_of(&full), Some(node.as_str()));
        }
    }
}
