//! The `edged` beehive module: routes pod messages to per-pod workers, rebuilds the pod set from
//! metaManager at start, and removes sandboxes of this node that no wanted pod owns.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use ke_beehive::{Module, ModuleContext};
use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_core::resource::Resource;
use ke_cri::{CriClient, api};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::http::{self, PodTable};
use crate::node::NodeLoop;
use crate::options::EdgedOptions;
use crate::pod::{self, NodeContext, PodId};
use crate::worker::{self, BackoffPolicy, Event, WorkerEnv};

/// The edged module. Build with [`Edged::new`], register on a `ke_beehive::Core`.
#[derive(Debug)]
pub struct Edged {
    opts: EdgedOptions,
    cri: CriClient,
}

impl Edged {
    /// A module for `opts`. Fails on an unusable runtime endpoint (the runtime itself is not
    /// contacted yet).
    pub fn new(opts: EdgedOptions) -> Result<Self> {
        let cri = CriClient::new(&opts.runtime_endpoint, opts.runtime_request_timeout)?;
        Ok(Self { opts, cri })
    }
}

struct WorkerHandle {
    uid: String,
    tx: mpsc::Sender<Event>,
}

/// Decodes a pod from message content: an object, or a string holding the JSON (metaManager's
/// stored rows, QUIC).
pub(crate) fn decode_pod(resource: &str, content: &Value) -> Result<k8s::Pod> {
    let r = match content {
        Value::String(s) => serde_json::from_str(s),
        v => serde_json::from_value(v.clone()),
    };
    r.map_err(|source| Error::BadPod {
        resource: resource.to_owned(),
        source,
    })
}

impl Module for Edged {
    fn name(&self) -> &str {
        module::EDGED
    }

    fn group(&self) -> &str {
        group::EDGED
    }

    fn enabled(&self) -> bool {
        self.opts.enabled
    }

    async fn run(self: Box<Self>, ctx: ModuleContext) {
        let ModuleContext {
            beehive,
            mut mailbox,
            cancel,
            tracker,
        } = ctx;
        let o = &self.opts;
        let env = WorkerEnv {
            cri: self.cri.clone(),
            hive: beehive.clone(),
            ctx: NodeContext {
                node_name: o.node_name.clone(),
                node_ip: o.node_ip.clone(),
                cgroup_root: o.cgroup_root.clone(),
                log_root: o.pod_log_root.clone(),
            },
            relist: o.relist_period,
            report_timeout: o.report_timeout,
            pods: PodTable::default(),
            root: o.root_directory.clone(),
            volume_resync: o.volume_resync_period,
        };
        if let Some(addr) = &o.read_only_address {
            match http::serve(addr, env.pods.clone(), cancel.clone()).await {
                Ok(a) => tracing::info!(address = %a, "read-only endpoint (/pods, /healthz) listening"),
                Err(e) => tracing::warn!(address = %addr, %e, "read-only endpoint not served"),
            }
        }
        let node_loop = NodeLoop {
            hive: beehive.clone(),
            cri: self.cri.clone(),
            node_name: o.node_name.clone(),
            node_ip: o.node_ip.clone(),
            namespace: o.register_node_namespace.clone(),
            register: o.register_node,
            period: o.node_status_update_frequency.max(Duration::from_secs(1)),
            reply_timeout: o
                .node_status_update_frequency
                .clamp(Duration::from_secs(5), Duration::from_secs(60)),
        };
        tracker.spawn(node_loop.run(cancel.clone()));
        let policy = BackoffPolicy {
            base: o.backoff_base,
            max: o.backoff_max,
        };
        match self.cri.version().await {
            Ok(v) => tracing::info!(runtime = %v.runtime_name, version = %v.runtime_version,
                api = %v.runtime_api_version, endpoint = %self.cri.endpoint(), "CRI runtime answers"),
            Err(e) => tracing::error!(%e, "CRI runtime does not answer; pods wait for it"),
        }
        if !o.pod_sandbox_image.is_empty() {
            // containerd takes the sandbox image from its own config; warn early if it is absent.
            match self.cri.image_status(&o.pod_sandbox_image).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(image = %o.pod_sandbox_image, "podSandboxImage is not in the runtime")
                }
                Err(e) => tracing::warn!(%e, "cannot check podSandboxImage"),
            }
        }
        let mut pods = Pods {
            workers: HashMap::new(),
            env,
            policy,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            done_tx: None,
        };
        let (done_tx, mut done_rx) = mpsc::channel::<(String, String)>(64);
        pods.done_tx = Some(done_tx);

        // Rebuild the pod set from metaManager's database, then collect orphans of this node.
        let initial = tokio::select! {
            () = cancel.cancelled() => return,
            r = initial_pods(&beehive, &o.register_node_namespace, o.initial_list_timeout) => r,
        };
        match initial {
            Ok(list) => {
                tracing::info!(pods = list.len(), "initial pod list from metaManager");
                for p in list {
                    pods.upsert(p).await;
                }
                let wanted: HashSet<String> = pods.workers.values().map(|w| w.uid.clone()).collect();
                collect_orphans(&pods.env, &wanted).await;
            }
            Err(e) => tracing::warn!(%e, "no initial pod list from metaManager; orphaned sandboxes are kept"),
        }
        let gc = crate::gc::Gc {
            cri: self.cri.clone(),
            node: o.node_name.clone(),
            containers: crate::gc::ContainerPolicy {
                min_age: o.container_gc_min_age,
                max_per_pod_container: o.max_dead_containers_per_pod,
            },
            container_period: o.container_gc_period.max(Duration::from_millis(100)),
            images: crate::gc::ImagePolicy {
                high_percent: u64::from(o.image_gc_high_threshold),
                low_percent: u64::from(o.image_gc_low_threshold),
                min_age: o.image_gc_min_age,
            },
            image_period: o.image_gc_period.max(Duration::from_millis(100)),
            sandbox_image: o.pod_sandbox_image.clone(),
            fallback_dir: o.root_directory.clone(),
        };
        tracker.spawn(gc.run(cancel.clone()));

        loop {
            tokio::select! {
                Some((key, uid)) = done_rx.recv() => {
                    if pods.workers.get(&key).is_some_and(|w| w.uid == uid) {
                        pods.workers.remove(&key);
                    }
                }
                m = mailbox.recv_until(&cancel) => match m {
                    Some(m) => pods.handle(m).await,
                    None => break,
                },
            }
        }
    }
}

