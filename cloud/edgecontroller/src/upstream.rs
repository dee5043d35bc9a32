//! Edge → Kubernetes: node registration and status, pod status, node annotations and remote
//! queries (`shared/spec/edgecontroller-devicecontroller.md` §3), plus node readiness from
//! CloudHub's connection events.
//!
//! Each node's messages are handled in order on that node's lane (so a pod's older status report
//! never overwrites a newer one), different nodes in parallel, at most `Options::workers` API
//! calls at a time. Lanes are bounded, so a slow API server applies back-pressure to CloudHub
//! instead of growing a queue without bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cloudhub::{CloudHub, HubEvent};
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Node, NodeCondition, NodeStatus, PersistentVolume, PersistentVolumeClaim, Pod,
    PodStatus, Secret, Service,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ke_core::Message;
use ke_core::names::{module, op, res};
use ke_core::resource::{Resource, kind, strip_node_prefix};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::downstream::EDGE_NODE_LABEL;
use crate::messages::{self, object_resource};
use crate::{Error, Options, Result};

/// Read-modify-write attempts of a status update that meets a conflict. A node that has just
/// registered is modified several times in its first second by kube-controller-manager (taints,
/// annotations, its own status fields): two attempts were not always enough, and the edge's node
/// status was dropped (seen in a test against a freshly started control plane).
const CONFLICT_ATTEMPTS: u32 = 5;

/// `NodeStatusRequest` as edged sends it (Go field names, no JSON tags).
#[derive(Debug, Deserialize)]
pub struct NodeStatusRequest {
    /// Node UID (unused by the cloud, as in v1.2).
    #[serde(rename = "UID", default)]
    pub uid: String,
    /// The node status to write.
    #[serde(rename = "Status", default)]
    pub status: NodeStatus,
    /// Extended resources (e.g. GPUs), resource name → entries.
    #[serde(rename = "ExtendResources", default)]
    pub extend_resources: Option<BTreeMap<String, Vec<Value>>>,
}

/// `PodStatusRequest` as edged sends it.
#[derive(Debug, Deserialize)]
pub struct PodStatusRequest {
    /// Pod UID.
    #[serde(rename = "UID", default)]
    pub uid: String,
    /// Pod name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// Pod status.
    #[serde(rename = "Status", default)]
    pub status: PodStatus,
}

/// The upstream half of the controller.
pub struct Upstream {
    client: Client,
    hub: CloudHub,
    opts: Options,
    metrics: cloudhub::metrics::ControllerHandle,
    takeovers: Option<mpsc::UnboundedSender<String>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Decodes a message's content: an object, or a string holding JSON (how Go peers often send it).
pub fn content<T: DeserializeOwned>(m: &Message) -> Result<T> {
    let r = match &m.content {
        Value::String(s) => serde_json::from_str(s),
        v => serde_json::from_value(v.clone()),
    };
    r.map_err(|e| Error::Content {
        resource: m.resource().to_owned(),
        reason: e.to_string(),
    })
}

/// Stamps condition heartbeat/transition times older than `max_age` with `now` (v1.2 does this
/// so an edge with a skewed clock does not look dead to the node lifecycle controller).
pub fn refresh_condition_times(conds: &mut [NodeCondition], now: Timestamp, max_age: std::time::Duration) {
    let max = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let stale = |t: &Option<Time>| t.as_ref().is_none_or(|t| now.as_second() - t.0.as_second() > max);
    for c in conds {
        if stale(&c.last_heartbeat_time) {
            c.last_heartbeat_time = Some(Time(now));
        }
        if stale(&c.last_transition_time) {
            c.last_transition_time = Some(Time(now));
        }
    }
}

/// The pod status to write: `new` from the edge merged with what the API has (`old`): the
/// transition time of an unchanged Ready/Initialized condition and `startTime` are kept, container
/// statuses sorted by name.
pub fn merge_pod_status(old: Option<&PodStatus>, mut new: PodStatus) -> PodStatus {
    if let Some(old) = old {
        for c in new.conditions.iter_mut().flatten() {
            if c.type_ != "Ready" && c.type_ != "Initialized" {
                continue;
            }
            let prev = old.conditions.iter().flatten().find(|o| o.type_ == c.type_);
            if let Some(p) = prev.filter(|p| p.status == c.status) {
                c.last_transition_time = p.last_transition_time.clone();
            }
        }
        if old.start_time.is_some() {
            new.start_time = old.start_time.clone();
        }
    }
    if let Some(cs) = new.container_statuses.as_mut() {
        cs.sort_by(|a, b| a.name.cmp(&b.name));
    }
    new
}

/// Annotations v1.2 writes for `ExtendResources`: `<resource name>` = JSON of its entries, and
/// for `nvidia.com/gpu` also `huawei.com/gpu-status` = `[{"id":<entry name>,"healthy":true}]`.
pub fn extend_resource_annotations(ext: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, entries) in ext {
        if name == "nvidia.com/gpu" {
            let gpus: Vec<Value> = entries
                .iter()
                .map(|e| serde_json::json!({"id": e.get("name").cloned().unwrap_or_default(), "healthy": true}))
                .collect();
            out.insert("huawei.com/gpu-status".to_owned(), Value::from(gpus).to_string());
        }
        out.insert(name.clone(), Value::from(entries.clone()).to_string());
    }
    out
}

