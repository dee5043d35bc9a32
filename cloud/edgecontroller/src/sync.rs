//! Reliable sync: ObjectSync bookkeeping on acks and the periodic resync
//! (`shared/spec/cloudhub-edgehub.md` §7.2–§7.4).
//!
//! * [`record_ack`]: when an edge acks a group-`resource` message whose content carries a UID,
//!   a `delete` removes the ObjectSync `<node>.<uid>` and anything else creates/updates it in the
//!   object's namespace with `spec.objectKind`/`objectName`/`objectAPIVersion: ""` and
//!   `status.objectResourceVersion` = the message's `resourceversion`;
//! * [`SyncController`]: every 5 s, for each ObjectSync of kind pod/configmap/secret/service/
//!   endpoints, a `delete` (stub content) when the object is gone, an `update` when its
//!   resourceVersion is numerically newer than the recorded one; and an `insert` for every pod
//!   bound to an edge node that has no ObjectSync (a pod being deleted is left to the watch).
//!
//! The same pass removes the ObjectSyncs of nodes that no longer exist in Kubernetes (v1.2 left
//! them behind forever).
//!
//! API cost of a pass: one LIST of ObjectSyncs. Nodes, pods and objects are read from the
//! [`crate::cache::Caches`] the downstream watches fill; no pass runs before the node and pod
//! caches hold their first full list, and an ObjectSync of a kind whose cache is not filled yet
//! waits. A cache lags the API server, so absence is not trusted blindly: an object (or node)
//! missing from its cache counts as deleted only when the cache has applied an event at or past
//! the ObjectSync's recorded version (its own version, for a node), else only after a GET
//! answers 404. Deletes are rare, so these GETs are too.
//!
//! ClusterObjectSync and devices are not synced (neither are they in v1.2.1).

use std::collections::HashSet;
use std::time::Duration;

use cloudhub::CloudHub;
use k8s_openapi::api::core::v1::Node;
use ke_core::Message;
use ke_core::names::{group, op};
use ke_core::resource::{Resource, kind, strip_node_prefix};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::cache::{Cache, Caches};
use crate::downstream::is_edge_node;
use crate::messages;
use crate::{Error, Result};

/// How often [`SyncController`] compares ObjectSyncs with Kubernetes.
pub const PERIOD: Duration = Duration::from_secs(5);

/// `objectsyncs.reliablesyncs.kubeedge.io/v1alpha1`.
pub fn object_sync_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("reliablesyncs.kubeedge.io", "v1alpha1", "ObjectSync"),
        "objectsyncs",
    )
}

/// ObjectSync name: `<node>.<uid>`.
pub fn object_sync_name(node: &str, uid: &str) -> String {
    format!("{node}.{uid}")
}

/// Node and object UID of an ObjectSync name: split at the last `.`.
pub fn split_sync_name(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
        .filter(|(n, u)| !n.is_empty() && !u.is_empty())
}

