//! High availability: several cloudcores against one API server, each edge node served by exactly
//! one of them at a time (`modules.cloudhub.ha`).
//!
//! # Design
//!
//! Two kinds of `coordination.k8s.io/v1` Lease, in one namespace (default `kubeedge`):
//!
//! * **`cloudcore.<identity>`** (label `kubeedge.io/lease=cloudcore`): each cloudcore's liveness,
//!   renewed every third of `leaseDurationSeconds`;
//! * **`node.<node>`** (label `kubeedge.io/lease=node`, `kubeedge.io/node=<node>`): the node's
//!   owner, `spec.holderIdentity` = a cloudcore identity. It is written when a cloudcore takes the
//!   node, not renewed: the owner's own Lease says whether it is alive. 10,000 nodes cost one
//!   renewal per cloudcore per period, not 10,000.
//!
//! An edge connects to any cloudcore (a list of addresses in edgecore.yaml, or a TCP load
//! balancer). The cloudcore that has the edge's authenticated session writes itself into the
//! node's Lease (a write with the Lease's `resourceVersion` as precondition, retried on conflict)
//! **before** it reads a message from the edge, announces the node to the
//! controllers or writes anything for it. An edge holds one session at a time, so the cloudcore it
//! reaches last is the one it wants: taking the Lease over from a live holder is right (that
//! holder's session is dead or dying).
//!
//! The first write needs no read: it is made against the version the watch last saw (a merge patch
//! carrying that `resourceVersion`), or is a create when the watch knows no Lease for the node.
//! Only a conflict costs a read, so re-homing a dead cloudcore's 5,000 nodes is 5,000 API writes.
//! At most [`API_SLOTS`] such calls are in flight per cloudcore, so a burst of reconnecting edges
//! queues here instead of opening a connection per edge to the API server; the client's rate limit
//! (`modules.cloudhub.ha.leaseQPS`, apart from the controllers' `kubeAPIConfig.qps`) bounds how
//! fast a dead cloudcore's nodes re-home.
//!
//! Every cloudcore watches the node Leases. When one it owns gets another holder at a newer
//! `resourceVersion` than its own write, it has lost the node: it closes the node's session (if
//! still open), drops the node's queue and stops writing for it.
//!
//! # Invariants
//!
//! 1. *A cloudcore serves a node only while it believes it holds the node's Lease*
//!    ([`Ha::owns`]): [`crate::CloudHub::send`] queues nothing for another cloudcore's node, and
//!    EdgeController writes the node's status, its pods' status and its ObjectSyncs only through
//!    a session of a node it owns.
//! 2. *Ownership changes only through a conditional write of the Lease*, so two cloudcores cannot
//!    both take a node from the same Lease version; the one whose write lands later wins and the
//!    other learns it from the watch.
//! 3. *Delivery state lives in Kubernetes, not in a cloudcore*: an ObjectSync `<node>.<uid>`
//!    records the version the edge acked. The new owner starts from an empty queue and sends what
//!    ObjectSync says the edge lacks (the synccontroller, run at once on takeover), so nothing the
//!    API server holds is lost, and a version the edge acked is not sent again. ObjectSync writes
//!    only move forward (a late write of an older version loses), so a dying owner's last acks
//!    cannot roll the record back.
//! 4. *Per-node order*: one owner at a time, one queue per node, and the queue never replaces a
//!    pending version by an older one; the edge applies an object's versions in order.
//!
//! A node Lease whose holder's cloudcore Lease has stopped changing for `leaseDurationSeconds`
//! (measured on this cloudcore's clock, so clock skew does not matter) is *orphaned*: its edge is
//! connected nowhere. One cloudcore (the conditional write decides which) clears the holder and
//! marks the node `Ready=Unknown` ([`crate::HubEvent::Orphaned`]).
//!
//! Known window: when an edge moves from A to B at the moment A notices the old session's death,
//! A's `Ready=Unknown` may land after B's first status write; the edge's next status report
//! (`nodeStatusUpdateFrequency`, 10 s) corrects it.
//!
//! Kubernetes access needed (build/rbac/cloudcore.yaml): leases `get`, `list`, `watch`, `create`,
//! `update` in the HA namespace; secrets `get`, `create` there (the CA Secret).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Label telling the two kinds of Lease apart: `node` or `cloudcore`.
pub const LEASE_KIND_LABEL: &str = "kubeedge.io/lease";
/// Label with the node name on a node Lease (a Lease name may not hold every node name).
pub const NODE_LABEL: &str = "kubeedge.io/node";
/// Conditional writes tried before giving up on a node.
const CONFLICT_ATTEMPTS: usize = 5;
/// Lease writes of [`Ha::acquire`] in flight at once.
pub const API_SLOTS: usize = 32;