fn pod_finished(p: &PodStatus) -> bool {
    let phase_done = matches!(p.phase.as_deref(), Some("Succeeded" | "Failed"));
    let none_running = p
        .container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_none_or(|s| s.running.is_none()));
    phase_done && none_running
}

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Upstream {
    /// A handler calling the API through `client` and replying through `hub`.
    pub fn new(client: Client, hub: CloudHub, opts: Options) -> Self {
        let metrics = opts.metrics.controller("upstream");
        Self {
            client,
            hub,
            opts,
            metrics,
            takeovers: None,
        }
    }

    /// HA mode: every node this cloudcore starts serving is named on `tx` (the synccontroller
    /// then sends it what ObjectSync says it lacks, at once).
    pub fn with_takeovers(mut self, tx: mpsc::UnboundedSender<String>) -> Self {
        self.takeovers = Some(tx);
        self
    }

    /// Consumes CloudHub's events until the channel closes.
    ///
    /// Each node has its own lane: its messages are handled one after another in arrival order
    /// (a pod's `Pending` report must not overtake its `Running` one), while different nodes proceed
    /// in parallel, at most `workers` API calls at a time.
    pub async fn run(self, mut events: mpsc::Receiver<HubEvent>) {
        let sem = Arc::new(Semaphore::new(self.opts.workers.max(1)));
        let this = Arc::new(self);
        let mut lanes: HashMap<String, mpsc::Sender<Job>> = HashMap::new();
        while let Some(ev) = events.recv().await {
            let orphan = matches!(&ev, HubEvent::Orphaned(_));
            let (node, job): (String, Job) = match ev {
                HubEvent::Upstream(m) => {
                    if m.source() == module::TWIN {
                        debug!(resource = %m.resource(), "twin message: for devicecontroller");
                        continue;
                    }
                    let node = strip_node_prefix(m.resource())
                        .map(|(n, _)| n.to_owned())
                        .unwrap_or_default();
                    let t = this.clone();
                    (
                        node,
                        Box::pin(async move {
                            let resource = m.resource().to_owned();
                            if let Err(e) = t.handle(&m).await {
                                t.metrics.error();
                                warn!(%resource, operation = %m.operation(), "edge message failed: {e}");
                            }
                        }),
                    )
                }
                HubEvent::Connected(n) => {
                    info!(node = %n, "edge connected");
                    if let Some(tx) = &this.takeovers {
                        let _ = tx.send(n);
                    }
                    continue;
                }
                HubEvent::Disconnected(n) | HubEvent::Orphaned(n) => {
                    let t = this.clone();
                    let node = n.clone();
                    (
                        node,
                        Box::pin(async move {
                            // HA: a node that moved to another cloudcore meanwhile is not ours
                            // to mark; an orphan's Lease was cleared by this cloudcore.
                            if t.hub.is_ha() && !t.hub.owns(&n) && !orphan {
                                debug!(node = %n, "served by another cloudcore now: not marked NotReady");
                                return;
                            }
                            if let Err(e) = t.mark_disconnected(&n).await {
                                t.metrics.error();
                                warn!(node = %n, "cannot mark the node NotReady: {e}");
                            }
                        }),
                    )
                }
                HubEvent::Acked { node, message } => {
                    // On the node's lane: an insert's ObjectSync is written before its delete's
                    // removal.
                    let t = this.clone();
                    (
                        node.clone(),
                        Box::pin(async move {
                            if !t.hub.owns(&node) {
                                debug!(%node, "ack on a node another cloudcore serves now: not recorded");
                                return;
                            }
                            if let Err(e) = crate::sync::record_ack(&t.client, &node, &message).await {
                                t.metrics.error();
                                warn!(%node, resource = %message.resource(), "objectsync not recorded: {e}");
                            }
                        }),
                    )
                }
            };
            let lane = lanes.entry(node).or_insert_with(|| {
                let (tx, mut rx) = mpsc::channel::<Job>(256);
                let (sem, metrics) = (sem.clone(), this.metrics.clone());
                tokio::spawn(async move {
                    while let Some(job) = rx.recv().await {
                        let Ok(permit) = sem.clone().acquire_owned().await else {
                            return;
                        };
                        job.await;
                        drop(permit);
                        metrics.dequeued();
                        metrics.event();
                    }
                });
                tx
            });
            // A full lane (slow API server) makes this loop wait: back-pressure reaches CloudHub
            // instead of a queue growing without bound.
            this.metrics.enqueued();
            if lane.send(job).await.is_err() {
                this.metrics.dequeued();
                this.metrics.error();
                warn!("edgecontroller lane stopped: edge message dropped");
            }
        }
    }

    /// Handles one edge message (resource `node/<node>/<ns>/<type>[/<name>]`).
    pub async fn handle(&self, m: &Message) -> Result<()> {
        let Some((node, edge)) = strip_node_prefix(m.resource()) else {
            debug!(resource = %m.resource(), "not a node resource: dropped");
            return Ok(());
        };
        let Some(r) = Resource::parse(edge) else {
            debug!(resource = %m.resource(), "unparsable resource: dropped");
            return Ok(());
        };
        if !self.hub.owns(node) {
            debug!(resource = %m.resource(), "node served by another cloudcore now (HA): dropped");
            return Ok(());
        }
        match (r.kind, m.operation()) {
            (kind::NODESTATUS, op::INSERT) => self.register(m, node, r).await,
            (kind::NODESTATUS, op::UPDATE) => self.node_status(m, node, r).await,
            (kind::PODSTATUS, op::UPDATE) => self.pod_status(m, node, r).await,
            (kind::NODE, op::UPDATE) => self.node_update(m, node, r).await,
            (_, op::QUERY) => self.query(m, node, r).await,
            (k, o) => {
                debug!(resource = %m.resource(), kind = k, operation = o, "not for edgecontroller: dropped");
                Ok(())
            }
        }
    }

    fn reply(&self, m: Message) -> Result<()> {
        let resource = m.resource().to_owned();
        self.hub
            .send(m)
            .map_err(|source| Error::Hub { resource, source })?;
        self.metrics.sent();
        Ok(())
    }

    fn node_reply(&self, req: &Message, node: &str, r: Resource<'_>, rv: &str, ok: bool) -> Result<()> {
        let content = if ok { res::ACK_OK } else { "" };
        let resource = object_resource(node, r.namespace, kind::NODE, r.name);
        self.reply(messages::reply(req, resource, rv, Value::from(content)))
    }

    async fn register(&self, m: &Message, node: &str, r: Resource<'_>) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let name = r.name;
        let exists = api
            .get_opt(name)
            .await
            .map_err(api_err(format!("get node {name}")));
        let created = match exists {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                let mut n: Node = content(m)?;
                n.metadata = Default::default();
                n.metadata.name = Some(name.to_owned());
                let labels = n.metadata.labels.get_or_insert_default();
                labels.insert("name".into(), name.to_owned());
                labels.insert(EDGE_NODE_LABEL.into(), String::new());
                match api.create(&PostParams::default(), &n).await {
                    Ok(_) => {
                        info!(node = %name, "edge node registered");
                        Ok(())
                    }
                    Err(e) => Err(api_err(format!("create node {name}"))(e)),
                }
            }
            Err(e) => Err(e),
        };
        self.node_reply(m, node, r, "", created.is_ok())?;
        created
    }

    async fn node_status(&self, m: &Message, node: &str, r: Resource<'_>) -> Result<()> {
        let req: NodeStatusRequest = content(m)?;
        let api: Api<Node> = Api::all(self.client.clone());
        let name = r.name;
        if let Some(ann) = req.extend_resources.as_ref().map(extend_resource_annotations) {
            // Annotations are metadata: written through the node itself, not its status.
            let patch = serde_json::json!({ "metadata": { "annotations": ann } });
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
                Err(e) => return Err(api_err(format!("annotate node {name}"))(e)),
            }
        }
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let Some(mut n) = api
                .get_opt(name)
                .await
                .map_err(api_err(format!("get node {name}")))?
            else {
                debug!(node = %name, "status for a node that does not exist: ignored");
                return Ok(());
            };
            let mut status = req.status.clone();
            refresh_condition_times(
                status.conditions.as_deref_mut().unwrap_or_default(),
                Timestamp::now(),
                self.opts.node_update_frequency,
            );
            status.volumes_attached = n.status.as_ref().and_then(|s| s.volumes_attached.clone());
            n.status = Some(status);
            match api.replace_status(name, &PostParams::default(), &n).await {
                Ok(updated) => {
                    let rv = updated.resource_version().unwrap_or_default();
                    return self.node_reply(m, node, r, &rv, true);
                }
                Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => continue,
                Err(e) => return Err(api_err(format!("update status of node {name}"))(e)),
            }
        }
        Ok(())
    }

    async fn node_update(&self, m: &Message, node: &str, r: Resource<'_>) -> Result<()> {
        let from_edge: Node = content(m)?;
        let api: Api<Node> = Api::all(self.client.clone());
        let name = r.name;
        let mut n = api.get(name).await.map_err(api_err(format!("get node {name}")))?;
        if let Some(a) = from_edge.metadata.annotations {
            n.metadata.annotations.get_or_insert_default().extend(a);
        }
        let updated = api
            .replace(name, &PostParams::default(), &n)
            .await
            .map_err(api_err(format!("update node {name}")))?;
        self.node_reply(m, node, r, &updated.resource_version().unwrap_or_default(), true)
    }

    async fn pod_status(&self, m: &Message, node: &str, r: Resource<'_>) -> Result<()> {
        let reqs: Vec<PodStatusRequest> = if r.name.is_empty() {
            content(m)?
        } else {
            vec![content(m)?]
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), r.namespace);
        for req in reqs {
            if let Err(e) = self.one_pod_status(&api, node, r.namespace, req).await {
                warn!(%node, "pod status: {e}");
            }
        }
        Ok(())
    }

    async fn one_pod_status(
        &self,
        api: &Api<Pod>,
        node: &str,
        ns: &str,
        req: PodStatusRequest,
    ) -> Result<()> {
        let name = req.name.as_str();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let Some(mut pod) = api
                .get_opt(name)
                .await
                .map_err(api_err(format!("get pod {ns}/{name}")))?
            else {
                // Gone in the cloud: tell the edge to delete it (no RV, as v1.2).
                let del = messages::object(
                    node,
                    op::DELETE,
                    ns,
                    kind::POD,
                    name,
                    "",
                    messages::stub(ns, name, ""),
                );
                return self.reply(del);
            };
            let status = merge_pod_status(pod.status.as_ref(), req.status.clone());
            let finished = pod.metadata.deletion_timestamp.is_some() && pod_finished(&status);
            pod.status = Some(status);
            match api.replace_status(name, &PostParams::default(), &pod).await {
                Ok(_) => {}
                Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => continue,
                Err(e) => return Err(api_err(format!("update status of pod {ns}/{name}"))(e)),
            }
            if finished {
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: pod.uid().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                api.delete(name, &dp)
                    .await
                    .map_err(api_err(format!("delete finished pod {ns}/{name}")))?;
                info!(pod = %format!("{ns}/{name}"), "terminated at the edge: deleted");
            }
            return Ok(());
        }
        Ok(())
    }

    async fn query(&self, m: &Message, node: &str, r: Resource<'_>) -> Result<()> {
        let (ar, namespaced) = match r.kind {
            kind::CONFIGMAP => (ApiResource::erase::<ConfigMap>(&()), true),
            kind::SECRET => (ApiResource::erase::<Secret>(&()), true),
            kind::SERVICE => (ApiResource::erase::<Service>(&()), true),
            kind::ENDPOINTS => (ApiResource::erase::<Endpoints>(&()), true),
            kind::PERSISTENTVOLUMECLAIM => (ApiResource::erase::<PersistentVolumeClaim>(&()), true),
            kind::PERSISTENTVOLUME => (ApiResource::erase::<PersistentVolume>(&()), false),
            kind::VOLUMEATTACHMENT => (ApiResource::erase::<VolumeAttachment>(&()), false),
            kind::NODE => (ApiResource::erase::<Node>(&()), false),
            other => {
                debug!(kind = other, "query for an unsupported kind: dropped");
                return Ok(());
            }
        };
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(self.client.clone(), r.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        // As v1.2: a miss gets no reply (the edge times out).
        let what = format!("query {}/{}/{}", r.namespace, r.kind, r.name);
        let Some(obj) = api.get_opt(r.name).await.map_err(api_err(what.clone()))? else {
            debug!(%what, "not found: no reply");
            return Ok(());
        };
        let ns = obj.namespace().unwrap_or_else(|| r.namespace.to_owned());
        let rv = obj.resource_version().unwrap_or_default();
        let resource = object_resource(node, &ns, r.kind, r.name);
        let body = serde_json::to_value(&obj).map_err(|e| Error::Content {
            resource: resource.clone(),
            reason: e.to_string(),
        })?;
        self.reply(messages::reply(m, resource, &rv, body))
    }

    /// The link to `node` is down: its `Ready` condition becomes `Unknown` (kubectl: NotReady).
    /// Pods are left alone — the edge keeps running them while offline.
    pub async fn mark_disconnected(&self, node: &str) -> Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let Some(mut n) = api
                .get_opt(node)
                .await
                .map_err(api_err(format!("get node {node}")))?
            else {
                return Ok(());
            };
            if !n.labels().contains_key(EDGE_NODE_LABEL) {
                return Ok(());
            }
            let now = Some(Time(Timestamp::now()));
            let conds = n
                .status
                .get_or_insert_default()
                .conditions
                .get_or_insert_default();
            let ready = match conds.iter_mut().find(|c| c.type_ == "Ready") {
                Some(c) => c,
                None => {
                    conds.push(NodeCondition {
                        type_: "Ready".into(),
                        ..Default::default()
                    });
                    let last = conds.len() - 1;
                    &mut conds[last]
                }
            };
            if ready.status != "Unknown" {
                ready.last_transition_time = now.clone();
            }
            ready.status = "Unknown".into();
            ready.reason = Some("EdgeDisconnected".into());
            ready.message = Some("cloudhub lost the link to the edge; its pods keep running there".into());
            ready.last_heartbeat_time = now;
            match api.replace_status(node, &PostParams::default(), &n).await {
                Ok(_) => {
                    info!(%node, "edge disconnected: node Ready=Unknown");
                    return Ok(());
                }
                Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => continue,
                Err(e) => return Err(api_err(format!("update status of node {node}"))(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateRunning, ContainerStatus, PodCondition};
    use serde_json::json;

    #[test]
    fn decodes_v12_requests_from_object_or_string() {
        let body = serde_json::json!({"UID":"u1","Status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]},"ExtendResources":null});
        let m = Message::new(
            "edged",
            "meta",
            "update",
            "node/n/default/nodestatus/n",
            body.clone(),
        );
        let r: NodeStatusRequest = content(&m).unwrap();
        assert_eq!(r.uid, "u1");
        assert_eq!(r.status.phase.as_deref(), Some("Running"));
        let m = Message::new("edged", "meta", "update", "x", Value::String(body.to_string()));
        let r: NodeStatusRequest = content(&m).unwrap();
        assert!(r.extend_resources.is_none());
        let m = Message::new(
            "edged",
            "meta",
            "update",
            "x",
            serde_json::json!([{"UID":"p","Name":"nginx","Status":{}}]),
        );
        let r: Vec<PodStatusRequest> = content(&m).unwrap();
        assert_eq!(r[0].name, "nginx");
        let bad = Message::new(
            "edged",
            "meta",
            "update",
            "node/n/default/podstatus/p",
            serde_json::json!(3),
        );
        let e = content::<PodStatusRequest>(&bad).unwrap_err().to_string();
        assert!(e.contains("node/n/default/podstatus/p"), "{e}");
    }

    #[test]
    fn gpu_extend_resources_become_annotations() {
        let ext: BTreeMap<String, Vec<Value>> = [(
            "nvidia.com/gpu".to_owned(),
            vec![json!({"name":"nvidia0","type":"Tesla K80","capacity":"11441Mi"})],
        )]
        .into();
        let a = extend_resource_annotations(&ext);
        assert_eq!(a["huawei.com/gpu-status"], r#"[{"healthy":true,"id":"nvidia0"}]"#);
        assert_eq!(
            a["nvidia.com/gpu"],
            r#"[{"capacity":"11441Mi","name":"nvidia0","type":"Tesla K80"}]"#
        );
    }

    #[test]
    fn stale_condition_times_become_now() {
        let now = Timestamp::now();
        let old = Timestamp::from_second(now.as_second() - 3600).unwrap();
        let mut c = vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_heartbeat_time: Some(Time(old)),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        }];
        refresh_condition_times(&mut c, now, std::time::Duration::from_secs(10));
        assert_eq!(c[0].last_heartbeat_time, Some(Time(now)));
        assert_eq!(c[0].last_transition_time, Some(Time(now)));
    }

    #[test]
    fn pod_status_merge_keeps_transition_and_start_times() {
        let t0 = Time(Timestamp::from_second(1_000).unwrap());
        let t1 = Time(Timestamp::from_second(2_000).unwrap());
        let cond = |t: &Time, s: &str| PodCondition {
            type_: "Ready".into(),
            status: s.into(),
            last_transition_time: Some(t.clone()),
            ..Default::default()
        };
        let old = PodStatus {
            conditions: Some(vec![cond(&t0, "True")]),
            start_time: Some(t0.clone()),
            ..Default::default()
        };
        let cs = |n: &str| ContainerStatus {
            name: n.into(),
            ..Default::default()
        };
        let new = PodStatus {
            conditions: Some(vec![cond(&t1, "True")]),
            start_time: Some(t1.clone()),
            container_statuses: Some(vec![cs("b"), cs("a")]),
            ..Default::default()
        };
        let m = merge_pod_status(Some(&old), new.clone());
        assert_eq!(
            m.conditions.as_ref().unwrap()[0].last_transition_time,
            Some(t0.clone())
        );
        assert_eq!(m.start_time, Some(t0));
        let names: Vec<_> = m
            .container_statuses
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        // A changed status keeps the edge's transition time.
        let flipped = PodStatus {
            conditions: Some(vec![cond(&t1, "False")]),
            ..Default::default()
        };
        let m = merge_pod_status(Some(&old), flipped);
        assert_eq!(m.conditions.unwrap()[0].last_transition_time, Some(t1));
    }

    #[test]
    fn finished_means_done_phase_and_nothing_running() {
        let mut s = PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        };
        assert!(pod_finished(&s));
        s.container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert!(!pod_finished(&s));
        s.phase = Some("Running".into());
        s.container_statuses = None;
        assert!(!pod_finished(&s));
    }
}
