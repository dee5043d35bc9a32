//! EdgeController: the cloud controller between the Kubernetes API server and the edge nodes.
//!
//! It owns two directions (`shared/spec/edgecontroller-devicecontroller.md` §1–§3):
//!
//! * **downstream** ([`downstream`]): watches Nodes labelled `node-role.kubernetes.io/edge`,
//!   Pods bound to them, the ConfigMaps and Secrets those pods reference, and all Services and
//!   Endpoints, and hands CloudHub the exact v1.2 messages — source `edgecontroller`, group
//!   `resource`, operation `insert`/`update`/`delete`, resource `node/<node>/<ns>/<type>/<name>`,
//!   `resourceversion` = the object's — plus the `servicelist`/`endpointslist`/`podlist` lists
//!   when a node turns Ready;
//! * **upstream** ([`upstream`]): consumes every edge message CloudHub delivers to group
//!   `edgecontroller` (`HubEvent::Upstream`, resource `node/<node>/…`): node registration
//!   (`insert nodestatus`), node status (`update nodestatus`), pod status (`update podstatus`,
//!   single and bulk), node annotation updates and remote `query`s, answered with the v1.2 reply
//!   shapes. `HubEvent::Disconnected` marks the node's `Ready` condition `Unknown` (no pod is
//!   deleted: the edge keeps running its pods while offline);
//! * **reliable sync** ([`sync`]): `HubEvent::Acked` records each delivered object's version in
//!   the ObjectSync `<node>.<uid>` (removed when a delete is acked), and every 5 s the
//!   synccontroller sends `delete`/`update`/`insert` for objects the edge is missing or holds an
//!   older version of (spec cloudhub-edgehub.md §7.2–§7.4);
//! * **shared caches** ([`cache`]): the downstream watches fill one cache per kind (all nodes,
//!   bound pods, config maps, secrets, services, endpoints) which the synccontroller reads, so a
//!   resync pass LISTs only ObjectSyncs (v1.2's synccontroller used informer listers the same way).
//!
//! Routing: there is no cloud-side beehive; cloudcore hands the CloudHub event channel to
//! [`EdgeController::run`] directly, and replies/objects go out through [`cloudhub::CloudHub::send`].
//! cloudcore's router sends messages from source `twin` to devicecontroller; any that reach this
//! crate (devicecontroller disabled) are ignored.
//!
//! Fixed relative to v1.2.1:
//! * a relisted watch (after a watch expiry) does not lose deletes: objects missing from the new
//!   list are sent as `delete` (v1.2 informers do the same; the hand-rolled v1.2 watch did not);
//! * pods already bound to a node when it becomes an edge node (or when cloudcore starts before
//!   the node is known) are sent (`insert`) instead of waiting for the synccontroller;
//! * pod `Modified` events that only touch `metadata.managedFields` (server-side bookkeeping of
//!   status writes, Kubernetes ≥ 1.18) are not forwarded: they are status-only changes;
//! * node/pod status writes retry once on a resource-version conflict instead of dropping the update;
//! * a disconnected edge's node goes `Ready=Unknown` at once instead of after the controller
//!   manager's 40 s grace period.
//!
//! HA mode (`modules.cloudhub.ha`, [`cloudhub::ha`]): nothing is written for a node this
//! cloudcore does not serve (its status, its pods' status, its ObjectSyncs; `Ready=Unknown` only
//! for a node still ours, or an orphan whose Lease this cloudcore cleared); ObjectSync records only
//! move forward; a node taken over gets the service/endpoints lists and an immediate resync
//! pass, which also inserts the config maps and secrets of its unsynced pods.
//!
//! `kubeAPIConfig.qps`/`burst` rate-limit every API call of cloudcore's client ([`ratelimit`], a
//! token bucket as client-go's); each controller's requests are counted by verb
//! (`controller_api_requests_total{controller,verb}`, [`kubeclient::counted`]).
//!
//! Not done (yet): `contentType` (JSON is always used), the per-handler
//! `buffer`/`load` sizes (one bounded worker pool of the `load` total is used),
//! ClusterObjectSync (not used by v1.2.1 either).
#![warn(missing_docs)]