/// Numeric resourceVersion comparison: `current` is newer than `recorded`. When either is not a
/// number, any different non-empty `current` counts as newer.
pub fn is_newer(current: &str, recorded: &str) -> bool {
    match (current.parse::<u64>(), recorded.parse::<u64>()) {
        (Ok(c), Ok(r)) => c > r,
        _ => !current.is_empty() && current != recorded,
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Records an edge's ack of `message` (cloud-side resource `node/<node>/<ns>/<kind>/<name>`) in
/// ObjectSync `<node>.<uid>`. Messages without a UID in their content (lists, replies) are ignored.
pub async fn record_ack(client: &Client, node: &str, message: &Message) -> Result<()> {
    if message.group() != group::RESOURCE || message.operation() == op::RESPONSE {
        return Ok(());
    }
    let Some(uid) = message
        .content
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    else {
        return Ok(());
    };
    let edge_res = strip_node_prefix(message.resource())
        .map(|(_, r)| r)
        .unwrap_or(message.resource());
    let Some(r) = Resource::parse(edge_res).filter(|r| !r.name.is_empty()) else {
        return Ok(());
    };
    let ar = object_sync_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), r.namespace, &ar);
    let name = object_sync_name(node, uid);
    if message.operation() == op::DELETE {
        return match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_err(format!("delete objectsync {}/{name}", r.namespace))(e)),
        };
    }
    let rv = &message.header.resource_version;
    let what = |verb: &str| format!("{verb} objectsync {}/{name}", r.namespace);
    // The record only moves forward: an ack of an older version (a late write of a cloudcore that
    // lost the node, HA) must not roll it back, or the newer version would be sent again. The
    // status write is conditional on the ObjectSync's own resourceVersion, read just before.
    for _ in 0..RECORD_ATTEMPTS {
        let existing = match api.get_opt(&name).await.map_err(api_err(what("get")))? {
            Some(o) => o,
            None => {
                let mut obj = DynamicObject::new(&name, &ar).within(r.namespace);
                obj.data = json!({
                    "spec": {"objectKind": r.kind, "objectName": r.name, "objectAPIVersion": ""},
                });
                match api.create(&PostParams::default(), &obj).await {
                    Ok(o) => o,
                    Err(e) if is_status(&e, 409) => continue,
                    Err(e) => return Err(api_err(what("create"))(e)),
                }
            }
        };
        let recorded = existing
            .data
            .pointer("/status/objectResourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !recorded.is_empty() && !is_newer(rv, recorded) {
            debug!(%node, objectsync = %name, %rv, %recorded, "ack of a version not newer than the record: kept");
            return Ok(());
        }
        let status = json!({
            "metadata": {"resourceVersion": existing.resource_version()},
            "status": {"objectResourceVersion": rv},
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => {
                debug!(%node, objectsync = %name, %rv, "recorded delivery");
                return Ok(());
            }
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => return Err(api_err(what("update status of"))(e)),
        }
    }
    Err(Error::Content {
        resource: message.resource().to_owned(),
        reason: format!("objectsync {name} kept changing ({RECORD_ATTEMPTS} conflicts)"),
    })
}

/// Conditional ObjectSync writes tried per ack.
const RECORD_ATTEMPTS: usize = 5;

/// The Kubernetes resource behind an ObjectSync's `spec.objectKind`.
fn kind_resource(k: &str) -> Option<ApiResource> {
    let (kind_name, plural) = match k {
        kind::POD => ("Pod", "pods"),
        kind::CONFIGMAP => ("ConfigMap", "configmaps"),
        kind::SECRET => ("Secret", "secrets"),
        kind::SERVICE => ("Service", "services"),
        kind::ENDPOINTS => ("Endpoints", "endpoints"),
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", kind_name),
        plural,
    ))
}

fn to_content<T: serde::Serialize>(o: &T, name: &str) -> Result<Value> {
    serde_json::to_value(o).map_err(|e| Error::Content {
        resource: name.to_owned(),
        reason: e.to_string(),
    })
}

/// The periodic resync.
pub struct SyncController {
    client: Client,
    hub: CloudHub,
    caches: Caches,
    metrics: cloudhub::metrics::ControllerHandle,
    takeovers: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

impl std::fmt::Debug for SyncController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncController").finish_non_exhaustive()
    }
}

impl SyncController {
    /// A controller over `client` sending through `hub`, reading nodes, pods and objects from
    /// `caches` (fed by [`crate::downstream::Downstream::with_caches`]).
    pub fn new(client: Client, hub: CloudHub, caches: Caches) -> Self {
        Self {
            client,
            hub,
            caches,
            metrics: Default::default(),
            takeovers: None,
        }
    }

    /// HA mode: nodes named on `rx` were just taken over by this cloudcore, with an empty queue.
    /// Each gets the service and endpoints lists from the caches, and a pass runs at once (not at
    /// the next tick) so the edge gets what ObjectSync says it lacks.
    pub fn with_takeovers(mut self, rx: tokio::sync::mpsc::UnboundedReceiver<String>) -> Self {
        self.takeovers = Some(rx);
        self
    }