/// `modules.cloudhub.ha`, resolved.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// This cloudcore's `holderIdentity`.
    pub identity: String,
    /// Namespace of the Leases.
    pub namespace: String,
    /// A cloudcore Lease unchanged for this long belongs to a dead cloudcore.
    pub lease_duration: Duration,
}

/// What the hub needs to run in HA mode.
#[derive(Clone)]
pub struct HaSetup {
    /// Client of the API server holding the Leases.
    pub client: kube::Client,
    /// Identity, namespace, duration.
    pub options: HaOptions,
}

impl std::fmt::Debug for HaSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaSetup")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Errors of the Lease bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call.
        what: String,
        /// Cause.
        source: kube::Error,
    },
    /// Every attempt met a newer version of the Lease.
    #[error("Lease {0} kept changing under us ({CONFLICT_ATTEMPTS} conflicts)")]
    Contended(String),
    /// The node name does not fit in a Lease name.
    #[error("node name {0:?} is too long for a Lease name (253 characters with the prefix node.)")]
    NameTooLong(String),
}

/// The Lease name of a node.
pub fn node_lease_name(node: &str) -> Result<String, Error> {
    let name = format!("node.{node}");
    if name.len() > 253 {
        return Err(Error::NameTooLong(node.to_owned()));
    }
    Ok(name)
}

/// The Lease name of a cloudcore.
pub fn cloudcore_lease_name(identity: &str) -> String {
    format!("cloudcore.{identity}")
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    crate::api_status(e) == Some(code)
}

fn rv_of(l: &Lease) -> u64 {
    l.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn holder_of(l: &Lease) -> &str {
    l.spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or_default()
}

fn node_of(l: &Lease) -> Option<&str> {
    l.metadata.labels.as_ref()?.get(NODE_LABEL).map(String::as_str)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// What [`Ha::acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The previous holder, when it was another cloudcore.
    pub from: Option<String>,
}

/// What the watch tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Another cloudcore took this node.
    Lost(String),
    /// This cloudcore cleared the holder of a node whose owner is dead.
    Orphaned(String),
}

/// The Lease side of a hub in HA mode; shared by the hub's tasks.
pub struct Ha {
    client: kube::Client,
    opts: HaOptions,
    /// Nodes this cloudcore holds → the resourceVersion of its own last write of their Lease.
    owned: Mutex<HashMap<String, u64>>,
    /// Every node Lease seen by the watch (or written here): node → what it said.
    holders: Mutex<HashMap<String, Seen>>,
    /// Bounds the acquire calls in flight ([`API_SLOTS`]).
    slots: tokio::sync::Semaphore,
    notices: mpsc::UnboundedSender<Notice>,
}

/// A node Lease as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    holder: String,
    rv: u64,
    transitions: i32,
}

impl Seen {
    fn of(l: &Lease) -> Self {
        Self {
            holder: holder_of(l).to_owned(),
            rv: rv_of(l),
            transitions: l.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
        }
    }
}

