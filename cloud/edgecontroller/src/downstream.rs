//! Kubernetes → edge: watches and the messages they turn into
//! (`shared/spec/edgecontroller-devicecontroller.md` §1–§2).
//!
//! One task owns all state (edge nodes and their readiness, pods bound to nodes, which config
//! maps and secrets each node's pods reference, services, endpoints); the six watches are merged
//! into one stream, so no locks are needed. API lists for `podlist` messages run in spawned tasks.
//!
//! Every event is first applied to the shared [`Caches`] (which the synccontroller reads instead
//! of listing the API server). Nodes are watched unfiltered for that cache (the synccontroller
//! removes the ObjectSyncs of any deleted node); for this controller a node without the edge
//! label counts as deleted, as it did with the label-selected watch of before.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use ke_core::Message;
use ke_core::names::op;
use ke_core::resource::kind;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::cache::Caches;
use crate::kubeclient::watch;
use crate::messages;
use crate::tracker::{Change, Tracker, ns_name};
use cloudhub::CloudHub;
use cloudhub::metrics::ControllerHandle;

/// Label that makes a Node an edge node (value `""`).
pub const EDGE_NODE_LABEL: &str = "node-role.kubernetes.io/edge";

enum Ev {
    Node(Box<Event<Node>>),
    Pod(Box<Event<Pod>>),
    ConfigMap(Box<Event<ConfigMap>>),
    Secret(Box<Event<Secret>>),
    Service(Box<Event<Service>>),
    Endpoints(Box<Event<Endpoints>>),
}

/// The downstream half of the controller.
pub struct Downstream {
    client: Client,
    hub: CloudHub,
    metrics: ControllerHandle,
    caches: Caches,
    /// Edge nodes → their `Ready` condition is `True`.
    nodes: Tracker<Node, bool>,
    pods: Tracker<Pod, Pod>,
    configmaps: Tracker<ConfigMap, (String, String)>,
    secrets: Tracker<Secret, (String, String)>,
    services: Tracker<Service, Service>,
    endpoints: Tracker<Endpoints, Endpoints>,
    /// `<ns>/<configmap>` → nodes whose pods reference it.
    configmap_nodes: HashMap<String, HashSet<String>>,
    /// `<ns>/<secret>` → nodes whose pods reference it.
    secret_nodes: HashMap<String, HashSet<String>>,
    /// Nodes that turned Ready before the services and endpoints were fully listed: their lists
    /// go out once they are (an early list would be empty or partial).
    lists_pending: Vec<String>,
}

impl std::fmt::Debug for Downstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downstream").finish_non_exhaustive()
    }
}

fn rv_uid<K: ResourceExt>(o: &K) -> (String, String) {
    (
        o.resource_version().unwrap_or_default(),
        o.uid().unwrap_or_default(),
    )
}

/// The message sending the cached config map or secret `key` (`<ns>/<name>`) to `node`, as its
/// watch's `Added` would (config maps `insert`, secrets `update`, as v1.2), with the object's UID;
/// `None` when the cache does not hold it.
pub(crate) fn config_message(
    caches: &Caches,
    node: &str,
    kind: &'static str,
    key: &str,
) -> Option<(Option<String>, Message)> {
    let (ns, name) = split_key(key);
    let (meta, content, operation) = if kind == kind::SECRET {
        let o = caches.secrets.get(ns, name)?;
        (o.metadata.clone(), to_json(&*o), op::UPDATE)
    } else {
        let o = caches.configmaps.get(ns, name)?;
        (o.metadata.clone(), to_json(&*o), op::INSERT)
    };
    let rv = meta.resource_version.unwrap_or_default();
    let m = messages::object(node, operation, ns, kind, name, &rv, content);
    Some((meta.uid, m))
}