pub mod cache;
pub mod downstream;
pub mod kubeclient;
pub mod messages;
pub mod ratelimit;
pub mod sync;
pub mod tracker;
pub mod upstream;

use std::time::Duration;

use cloudhub::{CloudHub, HubEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Errors of the edge controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("kubeAPIConfig.kubeConfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Cause.
        source: kube::config::KubeconfigError,
    },
    /// `kubeAPIConfig.master` is not a URL.
    #[error("kubeAPIConfig.master {master:?} is not a URL: {reason}")]
    Master {
        /// The value.
        master: String,
        /// Why.
        reason: String,
    },
    /// The API client could not be built.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call, naming the object.
        what: String,
        /// Cause.
        source: kube::Error,
    },
    /// An edge message's content is not what its resource promises.
    #[error("bad content in {resource}: {reason}")]
    Content {
        /// Resource of the message.
        resource: String,
        /// Why.
        reason: String,
    },
    /// CloudHub refused the message.
    #[error("cloudhub refused {resource}: {source}")]
    Hub {
        /// Resource of the message.
        resource: String,
        /// Cause.
        source: cloudhub::HubError,
    },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings from `modules.edgecontroller`.
#[derive(Debug, Clone)]
pub struct Options {
    /// `nodeUpdateFrequency`: condition heartbeats older than this are stamped with now.
    pub node_update_frequency: Duration,
    /// Edge messages handled concurrently (API calls in flight).
    pub workers: usize,
    /// Where the controllers count their work (`controller_*` metrics).
    pub metrics: cloudhub::metrics::ControllerMetrics,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_update_frequency: Duration::from_secs(10),
            workers: 16,
            metrics: Default::default(),
        }
    }
}

impl Options {
    /// From the `modules.edgecontroller` section.
    pub fn from_config(cfg: &ke_config::cloudcore::EdgeController) -> Self {
        let l = &cfg.load;
        let workers = [
            l.query_configmap_workers,
            l.query_endpoints_workers,
            l.query_node_workers,
            l.query_persistent_volume_claim_workers,
            l.query_persistent_volume_workers,
            l.query_secret_workers,
            l.query_service_workers,
            l.query_volume_attachment_workers,
            l.update_node_status_workers,
            l.update_node_workers,
            l.update_pod_status_workers,
        ]
        .iter()
        .map(|w| usize::try_from(*w).unwrap_or(0))
        .sum::<usize>()
        .max(1);
        Self {
            node_update_frequency: cfg.node_update_frequency(),
            workers,
            metrics: Default::default(),
        }
    }
}

/// The running controller.
#[derive(Debug)]
pub struct EdgeController;

impl EdgeController {
    /// Runs both directions until `cancel` fires: the watches (downstream) and the handling of
    /// CloudHub's `events` (upstream).
    pub async fn run(
        client: kube::Client,
        hub: CloudHub,
        events: mpsc::Receiver<HubEvent>,
        opts: Options,
        cancel: CancellationToken,
    ) {
        let caches = cache::Caches::default();
        let down_metrics = opts.metrics.controller("edgecontroller");
        let sync_metrics = opts.metrics.controller("synccontroller");
        let up_metrics = opts.metrics.controller("upstream");
        let down =
            downstream::Downstream::new(kubeclient::counted(&client, down_metrics.clone()), hub.clone())
                .with_metrics(down_metrics)
                .with_caches(caches.clone());
        let resync = sync::SyncController::new(
            kubeclient::counted(&client, sync_metrics.clone()),
            hub.clone(),
            caches,
        )
        .with_metrics(sync_metrics);
        let mut up = upstream::Upstream::new(kubeclient::counted(&client, up_metrics), hub.clone(), opts);
        let resync = if hub.is_ha() {
            let (tx, rx) = mpsc::unbounded_channel();
            up = up.with_takeovers(tx);
            resync.with_takeovers(rx)
        } else {
            resync
        };
        tokio::select! {
            () = down.run() => {}
            () = resync.run() => {}
            () = up.run(events) => {}
            () = cancel.cancelled() => {}
        }
    }
}