impl std::fmt::Debug for Ha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha")
            .field("opts", &self.opts)
            .field("owned", &self.owned_count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ha {
    /// The Lease bookkeeping, and the channel on which it reports lost and orphaned nodes.
    pub(crate) fn new(client: kube::Client, opts: HaOptions) -> (Arc<Self>, mpsc::UnboundedReceiver<Notice>) {
        let (notices, rx) = mpsc::unbounded_channel();
        let ha = Arc::new(Self {
            client,
            opts,
            owned: Mutex::default(),
            holders: Mutex::default(),
            slots: tokio::sync::Semaphore::new(API_SLOTS),
            notices,
        });
        (ha, rx)
    }

    /// This cloudcore's identity.
    pub fn identity(&self) -> &str {
        &self.opts.identity
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.opts.namespace)
    }

    /// True while this cloudcore holds the node's Lease (as far as the watch has told it).
    pub fn owns(&self, node: &str) -> bool {
        lock(&self.owned).contains_key(node)
    }

    /// Nodes this cloudcore holds.
    pub fn owned_count(&self) -> usize {
        lock(&self.owned).len()
    }

    /// A Lease `name` held by this cloudcore from now on, with `labels`.
    fn new_lease<const N: usize>(&self, name: &str, labels: [(String, String); N]) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.opts.namespace.clone()),
                labels: Some(BTreeMap::from(labels)),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.opts.identity.clone()),
                lease_duration_seconds: i32::try_from(self.opts.lease_duration.as_secs()).ok(),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }

    /// Writes this cloudcore into the node's Lease (creating it), whoever held it.
    pub async fn acquire(&self, node: &str) -> Result<Acquired, Error> {
        let name = node_lease_name(node)?;
        // The semaphore is never closed; were it, the call would just go unbounded.
        let _slot = self.slots.acquire().await.ok();
        let seen = lock(&self.holders).get(node).cloned();
        let first = match &seen {
            Some(seen) => self.take_over(node, &name, seen).await,
            None => self.create_node_lease(node, &name).await,
        };
        match first {
            Ok(from) => return Ok(self.acquired(node, from)),
            // The watch was behind (a newer version, or the Lease is gone or not yet seen).
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => {}
            Err(source) => return Err(self.write_error(&name, source)),
        }
        for _ in 0..CONFLICT_ATTEMPTS {
            let current = self.leases().get_opt(&name).await.map_err(|source| Error::Api {
                what: format!("get Lease {}/{name}", self.opts.namespace),
                source,
            })?;
            let result = match current {
                None => self.create_node_lease(node, &name).await,
                Some(l) => self.take_over(node, &name, &Seen::of(&l)).await,
            };
            match result {
                Ok(from) => return Ok(self.acquired(node, from)),
                Err(e) if is_status(&e, 409) || is_status(&e, 404) => continue,
                Err(source) => return Err(self.write_error(&name, source)),
            }
        }
        Err(Error::Contended(name))
    }

    fn write_error(&self, name: &str, source: kube::Error) -> Error {
        Error::Api {
            what: format!("write Lease {}/{name}", self.opts.namespace),
            source,
        }
    }

    fn acquired(&self, node: &str, from: Option<String>) -> Acquired {
        match &from {
            Some(prev) => info!(%node, from = %prev, "took the node's Lease over"),
            None => debug!(%node, "holding the node's Lease"),
        }
        Acquired { from }
    }

    /// Creates the node's Lease held by this cloudcore; 409 when it exists.
    async fn create_node_lease(&self, node: &str, name: &str) -> Result<Option<String>, kube::Error> {
        let lease = self.new_lease(
            name,
            [
                (LEASE_KIND_LABEL.to_owned(), "node".to_owned()),
                (NODE_LABEL.to_owned(), node.to_owned()),
            ],
        );
        let written = self.leases().create(&PostParams::default(), &lease).await?;
        self.wrote(node, &written);
        Ok(None)
    }

    /// Writes this cloudcore into the node's Lease as it was at `seen` (the write fails with 409
    /// when the Lease has moved on since); returns the previous holder when another cloudcore.
    async fn take_over(&self, node: &str, name: &str, seen: &Seen) -> Result<Option<String>, kube::Error> {
        let me = &self.opts.identity;
        let other = !seen.holder.is_empty() && seen.holder != *me;
        let transitions = if seen.holder == *me {
            seen.transitions
        } else {
            seen.transitions.saturating_add(1)
        };
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": seen.rv.to_string()},
            "spec": {
                "holderIdentity": me,
                "leaseDurationSeconds": i32::try_from(self.opts.lease_duration.as_secs()).ok(),
                "acquireTime": now(),
                "renewTime": now(),
                "leaseTransitions": transitions,
            },
        });
        let written = self
            .leases()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.wrote(node, &written);
        Ok(other.then(|| seen.holder.clone()))
    }

    /// Records this cloudcore's own write of a node Lease.
    fn wrote(&self, node: &str, written: &Lease) {
        let seen = Seen::of(written);
        lock(&self.owned).insert(node.to_owned(), seen.rv);
        let mut holders = lock(&self.holders);
        if holders.get(node).is_none_or(|known| known.rv < seen.rv) {
            holders.insert(node.to_owned(), seen);
        }
    }

    /// Deletes the node's Lease (the Node is gone from Kubernetes, or no longer an edge node).
    pub async fn remove(&self, node: &str) -> Result<(), Error> {
        let name = node_lease_name(node)?;
        lock(&self.owned).remove(node);
        match self.leases().delete(&name, &Default::default()).await {
            Ok(_) => {
                debug!(%node, "node gone: its Lease removed");
                Ok(())
            }
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(source) => Err(Error::Api {
                what: format!("delete Lease {}/{name}", self.opts.namespace),
                source,
            }),
        }
    }

    /// Renews this cloudcore's Lease, watches the node Leases and clears orphaned ones, until
    /// `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let period = (self.opts.lease_duration / 3).max(Duration::from_millis(200));
        let renew = {
            let ha = self.clone();
            async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut failing_since: Option<Instant> = None;
                loop {
                    tick.tick().await;
                    match ha.renew().await {
                        Ok(()) => failing_since = None,
                        Err(e) => {
                            let since = *failing_since.get_or_insert_with(Instant::now);
                            warn!(identity = %ha.opts.identity, "cannot renew this cloudcore's Lease: {e}");
                            if since.elapsed() > ha.opts.lease_duration {
                                warn!(
                                    "this cloudcore's Lease has not been renewed for {:?}: other cloudcores may take its nodes",
                                    since.elapsed()
                                );
                            }
                        }
                    }
                }
            }
        };
        let reap = {
            let ha = self.clone();
            async move {
                // identity → (resourceVersion last seen, when it last changed)
                let mut seen: HashMap<String, (u64, Instant)> = HashMap::new();
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = ha.reap(&mut seen).await {
                        warn!("checking for nodes of dead cloudcores: {e}");
                    }
                }
            }
        };
        tokio::select! {
            () = cancel.cancelled() => {}
            () = renew => {}
            () = reap => {}
            () = self.watch() => {}
        }
    }

    /// Creates or renews this cloudcore's Lease.
    pub(crate) async fn renew(&self) -> Result<(), Error> {
        let name = cloudcore_lease_name(&self.opts.identity);
        let api = self.leases();
        let what = || format!("renew Lease {}/{name}", self.opts.namespace);
        let current = api
            .get_opt(&name)
            .await
            .map_err(|source| Error::Api { what: what(), source })?;
        let result = match current {
            None => {
                let lease = self.new_lease(&name, [(LEASE_KIND_LABEL.to_owned(), "cloudcore".to_owned())]);
                api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                lease.spec.get_or_insert_with(Default::default).renew_time = Some(now());
                api.replace(&name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(()),
            // Another writer of our own Lease (a restarted process with the same identity): next tick.
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(source) => Err(Error::Api { what: what(), source }),
        }
    }

    async fn watch(&self) {
        let cfg = watcher::Config::default().labels(&format!("{LEASE_KIND_LABEL}=node"));
        let mut events = std::pin::pin!(watcher::watcher(self.leases(), cfg));
        while let Some(ev) = events.next().await {
            match ev {
                Ok(Event::Apply(l) | Event::InitApply(l)) => self.observe(&l),
                Ok(Event::Delete(l)) => {
                    if let Some(node) = node_of(&l) {
                        lock(&self.holders).remove(node);
                    }
                }
                Ok(Event::Init | Event::InitDone) => {}
                Err(e) => {
                    warn!("watching node Leases (retrying): {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn observe(&self, l: &Lease) {
        let Some(node) = node_of(l) else { return };
        let seen = Seen::of(l);
        let (holder, rv) = (&seen.holder, seen.rv);
        let lost = {
            let mut owned = lock(&self.owned);
            match owned.get(node) {
                Some(&mine) if *holder != self.opts.identity && rv > mine => {
                    owned.remove(node);
                    true
                }
                _ => false,
            }
        };
        if lost {
            info!(%node, to = %holder, "another cloudcore took the node");
            let _ = self.notices.send(Notice::Lost(node.to_owned()));
        }
        let mut holders = lock(&self.holders);
        if holders.get(node).is_none_or(|known| known.rv < seen.rv) {
            holders.insert(node.to_owned(), seen);
        }
    }

    /// Clears the holder of every node Lease whose holder's cloudcore Lease stood still for a
    /// whole lease duration.
    async fn reap(&self, seen: &mut HashMap<String, (u64, Instant)>) -> Result<(), Error> {
        let list = self
            .leases()
            .list(&ListParams::default().labels(&format!("{LEASE_KIND_LABEL}=cloudcore")))
            .await
            .map_err(|source| Error::Api {
                what: format!("list cloudcore Leases in {}", self.opts.namespace),
                source,
            })?;
        let t = Instant::now();
        for l in &list.items {
            let rv = rv_of(l);
            let entry = seen.entry(holder_of(l).to_owned()).or_insert((rv, t));
            if entry.0 != rv {
                *entry = (rv, t);
            }
        }
        // A holder without a Lease of its own is timed from when it was first missed.
        let holders: std::collections::HashSet<String> =
            lock(&self.holders).values().map(|s| s.holder.clone()).collect();
        for h in holders.iter().filter(|h| !h.is_empty()) {
            seen.entry(h.clone()).or_insert((0, t));
        }
        seen.retain(|id, _| holders.contains(id) || list.items.iter().any(|l| holder_of(l) == id));
        let mut alive: std::collections::HashSet<String> = seen
            .iter()
            .filter(|(_, (_, changed))| t.duration_since(*changed) <= self.opts.lease_duration)
            .map(|(id, _)| id.clone())
            .collect();
        alive.insert(self.opts.identity.clone());
        let orphans: Vec<(String, String)> = lock(&self.holders)
            .iter()
            .filter(|(_, s)| !s.holder.is_empty() && !alive.contains(&s.holder))
            .map(|(node, s)| (node.clone(), s.holder.clone()))
            .collect();
        for (node, dead) in orphans {
            if self.clear(&node, &dead).await? {
                info!(%node, "the node's cloudcore is dead and its edge connected nowhere: node orphaned");
                let _ = self.notices.send(Notice::Orphaned(node));
            }
        }
        Ok(())
    }

    /// Clears the holder of a node Lease still held by the dead cloudcore `dead`: true when this
    /// write won. A Lease taken since (by this cloudcore or another) is left alone.
    async fn clear(&self, node: &str, dead: &str) -> Result<bool, Error> {
        let name = node_lease_name(node)?;
        let api = self.leases();
        let Some(mut lease) = api.get_opt(&name).await.map_err(|source| Error::Api {
            what: format!("get Lease {}/{name}", self.opts.namespace),
            source,
        })?
        else {
            return Ok(false);
        };
        if holder_of(&lease) != dead {
            return Ok(false); // taken since the watch saw it
        }
        lease.spec.get_or_insert_with(Default::default).holder_identity = Some(String::new());
        match api.replace(&name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(source) => Err(Error::Api {
                what: format!("clear Lease {}/{name}", self.opts.namespace),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names() {
        assert_eq!(node_lease_name("edge-1").unwrap(), "node.edge-1");
        assert!(node_lease_name(&"a".repeat(250)).is_err());
        assert_eq!(cloudcore_lease_name("cc-a"), "cloudcore.cc-a");
    }
}