fn to_json<T: serde::Serialize>(o: &T) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Queues `m` for its node on `hub`, counting it as sent (or as an error, logged, when the hub
/// refuses it) in the controller's `metrics`. Shared with devicecontroller.
pub fn send_counted(hub: &CloudHub, metrics: &ControllerHandle, m: Message) {
    let resource = m.resource().to_owned();
    match hub.send(m) {
        Ok(admit) => {
            metrics.sent();
            debug!(%resource, ?admit, "queued for the edge");
        }
        Err(e) => {
            metrics.error();
            warn!(%resource, "cloudhub refused the message: {e}");
        }
    }
}

/// Metadata without the fields v1.2 ignores when deciding whether a Modified event matters
/// (`resourceVersion`, `generation`; `managedFields` too, see the crate docs).
fn meta_for_compare(m: &ObjectMeta, drop_annotations: bool) -> ObjectMeta {
    let mut m = m.clone();
    m.resource_version = None;
    m.generation = None;
    m.managed_fields = None;
    if drop_annotations {
        m.annotations = None;
    }
    m
}

/// True if a pod update must reach the edge: metadata or spec changed (status alone does not).
pub fn pod_changed(old: &Pod, new: &Pod) -> bool {
    meta_for_compare(&old.metadata, false) != meta_for_compare(&new.metadata, false) || old.spec != new.spec
}

/// True if an endpoints update must reach the edge: subsets, or metadata other than
/// resourceVersion/generation/annotations, changed.
pub fn endpoints_changed(old: &Endpoints, new: &Endpoints) -> bool {
    old.subsets != new.subsets
        || meta_for_compare(&old.metadata, true) != meta_for_compare(&new.metadata, true)
}

/// Config maps and secrets a pod references: (config maps, secrets) as `<ns>/<name>`.
pub fn pod_references(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let ns = pod.namespace().unwrap_or_default();
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    let Some(spec) = &pod.spec else {
        return (cms, secrets);
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(n) = v.config_map.as_ref().map(|c| &c.name) {
            cms.push(format!("{ns}/{n}"));
        }
        if let Some(n) = v.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            secrets.push(format!("{ns}/{n}"));
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                cms.push(format!("{ns}/{}", r.name));
            }
            if let Some(r) = &e.secret_ref {
                secrets.push(format!("{ns}/{}", r.name));
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        secrets.push(format!("{ns}/{}", s.name));
    }
    (cms, secrets)
}

fn pod_node(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

/// True if `n` carries [`EDGE_NODE_LABEL`].
pub fn is_edge_node(n: &Node) -> bool {
    n.labels().contains_key(EDGE_NODE_LABEL)
}

/// A node event as a watch of edge nodes only would have delivered it: a node that loses the
/// label is deleted, a non-edge node in a relist is left out (so the relist reports it gone if it
/// was known).
fn edge_nodes_only(e: Event<Node>) -> Option<Event<Node>> {
    match e {
        Event::Apply(n) if !is_edge_node(&n) => Some(Event::Delete(n)),
        Event::InitApply(n) if !is_edge_node(&n) => None,
        e => Some(e),
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Downstream {
    /// A controller that will watch through `client` and send through `hub`.
    pub fn new(client: Client, hub: CloudHub) -> Self {
        Self {
            client,
            hub,
            metrics: ControllerHandle::default(),
            caches: Caches::default(),
            nodes: Tracker::new(|n| n.name_any(), node_ready),
            pods: Tracker::new(ns_name, Pod::clone),
            configmaps: Tracker::new(ns_name, rv_uid),
            secrets: Tracker::new(ns_name, rv_uid),
            services: Tracker::new(ns_name, Service::clone),
            endpoints: Tracker::new(ns_name, Endpoints::clone),
            configmap_nodes: HashMap::new(),
            secret_nodes: HashMap::new(),
            lists_pending: Vec::new(),
        }
    }

    /// Counts its work in `metrics` (`controller_*{controller="edgecontroller"}`).
    pub fn with_metrics(mut self, metrics: ControllerHandle) -> Self {
        self.metrics = metrics;
        self
    }

    /// Feeds `caches` from its watches (by default it feeds caches nobody reads).
    pub fn with_caches(mut self, caches: Caches) -> Self {
        self.caches = caches;
        self
    }

    /// Watches until the streams end (they do not: watch errors are retried with back-off).
    pub async fn run(mut self) {
        let c = &self.client;
        let all = watcher::Config::default();
        let streams = vec![
            watch(c, all.clone(), |e| Ev::Node(Box::new(e))),
            watch(c, watcher::Config::default().fields("spec.nodeName!="), |e| {
                Ev::Pod(Box::new(e))
            }),
            watch(c, all.clone(), |e| Ev::ConfigMap(Box::new(e))),
            watch(c, all.clone(), |e| Ev::Secret(Box::new(e))),
            watch(c, all.clone(), |e| Ev::Service(Box::new(e))),
            watch(c, all, |e| Ev::Endpoints(Box::new(e))),
        ];
        let mut events = stream::select_all(streams);
        info!("edgecontroller: watching nodes, pods, configmaps, secrets, services, endpoints");
        while let Some(ev) = events.next().await {
            self.handle(ev);
        }
    }

    fn handle(&mut self, ev: Ev) {
        self.metrics.event();
        match ev {
            Ev::Node(e) => {
                self.caches.nodes.apply(&e);
                let Some(e) = edge_nodes_only(*e) else { return };
                for ch in self.nodes.step(e) {
                    self.on_node(ch);
                }
            }
            Ev::Pod(e) => {
                self.caches.pods.apply(&e);
                for ch in self.pods.step(*e) {
                    self.on_pod(ch);
                }
            }
            Ev::ConfigMap(e) => {
                self.caches.configmaps.apply(&e);
                for ch in self.configmaps.step(*e) {
                    self.on_config(ch, kind::CONFIGMAP);
                }
            }
            Ev::Secret(e) => {
                self.caches.secrets.apply(&e);
                for ch in self.secrets.step(*e) {
                    self.on_config(ch, kind::SECRET);
                }
            }
            Ev::Service(e) => {
                self.caches.services.apply(&e);
                for ch in self.services.step(*e) {
                    self.on_service(ch);
                }
                self.flush_pending_lists();
            }
            Ev::Endpoints(e) => {
                self.caches.endpoints.apply(&e);
                for ch in self.endpoints.step(*e) {
                    self.on_endpoints(ch);
                }
                self.flush_pending_lists();
            }
        }
    }

    fn lists_synced(&self) -> bool {
        self.services.is_synced() && self.endpoints.is_synced()
    }

    fn flush_pending_lists(&mut self) {
        if self.lists_pending.is_empty() || !self.lists_synced() {
            return;
        }
        for node in std::mem::take(&mut self.lists_pending) {
            self.send_lists(&node);
        }
    }

    fn send(&self, m: Message) {
        send_counted(&self.hub, &self.metrics, m);
    }

    fn is_edge(&self, node: &str) -> bool {
        self.nodes.get(node).is_some()
    }

    // ---- nodes -------------------------------------------------------------------------------

    fn on_node(&mut self, ch: Change<Node, bool>) {
        let (name, became_ready) = match ch {
            Change::Added(n) => {
                let name = n.name_any();
                info!(node = %name, ready = node_ready(&n), "edge node known");
                // Pods bound before the node was known as an edge node, and what they mount.
                let mut configs = HashSet::new();
                for pod in self.pods.values().filter(|p| pod_node(p) == Some(name.as_str())) {
                    let operation = if pod.metadata.deletion_timestamp.is_some() {
                        op::UPDATE
                    } else {
                        op::INSERT
                    };
                    self.send(pod_message(&name, operation, pod));
                    let (cms, secrets) = pod_references(pod);
                    configs.extend(cms.into_iter().map(|k| (kind::CONFIGMAP, k)));
                    configs.extend(secrets.into_iter().map(|k| (kind::SECRET, k)));
                }
                for (kind, key) in &configs {
                    self.send_config(&name, kind, key);
                }
                (name, node_ready(&n))
            }
            Change::Modified { old, new } => (new.name_any(), node_ready(&new) && !old),
            Change::Deleted { key, .. } => {
                info!(node = %key, "edge node gone");
                if self.hub.is_ha() {
                    let hub = self.hub.clone();
                    tokio::spawn(async move { hub.forget_node(&key).await });
                }
                return;
            }
        };
        if became_ready {
            if self.lists_synced() {
                self.send_lists(&name);
            } else if !self.lists_pending.contains(&name) {
                self.lists_pending.push(name);
            }
        }
    }

    /// What a node gets when it turns Ready: all services, the pods behind each, all endpoints.
    fn send_lists(&self, node: &str) {
        let services: Vec<Service> = self.services.values().cloned().collect();
        let items: Vec<Value> = services.iter().map(to_json).collect();
        self.send(messages::list(node, messages::SERVICE_LIST, items));
        self.spawn_pod_lists(services, vec![node.to_owned()]);
        let eps: Vec<Value> = self.endpoints.values().map(to_json).collect();
        self.send(messages::list(node, messages::ENDPOINTS_LIST, eps));
    }

    // ---- pods --------------------------------------------------------------------------------

    fn on_pod(&mut self, ch: Change<Pod, Pod>) {
        match ch {
            Change::Added(pod) => {
                self.remember_references(&pod);
                let Some(node) = pod_node(&pod).filter(|n| self.is_edge(n)) else {
                    return;
                };
                let operation = if pod.metadata.deletion_timestamp.is_some() {
                    op::UPDATE
                } else {
                    op::INSERT
                };
                self.send(pod_message(node, operation, &pod));
            }
            Change::Modified { old, new } => {
                self.remember_references(&new);
                let Some(node) = pod_node(&new).filter(|n| self.is_edge(n)) else {
                    return;
                };
                if pod_changed(&old, &new) {
                    self.send(pod_message(node, op::UPDATE, &new));
                }
            }
            Change::Deleted { old, obj, .. } => {
                let pod = obj.unwrap_or(old);
                let Some(node) = pod_node(&pod).filter(|n| self.is_edge(n)) else {
                    return;
                };
                self.send(pod_message(node, op::DELETE, &pod));
            }
        }
    }

    /// Records which config maps and secrets `pod` makes its node need, and sends the node those
    /// it did not need before and that exist already: an object created before its pod (or whose
    /// event was handled first, as after a cloudcore restart, when every watch starts with a full
    /// list) would otherwise reach the edge only when it next changes.
    fn remember_references(&mut self, pod: &Pod) {
        let Some(node) = pod_node(pod) else { return };
        let (cms, secrets) = pod_references(pod);
        let mut new = Vec::new();
        for k in cms {
            if self
                .configmap_nodes
                .entry(k.clone())
                .or_default()
                .insert(node.to_owned())
            {
                new.push((kind::CONFIGMAP, k));
            }
        }
        for k in secrets {
            if self
                .secret_nodes
                .entry(k.clone())
                .or_default()
                .insert(node.to_owned())
            {
                new.push((kind::SECRET, k));
            }
        }
        if self.is_edge(node) {
            for (kind, key) in new {
                self.send_config(node, kind, &key);
            }
        }
    }

    /// Sends the cached config map or secret `key` to `node`, when the cache has it.
    fn send_config(&self, node: &str, kind: &'static str, key: &str) {
        if let Some((_, m)) = config_message(&self.caches, node, kind, key) {
            self.send(m);
        }
    }

    // ---- config maps and secrets --------------------------------------------------------------

    fn on_config<K>(&mut self, ch: Change<K, (String, String)>, kind: &'static str)
    where
        K: ResourceExt + serde::Serialize,
    {
        let secret = kind == kind::SECRET;
        let (key, operation, rv, content) = match ch {
            Change::Added(o) => (
                ns_name(&o),
                if secret { op::UPDATE } else { op::INSERT },
                o.resource_version().unwrap_or_default(),
                to_json(&o),
            ),
            Change::Modified { new, .. } => (
                ns_name(&new),
                op::UPDATE,
                new.resource_version().unwrap_or_default(),
                to_json(&new),
            ),
            Change::Deleted { key, old, obj } => {
                let content = match &obj {
                    Some(o) => to_json(o),
                    None => {
                        let (ns, name) = split_key(&key);
                        messages::stub(ns, name, &old.1)
                    }
                };
                let rv = obj.and_then(|o| o.resource_version()).unwrap_or(old.0);
                (key, op::DELETE, rv, content)
            }
        };
        let map = if secret {
            &self.secret_nodes
        } else {
            &self.configmap_nodes
        };
        let targets: Vec<String> = map
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|n| self.is_edge(n))
            .cloned()
            .collect();
        let (ns, name) = split_key(&key);
        for node in &targets {
            self.send(messages::object(
                node,
                operation,
                ns,
                kind,
                name,
                &rv,
                content.clone(),
            ));
        }
        if operation == op::DELETE {
            if secret {
                self.secret_nodes.remove(&key);
            } else {
                self.configmap_nodes.remove(&key);
            }
        }
    }

    // ---- services and endpoints ---------------------------------------------------------------

    fn to_all_nodes(&self, operation: &str, kind: &str, key: &str, rv: &str, content: &Value) {
        let (ns, name) = split_key(key);
        for node in self.nodes.keys() {
            self.send(messages::object(
                node,
                operation,
                ns,
                kind,
                name,
                rv,
                content.clone(),
            ));
        }
    }

    fn on_service(&mut self, ch: Change<Service, Service>) {
        match ch {
            Change::Added(s) => {
                let rv = s.resource_version().unwrap_or_default();
                self.to_all_nodes(op::INSERT, kind::SERVICE, &ns_name(&s), &rv, &to_json(&s));
            }
            Change::Modified { new, .. } => {
                let rv = new.resource_version().unwrap_or_default();
                self.to_all_nodes(op::UPDATE, kind::SERVICE, &ns_name(&new), &rv, &to_json(&new));
            }
            Change::Deleted { key, old, obj } => {
                let s = obj.unwrap_or(old);
                let rv = s.resource_version().unwrap_or_default();
                self.to_all_nodes(op::DELETE, kind::SERVICE, &key, &rv, &to_json(&s));
            }
        }
    }

    fn on_endpoints(&mut self, ch: Change<Endpoints, Endpoints>) {
        let (key, operation, ep) = match ch {
            Change::Added(e) => (ns_name(&e), op::INSERT, e),
            Change::Modified { old, new } => {
                if !endpoints_changed(&old, &new) {
                    return;
                }
                (ns_name(&new), op::UPDATE, new)
            }
            Change::Deleted { key, old, obj } => {
                let e = obj.unwrap_or(old);
                let rv = e.resource_version().unwrap_or_default();
                self.to_all_nodes(op::DELETE, kind::ENDPOINTS, &key, &rv, &to_json(&e));
                return;
            }
        };
        let rv = ep.resource_version().unwrap_or_default();
        self.to_all_nodes(operation, kind::ENDPOINTS, &key, &rv, &to_json(&ep));
        if let Some(svc) = self.services.get(&key) {
            let nodes: Vec<String> = self.nodes.keys().cloned().collect();
            self.spawn_pod_lists(vec![svc.clone()], nodes);
        }
    }

    /// For each service with a selector: list its pods (limit 100, as v1.2) and send
    /// `<ns>/podlist/<svc>` to `nodes`. Runs in a task: API calls must not stall the watches.
    fn spawn_pod_lists(&self, services: Vec<Service>, nodes: Vec<String>) {
        if services.is_empty() || nodes.is_empty() {
            return;
        }
        let (client, hub) = (self.client.clone(), self.hub.clone());
        tokio::spawn(async move {
            for svc in services {
                let Some(sel) = svc
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .filter(|s| !s.is_empty())
                else {
                    continue;
                };
                let ns = svc.namespace().unwrap_or_default();
                let name = svc.name_any();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let lp = ListParams::default().labels(&selector(sel)).limit(100);
                let pods = match api.list(&lp).await {
                    Ok(l) => l.items,
                    Err(e) => {
                        warn!(service = %format!("{ns}/{name}"), "cannot list the service's pods: {e}");
                        continue;
                    }
                };
                if pods.is_empty() {
                    continue;
                }
                let items: Vec<Value> = pods.iter().map(to_json).collect();
                for node in &nodes {
                    let m = messages::list(node, &messages::pod_list_resource(&ns, &name), items.clone());
                    if let Err(e) = hub.send(m) {
                        warn!(%node, "cloudhub refused a podlist: {e}");
                    }
                }
            }
        });
    }
}

fn pod_message(node: &str, operation: &str, pod: &Pod) -> Message {
    messages::object(
        node,
        operation,
        &pod.namespace().unwrap_or_default(),
        kind::POD,
        &pod.name_any(),
        &pod.resource_version().unwrap_or_default(),
        to_json(pod),
    )
}

/// `k=v,k2=v2` from a selector map.
pub fn selector(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapVolumeSource, Container, EnvFromSource, LocalObjectReference, PodSpec, PodStatus,
        SecretEnvSource, SecretVolumeSource, Volume,
    };

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("edge-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    env_from: Some(vec![EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: "env-secret".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                volumes: Some(vec![
                    Volume {
                        name: "v".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "cm".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "s".into(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some("vol-secret".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                image_pull_secrets: Some(vec![LocalObjectReference { name: "pull".into() }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn references_cover_volumes_env_from_and_pull_secrets() {
        let (cms, mut secrets) = pod_references(&pod());
        secrets.sort();
        assert_eq!(cms, ["ns/cm"]);
        assert_eq!(secrets, ["ns/env-secret", "ns/pull", "ns/vol-secret"]);
    }

    #[test]
    fn status_only_and_version_only_pod_changes_are_not_forwarded() {
        let old = pod();
        let mut new = pod();
        new.metadata.resource_version = Some("2".into());
        new.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        assert!(!pod_changed(&old, &new));
        new.metadata.labels = Some([("a".to_owned(), "b".to_owned())].into());
        assert!(pod_changed(&old, &new));
    }

    #[test]
    fn endpoints_annotation_changes_are_not_forwarded() {
        let old = Endpoints::default();
        let mut new = Endpoints::default();
        new.metadata.annotations = Some([("x".to_owned(), "y".to_owned())].into());
        assert!(!endpoints_changed(&old, &new));
        new.subsets = Some(vec![]);
        assert!(endpoints_changed(&old, &new));
    }

    #[test]
    fn selector_string() {
        let m: BTreeMap<String, String> = [("app".into(), "web".into()), ("tier".into(), "fe".into())].into();
        assert_eq!(selector(&m), "app=web,tier=fe");
    }
}