struct Pods {
    workers: HashMap<String, WorkerHandle>,
    env: WorkerEnv,
    policy: BackoffPolicy,
    cancel: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    done_tx: Option<mpsc::Sender<(String, String)>>,
}

impl Pods {
    async fn handle(&mut self, msg: Message) {
        let Some(res) = Resource::parse(msg.resource()) else {
            tracing::debug!(message = %msg, "not a resource edged knows");
            return;
        };
        if matches!(res.kind, "configmap" | "secret") && !res.name.is_empty() {
            // Every worker checks whether its pod mounts the object; a full inbox skips the
            // pod until its periodic volume resync.
            for w in self.workers.values() {
                let _ = w.tx.try_send(Event::ObjectChanged {
                    namespace: res.namespace.to_string(),
                    kind: res.kind.to_string(),
                    name: res.name.to_string(),
                });
            }
            return;
        }
        if res.kind != "pod" {
            tracing::debug!(message = %msg, "ignored (edged handles pods only so far)");
            return;
        }
        match (msg.operation(), res.name.is_empty()) {
            (op::INSERT | op::UPDATE, false) => match decode_pod(msg.resource(), &msg.content) {
                Ok(p) => self.upsert(p).await,
                Err(e) => tracing::warn!(%e, "pod message dropped"),
            },
            (op::DELETE, false) => {
                let key = format!("{}/{}", res.namespace, res.name);
                let uid = decode_pod(msg.resource(), &msg.content)
                    .ok()
                    .and_then(|p| p.metadata.uid);
                if let Some(w) = self.workers.get(&key)
                    && uid.as_ref().is_none_or(|u| *u == w.uid)
                    && let Some(w) = self.workers.remove(&key)
                {
                    let _ = w.tx.send(Event::Delete).await;
                }
            }
            (op::RESPONSE, true) => {
                // An initial-list answer that arrived late: add what is not known yet.
                if let Value::Array(items) = &msg.content {
                    for it in items {
                        if let Ok(p) = decode_pod(msg.resource(), it)
                            && !self.workers.contains_key(&PodId::of(&p).key())
                        {
                            self.upsert(p).await;
                        }
                    }
                }
            }
            _ => tracing::debug!(message = %msg, "ignored"),
        }
    }