    /// Counts its work in `metrics` (`controller_*{controller="synccontroller"}`): one event per
    /// pass, one message per resend.
    pub fn with_metrics(mut self, metrics: cloudhub::metrics::ControllerHandle) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs [`Self::sync_once`] every [`PERIOD`], forever.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut takeovers = self.takeovers.take();
        loop {
            let taken = match takeovers.as_mut() {
                Some(rx) => tokio::select! {
                    _ = tick.tick() => Vec::new(),
                    Some(first) = rx.recv() => {
                        // A burst of takeovers (a peer died) makes one pass.
                        let mut all = vec![first];
                        while let Ok(n) = rx.try_recv() {
                            all.push(n);
                        }
                        all
                    }
                },
                None => {
                    tick.tick().await;
                    Vec::new()
                }
            };
            for node in &taken {
                self.send_lists(node);
            }
            self.metrics.event();
            if let Err(e) = self.sync_once().await {
                self.metrics.error();
                warn!("synccontroller: {e}");
            }
        }
    }

    /// The service and endpoints lists of the caches, for a node served from an empty queue.
    fn send_lists(&self, node: &str) {
        let c = &self.caches;
        if !c.services.is_ready() || !c.endpoints.is_ready() {
            return;
        }
        let services = c
            .services
            .snapshot()
            .iter()
            .filter_map(|o| serde_json::to_value(&**o).ok())
            .collect();
        self.send(messages::list(node, messages::SERVICE_LIST, services));
        let eps = c
            .endpoints
            .snapshot()
            .iter()
            .filter_map(|o| serde_json::to_value(&**o).ok())
            .collect();
        self.send(messages::list(node, messages::ENDPOINTS_LIST, eps));
    }

    fn send(&self, m: Message) {
        let resource = m.resource().to_owned();
        match self.hub.send(m) {
            Ok(_) => self.metrics.sent(),
            Err(source) => {
                self.metrics.error();
                warn!("synccontroller: {}", Error::Hub { resource, source });
            }
        }
    }

    /// One pass: ObjectSyncs of nodes no longer in Kubernetes removed, deletes for vanished
    /// objects, updates for newer ones, inserts for unsynced pods.
    ///
    /// The only LIST is of ObjectSyncs; nodes, pods and objects come from the shared caches. An
    /// object absent from its cache is only judged deleted when the cache has caught up past the
    /// ObjectSync's recorded version, or a GET says 404; likewise a node.
    pub async fn sync_once(&self) -> Result<()> {
        let c = &self.caches;
        if !c.nodes.is_ready() || !c.pods.is_ready() {
            debug!("synccontroller: caches not filled yet, pass skipped");
            return Ok(());
        }
        let nodes = c.nodes.snapshot();
        let all_nodes: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let edge: HashSet<String> = nodes
            .iter()
            .filter(|n| is_edge_node(n))
            .map(|n| n.name_any())
            .collect();

        let syncs: Api<DynamicObject> = Api::all_with(self.client.clone(), &object_sync_resource());
        let list = syncs
            .list(&ListParams::default())
            .await
            .map_err(api_err("list objectsyncs"))?;
        let mut known: HashSet<String> = HashSet::new();
        for s in &list.items {
            let name = s.name_any();
            let result = match split_sync_name(&name) {
                Some((node, _)) if !all_nodes.contains(node) => self.orphan(s, &name, node).await,
                _ => self.sync_one(s, &name).await,
            };
            if let Err(e) = result {
                self.metrics.error();
                warn!(objectsync = %name, "synccontroller: {e}");
            }
            known.insert(name);
        }

        if edge.is_empty() {
            return Ok(());
        }
        for p in c.pods.snapshot() {
            let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let Some(uid) = p.metadata.uid.as_deref() else {
                continue;
            };
            // A pod being deleted is left to the watch: its delete goes out once it is gone.
            if !edge.contains(node)
                || known.contains(&object_sync_name(node, uid))
                || p.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let name = p.name_any();
            let ns = p.namespace().unwrap_or_default();
            let rv = p.resource_version().unwrap_or_default();
            if self.hub.is_ha() {
                self.send_unsynced_configs(node, &p, &known);
            }
            debug!(%node, pod = %format!("{ns}/{name}"), "pod without objectsync: insert sent");
            let content = to_content(&*p, &name)?;
            self.send(messages::object(
                node,
                op::INSERT,
                &ns,
                kind::POD,
                &name,
                &rv,
                content,
            ));
        }
        Ok(())
    }

    /// HA: the config maps and secrets of a pod the edge never acked, when their own insert was
    /// not acked either (it may have been in the queue of the cloudcore that lost the node).
    fn send_unsynced_configs(
        &self,
        node: &str,
        pod: &k8s_openapi::api::core::v1::Pod,
        known: &HashSet<String>,
    ) {
        let (cms, secrets) = crate::downstream::pod_references(pod);
        let refs = cms
            .into_iter()
            .map(|k| (kind::CONFIGMAP, k))
            .chain(secrets.into_iter().map(|k| (kind::SECRET, k)));
        for (k, key) in refs {
            if let Some((Some(uid), m)) = crate::downstream::config_message(&self.caches, node, k, &key)
                && !known.contains(&object_sync_name(node, &uid))
            {
                self.send(m);
            }
        }
    }

    /// The node of ObjectSync `s` is not in the node cache: if it is really gone (the cache has
    /// caught up past the ObjectSync's own version, or a GET says 404), its records go too (v1.2
    /// kept them forever).
    async fn orphan(&self, s: &DynamicObject, name: &str, node: &str) -> Result<()> {
        let own_rv = s.resource_version().unwrap_or_default();
        if !self.caches.nodes.caught_up(&own_rv) {
            let nodes: Api<Node> = Api::all(self.client.clone());
            let found = nodes
                .get_metadata_opt(node)
                .await
                .map_err(api_err(format!("get node {node}")))?;
            if found.is_some() {
                return Ok(()); // the cache is behind
            }
        }
        let ns = s.namespace().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &object_sync_resource());
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                debug!(%node, objectsync = %name, "node deleted: objectsync removed");
                Ok(())
            }
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_err(format!("delete objectsync {ns}/{name}"))(e)),
        }
    }

    async fn sync_one(&self, s: &DynamicObject, name: &str) -> Result<()> {
        let Some((node, uid)) = split_sync_name(name) else {
            return Ok(());
        };
        let ns = s.namespace().unwrap_or_default();
        let str_at = |section: &str, k: &str| {
            s.data
                .get(section)
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (k, obj_name) = (str_at("spec", "objectKind"), str_at("spec", "objectName"));
        let recorded = str_at("status", "objectResourceVersion");
        let c = &self.caches;
        let cached = match k.as_str() {
            kind::POD => Cached::of(&c.pods, &ns, &obj_name, &recorded),
            kind::CONFIGMAP => Cached::of(&c.configmaps, &ns, &obj_name, &recorded),
            kind::SECRET => Cached::of(&c.secrets, &ns, &obj_name, &recorded),
            kind::SERVICE => Cached::of(&c.services, &ns, &obj_name, &recorded),
            kind::ENDPOINTS => Cached::of(&c.endpoints, &ns, &obj_name, &recorded),
            _ => return Ok(()), // a kind the synccontroller does not handle
        };
        let current = match cached {
            Cached::NotReady | Cached::UpToDate => return Ok(()),
            Cached::Found(o) => Some(o),
            Cached::Gone => None,
            Cached::Unsure => self.get_object(&k, &ns, &obj_name).await?,
        };
        match current {
            None => {
                debug!(objectsync = %name, "object gone: delete sent");
                let stub = messages::stub(&ns, &obj_name, uid);
                self.send(messages::object(
                    node,
                    op::DELETE,
                    &ns,
                    &k,
                    &obj_name,
                    &recorded,
                    stub,
                ));
            }
            Some((rv, content)) => {
                if is_newer(&rv, &recorded) {
                    debug!(objectsync = %name, %rv, %recorded, "object newer: update sent");
                    self.send(messages::object(
                        node,
                        op::UPDATE,
                        &ns,
                        &k,
                        &obj_name,
                        &rv,
                        content,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The object from the API server (the cache does not have it and may be behind):
    /// `None` on 404.
    async fn get_object(&self, k: &str, ns: &str, name: &str) -> Result<Option<(String, Value)>> {
        let Some(ar) = kind_resource(k) else {
            return Ok(None);
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let Some(mut o) = api
            .get_opt(name)
            .await
            .map_err(api_err(format!("get {k} {ns}/{name}")))?
        else {
            return Ok(None);
        };
        o.types.get_or_insert_with(|| kube::api::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
        let rv = o.resource_version().unwrap_or_default();
        Ok(Some((rv, to_content(&o, name)?)))
    }
}

/// What a cache says about an ObjectSync's object.
enum Cached {
    /// The cache has not been filled yet: judge nothing.
    NotReady,
    /// Present at the recorded version (or an older one).
    UpToDate,
    /// Present and newer than the recorded version: its resourceVersion and content.
    Found((String, Value)),
    /// Absent, and the cache has caught up past the recorded version: deleted.
    Gone,
    /// Absent, but the cache may be behind: ask the API server.
    Unsure,
}

impl Cached {
    fn of<K>(cache: &Cache<K>, ns: &str, name: &str, recorded: &str) -> Self
    where
        K: ResourceExt + Clone + serde::Serialize,
    {
        if !cache.is_ready() {
            return Self::NotReady;
        }
        match cache.get(ns, name) {
            Some(o) => {
                let rv = o.resource_version().unwrap_or_default();
                if !is_newer(&rv, recorded) {
                    return Self::UpToDate;
                }
                match serde_json::to_value(&*o) {
                    Ok(v) => Self::Found((rv, v)),
                    Err(_) => Self::Unsure,
                }
            }
            None if cache.caught_up(recorded) => Self::Gone,
            None => Self::Unsure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(object_sync_name("edge-1", "abc-123"), "edge-1.abc-123");
        assert_eq!(split_sync_name("edge.a.b.uid"), Some(("edge.a.b", "uid")));
        assert_eq!(split_sync_name("nodot"), None);
        assert!(is_newer("10", "9"));
        assert!(!is_newer("9", "10"));
        assert!(!is_newer("10", "10"));
        assert!(is_newer("10", ""));
        assert_eq!(object_sync_resource().plural, "objectsyncs");
        assert!(kind_resource("pod").is_some());
        assert!(kind_resource("node").is_none());
    }

    fn cm(name: &str, rv: &str) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut c = k8s_openapi::api::core::v1::ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(rv.into());
        c
    }

    #[test]
    fn absence_from_a_lagging_cache_is_not_a_delete() {
        use kube::runtime::watcher::Event;
        let cache = Cache::default();
        assert!(matches!(Cached::of(&cache, "ns", "a", "5"), Cached::NotReady));
        cache.apply(&Event::Init);
        cache.apply(&Event::InitApply(cm("a", "5")));
        cache.apply(&Event::InitApply(cm("b", "10")));
        cache.apply(&Event::InitDone);
        // Present at (or behind) the recorded version: nothing to do; newer: an update.
        assert!(matches!(Cached::of(&cache, "ns", "a", "5"), Cached::UpToDate));
        assert!(matches!(Cached::of(&cache, "ns", "a", "7"), Cached::UpToDate));
        assert!(matches!(Cached::of(&cache, "ns", "a", "4"), Cached::Found((rv, _)) if rv == "5"));
        // Absent, acked at a version the cache has passed: deleted.
        assert!(matches!(Cached::of(&cache, "ns", "gone", "9"), Cached::Gone));
        // Absent, acked at a version the cache has not reached (or not a number): ask the API.
        assert!(matches!(Cached::of(&cache, "ns", "new", "11"), Cached::Unsure));
        assert!(matches!(Cached::of(&cache, "ns", "new", ""), Cached::Unsure));
        cache.apply(&Event::Apply(cm("c", "12")));
        assert!(matches!(Cached::of(&cache, "ns", "new", "11"), Cached::Gone));
    }
}