    async fn upsert(&mut self, p: k8s::Pod) {
        let id = PodId::of(&p);
        if id.name.is_empty() || id.uid.is_empty() {
            tracing::warn!(pod = %id.key(), "pod without name or uid ignored");
            return;
        }
        let key = id.key();
        if let Some(w) = self.workers.get(&key) {
            if w.uid == id.uid {
                let _ = w.tx.send(Event::Spec(Box::new(p))).await;
                return;
            }
            // Same name, new pod: the old one goes, the new one starts beside it.
            if let Some(old) = self.workers.remove(&key) {
                let _ = old.tx.send(Event::Delete).await;
            }
        }
        if pod::is_deleting(&p) {
            // Marked for deletion and not running here: nothing to start; kill leftovers.
            let env = self.env.clone();
            self.tracker.spawn(async move {
                let _ = worker::kill_pod(&env, &p, &id).await;
            });
            return;
        }
        let (tx, rx) = mpsc::channel(16);
        let env = self.env.clone();
        let policy = self.policy;
        let cancel = self.cancel.clone();
        let done = self.done_tx.clone();
        let uid = id.uid.clone();
        tracing::info!(pod = %key, uid = %uid, "pod added");
        self.tracker.spawn(async move {
            worker::run(env, p, policy, rx, cancel).await;
            if let Some(done) = done {
                let _ = done.send((key, uid)).await;
            }
        });
        self.workers.insert(id.key(), WorkerHandle { uid: id.uid, tx });
    }
}

/// Asks metaManager for the stored pods (`query` `<ns>/pod`), retrying until it answers or
/// `timeout` passes.
async fn initial_pods(hive: &ke_beehive::Beehive, ns: &str, timeout: Duration) -> Result<Vec<k8s::Pod>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let resource = format!("{ns}/pod");
    loop {
        let q = Message::new(
            module::EDGED,
            group::META,
            op::QUERY,
            resource.clone(),
            Value::Null,
        );
        match hive
            .send_sync(module::META_MANAGER, q, Duration::from_secs(5))
            .await
        {
            Ok(reply) if reply.operation() == op::ERROR => {
                return Err(Error::Config(format!(
                    "metaManager refused the pod list: {}",
                    reply.content
                )));
            }
            Ok(reply) => {
                let items = match reply.content {
                    Value::Array(items) => items,
                    Value::Null => vec![],
                    other => return Err(Error::Config(format!("unexpected pod list content {other}"))),
                };
                let mut pods = Vec::new();
                for it in &items {
                    match decode_pod(&resource, it) {
                        Ok(p) => pods.push(p),
                        Err(e) => tracing::warn!(%e, "stored pod skipped"),
                    }
                }
                return Ok(pods);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Stops and removes sandboxes labelled with this node whose pod is not wanted.
async fn collect_orphans(env: &WorkerEnv, wanted: &HashSet<String>) {
    let filter = api::PodSandboxFilter {
        label_selector: HashMap::from([(pod::LABEL_NODE.to_owned(), env.ctx.node_name.clone())]),
        ..Default::default()
    };
    let sandboxes = match env.cri.list_pod_sandboxes(Some(filter)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%e, "cannot list sandboxes for orphan collection");
            return;
        }
    };
    let mut done = HashSet::new();
    for sb in sandboxes {
        let Some(meta) = sb.metadata.clone() else { continue };
        if wanted.contains(&meta.uid) || !done.insert(meta.uid.clone()) {
            continue;
        }
        tracing::info!(pod = %format!("{}/{}", meta.namespace, meta.name), uid = %meta.uid, "removing orphaned pod");
        let p = k8s::Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(meta.name.clone()),
                namespace: Some(meta.namespace.clone()),
                uid: Some(meta.uid.clone()),
                deletion_grace_period_seconds: Some(0),
                ..Default::default()
            },
            ..Default::default()
        };
        // The orphan's QoS class is unknown: kill_pod removes the BestEffort cgroup, try the others.
        let id = PodId::of(&p);
        if let Err(e) = worker::kill_pod(env, &p, &id).await {
            tracing::warn!(%e, uid = %meta.uid, "cannot remove orphaned pod");
        }
        if let Some(root) = &env.ctx.cgroup_root {
            let root = root.trim_end_matches('/');
            ke_cri::remove_pod_cgroup(&format!("{root}/burstable/pod{}", meta.uid));
            ke_cri::remove_pod_cgroup(&format!("{root}/pod{}", meta.uid));
        }
    }
}
