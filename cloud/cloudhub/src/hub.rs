use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ke_core::Message;
use ke_core::names::{module, op};
use ke_core::resource;
use ke_pki::identity::{PeerIdentity, peer_identity};
use ke_transport::{ConnInfo, Inbound, LinkError, LinkLimits, LinkRx, LinkTx, Refusal};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ha::{Ha, HaSetup, Notice};
use crate::metrics::HubMetrics;
use crate::persist::QueueStore;
use crate::queue::{Admit, Lane, NodeQueue, QueueFull, classify};

/// Settings of the hub (mapped from `modules.cloudhub` in cloudcore.yaml by the binary).
#[derive(Debug, Clone)]
pub struct CloudHubOptions {
    /// WebSocket listen address (`websocket.address:port`), `None` to disable.
    pub websocket: Option<SocketAddr>,
    /// QUIC listen address, `None` to disable.
    pub quic: Option<SocketAddr>,
    /// Unix socket path, `None` to disable.
    pub unix_socket: Option<PathBuf>,
    /// Server TLS configuration; must require client certificates.
    pub tls: Arc<rustls::ServerConfig>,
    /// A node is dropped after this long without hearing from it (`keepaliveInterval`).
    pub keepalive_interval: Duration,
    /// Most nodes connected at once (`nodeLimit`).
    pub node_limit: usize,
    /// Bound of each node's queue (`maxPendingPerNode`).
    pub max_pending_per_node: usize,
    /// Accept edges presenting the v1.2 shared certificate (CN `kubeedge.io`).
    pub allow_legacy_certs: bool,
    /// First ack wait; doubles per resend.
    pub ack_timeout: Duration,
    /// Longest wait between resends.
    pub max_backoff: Duration,
    /// A single write that takes longer drops the session (`writeTimeout`).
    pub write_timeout: Duration,
    /// Acked messages in flight per node.
    pub window: usize,
    /// How long a unix-socket request waits for the edge's reply.
    pub request_timeout: Duration,
    /// Frame size and handshake limits.
    pub limits: LinkLimits,
    /// SQLite file keeping the acked lanes across restarts (`queueStore`); `None`: memory only.
    /// Not used in HA mode (ObjectSync is the durable state there).
    pub queue_store: Option<PathBuf>,
    /// HA mode (`modules.cloudhub.ha`): serve only nodes whose Lease this cloudcore holds.
    pub ha: Option<HaSetup>,
}

impl CloudHubOptions {
    /// Defaults of KubeEdge v1.2 for everything but the addresses and TLS.
    pub fn new(tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            websocket: None,
            quic: None,
            unix_socket: None,
            tls,
            keepalive_interval: Duration::from_secs(30),
            node_limit: 10,
            max_pending_per_node: 1024,
            allow_legacy_certs: false,
            ack_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            window: 64,
            request_timeout: Duration::from_secs(60),
            limits: LinkLimits::default(),
            queue_store: None,
            ha: None,
        }
    }
}

/// What the hub tells the cloud controllers.
#[derive(Debug, Clone)]
pub enum HubEvent {
    /// A message from an edge, resource prefixed `node/<node>/`.
    Upstream(Message),
    /// A node's link came up.
    Connected(String),
    /// A node's link went down.
    Disconnected(String),
    /// HA mode: the node's cloudcore died and its edge is connected nowhere; this cloudcore
    /// cleared the node's Lease and should mark the node `Ready=Unknown`.
    Orphaned(String),
    /// The edge acked this message (its newest version): record it as delivered.
    Acked {
        /// Node that acked.
        node: String,
        /// The message as it was queued (cloud-side resource).
        message: Message,
    },
}

/// Errors of the hub API.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A listener could not be opened.
    #[error("cannot listen on {what}: {source}")]
    Listen {
        /// Which listener and address.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The queue store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::persist::Error),
    /// QUIC listener could not be set up.
    #[error("cannot start the QUIC listener: {0}")]
    Quic(#[from] LinkError),
    /// The message names no node (`node/<node>/…`).
    #[error("message resource {0:?} names no node (expected node/<node>/...)")]
    NoNode(String),
    /// The node's queue is full.
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    /// No reply arrived in time.
    #[error("no reply from node {node} within {timeout:?}")]
    Timeout {
        /// Node asked.
        node: String,
        /// Wait.
        timeout: Duration,
    },
    /// The hub is shutting down.
    #[error("cloudhub is shutting down")]
    Closed,
    /// HA mode: another cloudcore serves the node.
    #[error("node {0} is served by another cloudcore (HA mode)")]
    NotOwned(String),
    /// Nothing was sent: the edge has, or is being sent, this version or a newer one.
    #[error(
        "{resource} at resourceVersion {version:?}: node {node} already has or is being sent this version or a newer one; nothing sent"
    )]
    Superseded {
        /// Node.
        node: String,
        /// The message's resource.
        resource: String,
        /// Its resourceVersion.
        version: String,
    },
    /// HA mode: the Lease bookkeeping could not start.
    #[error("HA: {0}")]
    Ha(#[from] crate::ha::Error),
}

/// Addresses the hub actually listens on.
#[derive(Debug, Clone, Default)]
pub struct Listening {
    /// WebSocket address.
    pub websocket: Option<SocketAddr>,
    /// QUIC address.
    pub quic: Option<SocketAddr>,
    /// Unix socket path.
    pub unix_socket: Option<PathBuf>,
}

#[derive(Debug)]
struct SessionHandle {
    id: u64,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Node {
    name: String,
    queue: Mutex<NodeQueue>,
    wake: Notify,
    session: Mutex<Option<SessionHandle>>,
}

impl Node {
    fn queue(&self) -> MutexGuard<'_, NodeQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
struct Inner {
    opts: CloudHubOptions,
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    connected: Mutex<usize>,
    events: mpsc::Sender<HubEvent>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    metrics: HubMetrics,
    cancel: CancellationToken,
    tracker: TaskTracker,
    next_session: AtomicU64,
    store: Mutex<Option<QueueStore>>,
    ha: Option<Arc<Ha>>,
}

/// Handle to a running hub; cheap to clone.
#[derive(Debug, Clone)]
pub struct CloudHub {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CloudHub {
    /// Opens the enabled listeners and starts serving. Edge messages go to `events`.
    pub async fn start(
        opts: CloudHubOptions,
        events: mpsc::Sender<HubEvent>,
        metrics: HubMetrics,
        cancel: CancellationToken,
    ) -> Result<(Self, Listening), HubError> {
        let (store, saved) = match &opts.queue_store {
            Some(path) if opts.ha.is_some() => {
                info!(path = %path.display(), "HA mode: the queue store is not used (delivery resumes from ObjectSync)");
                (None, Vec::new())
            }
            Some(path) => {
                let (s, saved) = QueueStore::open(path)?;
                info!(path = %path.display(), restored = saved.len(), "cloudhub queue store opened");
                (Some(s), saved)
            }
            None => (None, Vec::new()),
        };
        let (ha, notices) = match &opts.ha {
            Some(setup) => {
                let (ha, notices) = Ha::new(setup.client.clone(), setup.options.clone());
                // Alive before the first node is taken, so no peer mistakes its nodes for orphans.
                ha.renew().await?;
                info!(identity = %ha.identity(), namespace = %setup.options.namespace, "cloudhub HA: serving nodes whose Lease this cloudcore holds");
                (Some(ha), Some(notices))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            opts,
            nodes: Mutex::default(),
            connected: Mutex::new(0),
            events,
            waiters: Mutex::default(),
            metrics,
            cancel,
            tracker: TaskTracker::new(),
            next_session: AtomicU64::new(1),
            store: Mutex::new(store),
            ha,
        });
        let hub = Self { inner };
        if let (Some(ha), Some(mut notices)) = (hub.inner.ha.clone(), notices) {
            hub.inner.tracker.spawn(ha.run(hub.inner.cancel.clone()));
            let h = hub.clone();
            hub.inner.tracker.spawn(async move {
                loop {
                    let notice = tokio::select! {
                        _ = h.inner.cancel.cancelled() => return,
                        n = notices.recv() => match n { Some(n) => n, None => return },
                    };
                    match notice {
                        Notice::Lost(node) => h.drop_node(&node),
                        Notice::Orphaned(node) => {
                            let _ = h.inner.events.send(HubEvent::Orphaned(node)).await;
                        }
                    }
                }
            });
        }
        for msg in saved {
            if let Some(name) = resource::node_of(msg.resource()) {
                let node = hub.node(name);
                if let Err(e) = hub.with_queue(&node, |q| q.push(msg)) {
                    warn!(error = %e, "restored message does not fit the queue");
                }
            }
        }
        let mut listening = Listening::default();
        if let Some(addr) = hub.inner.opts.websocket {
            let l = ke_transport::ws::listen(addr).map_err(|source| HubError::Listen {
                what: format!("websocket {addr}"),
                source,
            })?;
            listening.websocket = l.local_addr().ok();
            info!(addr = ?listening.websocket, "cloudhub websocket listening");
            let h = hub.clone();
            hub.inner.tracker.spawn(async move { h.ws_accept_loop(l).await });
        }
        if let Some(addr) = hub.inner.opts.quic {
            let ep = ke_transport::quic::server_endpoint(addr, &hub.inner.opts.tls, hub.keepalive_probe())?;
            listening.quic = ep.local_addr().ok();
            info!(addr = ?listening.quic, "cloudhub quic listening");
            let h = hub.clone();
            hub.inner
                .tracker
                .spawn(async move { h.quic_accept_loop(ep).await });
        }
        if let Some(path) = hub.inner.opts.unix_socket.clone() {
            let l = bind_unix(&path).map_err(|source| HubError::Listen {
                what: format!("unix socket {}", path.display()),
                source,
            })?;
            info!(path = %path.display(), "cloudhub unix socket listening");
            listening.unix_socket = Some(path);
            let h = hub.clone();
            hub.inner
                .tracker
                .spawn(async move { h.unix_accept_loop(l).await });
        }
        Ok((hub, listening))
    }

    fn keepalive_probe(&self) -> Duration {
        (self.inner.opts.keepalive_interval / 3).max(Duration::from_secs(1))
    }

    /// Queues a message for the node named in its resource (`node/<node>/…`).
    pub fn send(&self, msg: Message) -> Result<Admit, HubError> {
        let node_name =
            resource::node_of(msg.resource()).ok_or_else(|| HubError::NoNode(msg.resource().to_owned()))?;
        if !self.owns(node_name) {
            return Ok(Admit::NotOwned);
        }
        let node = self.node(node_name);
        let durable = match (classify(&msg), lock(&self.inner.store).is_some()) {
            (Lane::Acked(key), true) => Some((key, msg.clone())),
            _ => None,
        };
        let admitted = self.with_queue(&node, |q| q.push(msg));
        if let (Ok(Admit::Queued), Some((key, m))) = (&admitted, durable)
            && let Some(store) = lock(&self.inner.store).as_ref()
        {
            store.put(&node.name, &key, &m);
        }
        match &admitted {
            Ok(Admit::QueuedDroppedOldest) => {
                self.inner.metrics.queue_overflow.inc();
                warn!(node = %node.name, "list queue full: dropped its oldest message");
            }
            Err(_) => {
                self.inner.metrics.queue_overflow.inc();
            }
            _ => {}
        }
        node.wake.notify_one();
        Ok(admitted?)
    }

    /// Sends a message and waits for the edge's first message whose `parent_msg_id` is its id (its
    /// ack or reply).
    pub async fn request(&self, msg: Message, timeout: Duration) -> Result<Message, HubError> {
        let node = resource::node_of(msg.resource())
            .ok_or_else(|| HubError::NoNode(msg.resource().to_owned()))?
            .to_owned();
        let id = msg.id().to_owned();
        let (resource, version) = (msg.resource().to_owned(), msg.header.resource_version.clone());
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.waiters).insert(id.clone(), tx);
        match self.send(msg) {
            Ok(Admit::NotOwned) => {
                lock(&self.inner.waiters).remove(&id);
                return Err(HubError::NotOwned(node));
            }
            // No ack will ever name this message: say so now rather than at the timeout.
            Ok(Admit::Stale) => {
                lock(&self.inner.waiters).remove(&id);
                return Err(HubError::Superseded {
                    node,
                    resource,
                    version,
                });
            }
            Ok(_) => {}
            Err(e) => {
                lock(&self.inner.waiters).remove(&id);
                return Err(e);
            }
        }
        let res = tokio::time::timeout(timeout, rx).await;
        lock(&self.inner.waiters).remove(&id);
        match res {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(HubError::Closed),
            Err(_) => Err(HubError::Timeout { node, timeout }),
        }
    }

    /// True when this hub serves `node`: always without HA; in HA mode while this cloudcore
    /// holds the node's Lease (see [`crate::ha`]). Controllers write for a node only when it is.
    pub fn owns(&self, node: &str) -> bool {
        self.inner.ha.as_ref().is_none_or(|ha| ha.owns(node))
    }

    /// True in HA mode.
    pub fn is_ha(&self) -> bool {
        self.inner.ha.is_some()
    }

    /// HA mode: the Node left Kubernetes (or lost the edge label): its Lease is deleted (every
    /// cloudcore may try; a missing Lease is fine). No-op without HA.
    pub async fn forget_node(&self, node: &str) {
        if let Some(ha) = &self.inner.ha
            && let Err(e) = ha.remove(node).await
        {
            warn!(%node, "cannot remove the node's Lease: {e}");
        }
    }

    /// HA mode: another cloudcore took `node`: close its session and drop its queue.
    fn drop_node(&self, node: &str) {
        let Some(n) = lock(&self.inner.nodes).remove(node) else {
            return;
        };
        if let Some(s) = lock(&n.session).as_ref() {
            s.cancel.cancel();
        }
        self.with_queue(&n, NodeQueue::clear);
        self.inner.metrics.nodes_lost.inc();
    }

    /// Names of the nodes with a live link.
    pub fn connected_nodes(&self) -> Vec<String> {
        lock(&self.inner.nodes)
            .values()
            .filter(|n| lock(&n.session).is_some())
            .map(|n| n.name.clone())
            .collect()
    }

    /// Messages queued for `node` (both lanes, including in flight).
    pub fn queue_depth(&self, node: &str) -> usize {
        lock(&self.inner.nodes)
            .get(node)
            .map(|n| n.queue().depth())
            .unwrap_or(0)
    }

    /// Stops accepting, closes every session and waits for the tasks.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        let store = lock(&self.inner.store).take();
        if let Some(mut store) = store {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
    }

    fn node(&self, name: &str) -> Arc<Node> {
        let mut nodes = lock(&self.inner.nodes);
        nodes
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Node {
                    name: name.to_owned(),
                    queue: Mutex::new(NodeQueue::new(name, self.inner.opts.max_pending_per_node)),
                    wake: Notify::new(),
                    session: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Runs `f` on the node's queue and moves the global gauges by the change it made (O(1): the
    /// hot path must not walk every node).
    fn with_queue<R>(&self, node: &Node, f: impl FnOnce(&mut NodeQueue) -> R) -> R {
        let mut q = node.queue();
        let (d0, i0) = (q.depth(), q.inflight_len());
        let r = f(&mut q);
        let (d1, i1) = (q.depth(), q.inflight_len());
        drop(q);
        let delta = |a: usize, b: usize| i64::try_from(b).unwrap_or(0) - i64::try_from(a).unwrap_or(0);
        self.inner.metrics.queue_depth.inc_by(delta(d0, d1));
        self.inner.metrics.acks_pending.inc_by(delta(i0, i1));
        r
    }

    /// Identity and node-limit checks, run before the upgrade completes.
    fn admit(&self, info: &ConnInfo) -> Result<(), Refusal> {
        let leaf = info
            .peer_certs
            .first()
            .ok_or_else(|| Refusal::new(403, "a client certificate is required"))?;
        match peer_identity(leaf) {
            Ok(PeerIdentity::Node(name)) if name == info.node_id => {}
            Ok(PeerIdentity::Node(name)) => {
                return Err(Refusal::new(
                    403,
                    format!(
                        "certificate is for node {name:?} but the connection claims node {:?}",
                        info.node_id
                    ),
                ));
            }
            Ok(PeerIdentity::Legacy) if self.inner.opts.allow_legacy_certs => {
                warn!(node = %info.node_id, remote = %info.remote,
                    "accepting an edge with the shared KubeEdge v1.2 certificate (CN kubeedge.io): it can claim \
                     any node name; issue it a node certificate and unset allowLegacyEdgeCert");
            }
            Ok(PeerIdentity::Legacy) => {
                return Err(Refusal::new(
                    403,
                    "shared KubeEdge v1.2 certificate (CN kubeedge.io) refused: issue a node certificate \
                     (keadm certgen node <name>) or set modules.cloudhub.allowLegacyEdgeCert: true",
                ));
            }
            Err(e) => return Err(Refusal::new(403, format!("unusable client certificate: {e}"))),
        }
        let connected = *lock(&self.inner.connected);
        let already = lock(&self.inner.nodes)
            .get(&info.node_id)
            .is_some_and(|n| lock(&n.session).is_some());
        if !already && connected >= self.inner.opts.node_limit {
            return Err(Refusal::new(
                503,
                format!(
                    "node limit of {} connected nodes reached (modules.cloudhub.nodeLimit)",
                    self.inner.opts.node_limit
                ),
            ));
        }
        Ok(())
    }

    fn refused(&self, remote: &str, e: &LinkError) {
        self.inner.metrics.refused.inc();
        match e {
            LinkError::Refused(r) => warn!(%remote, status = r.status, reason = %r.reason, "edge refused"),
            LinkError::Tls { .. } => warn!(%remote, error = %e, "edge TLS handshake failed"),
            _ => debug!(%remote, error = %e, "edge handshake failed"),
        }
    }

    async fn ws_accept_loop(self, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.inner.opts.tls.clone());
        loop {
            let (tcp, remote) = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => { warn!(error = %e, "websocket accept failed"); continue; }
                },
            };
            let _ = tcp.set_nodelay(true);
            let hub = self.clone();
            let acceptor = acceptor.clone();
            self.inner.tracker.spawn(async move {
                let limits = hub.inner.opts.limits.clone();
                let res = ke_transport::ws::accept(tcp, &acceptor, &limits, |i| hub.admit(i)).await;
                match res {
                    Ok((info, tx, rx)) => hub.run_session(info, tx, rx).await,
                    Err(e) => hub.refused(&remote.to_string(), &e),
                }
            });
        }
    }

    async fn quic_accept_loop(self, endpoint: quinn::Endpoint) {
        loop {
            let incoming = tokio::select! {
                _ = self.inner.cancel.cancelled() => { endpoint.close(0u32.into(), b"shutdown"); return; }
                i = endpoint.accept() => match i { Some(i) => i, None => return },
            };
            let hub = self.clone();
            self.inner.tracker.spawn(async move {
                let remote = incoming.remote_address().to_string();
                let limits = hub.inner.opts.limits.clone();
                match ke_transport::quic::accept(incoming, &limits, |i| hub.admit(i)).await {
                    Ok((info, tx, rx)) => hub.run_session(info, tx, rx).await,
                    Err(e) => hub.refused(&remote, &e),
                }
            });
        }
    }

    async fn unix_accept_loop(self, listener: UnixListener) {
        loop {
            let mut stream = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => { warn!(error = %e, "unix socket accept failed"); continue; }
                },
            };
            let hub = self.clone();
            self.inner.tracker.spawn(async move {
                let limit = hub.inner.opts.limits.max_message;
                let answer = async {
                    match ke_transport::unix::read_message(&mut stream, limit).await {
                        Ok(req) => match hub.request(req.clone(), hub.inner.opts.request_timeout).await {
                            Ok(reply) => reply,
                            Err(e) => error_from_hub(&req, &e.to_string()),
                        },
                        Err(e) => error_from_hub(&Message::default(), &format!("bad request: {e}")),
                    }
                };
                // A request still waiting for the edge (up to `request_timeout`; fire-and-forget
                // messages never get a reply) must not hold up shutdown.
                let reply = tokio::select! {
                    _ = hub.inner.cancel.cancelled() => return,
                    r = answer => r,
                };
                if let Err(e) = ke_transport::unix::write_message(&mut stream, &reply).await {
                    debug!(error = %e, "unix socket client went away before the reply");
                }
            });
        }
    }

    async fn run_session(&self, info: ConnInfo, tx: LinkTx, rx: LinkRx) {
        if let Some(ha) = &self.inner.ha {
            // Nothing is read from or written for the edge before its Lease is ours.
            match ha.acquire(&info.node_id).await {
                Ok(a) => {
                    if a.from.is_some() {
                        self.inner.metrics.lease_takeovers.inc();
                    }
                }
                Err(e) => {
                    warn!(node = %info.node_id, "cannot take the node's Lease, closing its link: {e}");
                    return;
                }
            }
        }
        let node = self.node(&info.node_id);
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let cancel = self.inner.cancel.child_token();
        {
            let mut connected = lock(&self.inner.connected);
            let mut slot = lock(&node.session);
            match slot.replace(SessionHandle {
                id,
                cancel: cancel.clone(),
            }) {
                Some(old) => {
                    info!(node = %info.node_id, "node reconnected: closing its previous session");
                    old.cancel.cancel();
                }
                None => *connected += 1,
            }
            self.inner
                .metrics
                .connected_nodes
                .set(i64::try_from(*connected).unwrap_or(i64::MAX));
        }
        self.with_queue(&node, NodeQueue::requeue_inflight);
        self.inner.metrics.connections.inc();
        info!(node = %info.node_id, transport = %info.transport, remote = %info.remote, "edge connected");
        let _ = self
            .inner
            .events
            .send(HubEvent::Connected(info.node_id.clone()))
            .await;

        let writer = {
            let hub = self.clone();
            let node = node.clone();
            let cancel = cancel.clone();
            self.inner
                .tracker
                .spawn(async move { hub.write_loop(&node, tx, cancel).await })
        };
        self.read_loop(&node, rx, &cancel).await;
        cancel.cancel();
        let _ = writer.await;

        let mine = {
            let mut connected = lock(&self.inner.connected);
            let mut slot = lock(&node.session);
            if slot.as_ref().is_some_and(|s| s.id == id) {
                *slot = None;
                *connected = connected.saturating_sub(1);
                self.inner
                    .metrics
                    .connected_nodes
                    .set(i64::try_from(*connected).unwrap_or(i64::MAX));
                true
            } else {
                false
            }
        };
        // In HA mode a node another cloudcore took is that one's to report.
        if mine && self.owns(&node.name) {
            self.with_queue(&node, NodeQueue::requeue_inflight);
            info!(node = %info.node_id, "edge disconnected");
            let _ = self
                .inner
                .events
                .send(HubEvent::Disconnected(info.node_id.clone()))
                .await;
        }
    }

    async fn read_loop(&self, node: &Node, mut rx: LinkRx, cancel: &CancellationToken) {
        let idle = self.inner.opts.keepalive_interval;
        loop {
            let item = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(idle, rx.recv()) => r,
            };
            let msg = match item {
                Err(_) => {
                    warn!(node = %node.name, "nothing heard for {idle:?} (two missed heartbeats): dropping the node");
                    return;
                }
                Ok(Err(e)) => {
                    if e.is_bad_frame() {
                        self.inner.metrics.bad_frames.inc();
                        warn!(node = %node.name, error = %e, "dropping edge that sent a bad frame");
                    } else {
                        debug!(node = %node.name, error = %e, "link read failed");
                    }
                    return;
                }
                Ok(Ok(None)) => return,
                Ok(Ok(Some(Inbound::Alive))) => continue,
                Ok(Ok(Some(Inbound::Message(m)))) => m,
            };
            self.handle_upstream(node, msg).await;
        }
    }

    async fn handle_upstream(&self, node: &Node, mut msg: Message) {
        self.inner.metrics.count_in(msg.operation());
        match msg.operation() {
            op::KEEPALIVE => return,
            op::VIADUCT_CONFIG | op::VIADUCT_PING | op::VIADUCT_PONG => {
                self.with_queue(node, |q| q.push_urgent(msg.response("ack")));
                node.wake.notify_one();
                return;
            }
            _ => {}
        }
        let parent = msg.parent_id().to_owned();
        if msg.operation() == op::RESPONSE {
            let acked = self.with_queue(node, |q| q.ack(&parent));
            node.wake.notify_one();
            let waiter = lock(&self.inner.waiters).remove(&parent);
            let matched = acked.is_some() || waiter.is_some();
            if let Some(w) = waiter {
                let _ = w.send(msg);
            }
            if let Some(orig) = acked {
                if let (Lane::Acked(key), Some(store)) = (classify(&orig), lock(&self.inner.store).as_ref()) {
                    store.delete(&node.name, &key, orig.id());
                }
                let _ = self
                    .inner
                    .events
                    .send(HubEvent::Acked {
                        node: node.name.clone(),
                        message: orig,
                    })
                    .await;
            }
            if !matched {
                debug!(node = %node.name, %parent, "response for no pending message (late or duplicate ack)");
            }
            return;
        }
        if !parent.is_empty()
            && let Some(w) = lock(&self.inner.waiters).remove(&parent)
        {
            let _ = w.send(msg);
            return;
        }
        msg.route.resource = resource::add_node_prefix(&node.name, msg.resource());
        let _ = self.inner.events.send(HubEvent::Upstream(msg)).await;
    }

    async fn write_loop(&self, node: &Node, mut tx: LinkTx, cancel: CancellationToken) {
        let o = &self.inner.opts;
        let far = Duration::from_secs(3600);
        loop {
            loop {
                let next = self.with_queue(node, |q| q.next(o.window, Instant::now()));
                let Some(m) = next else { break };
                if !self.write(node, &mut tx, m, &cancel).await {
                    return;
                }
            }
            let deadline = node.queue().next_deadline(o.ack_timeout, o.max_backoff);
            let sleep_until = deadline.unwrap_or_else(|| Instant::now() + far);
            tokio::select! {
                _ = cancel.cancelled() => { let _ = tx.close().await; return; }
                _ = node.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep_until.into()) => {
                    let due = self.with_queue(node, |q| q.due(Instant::now(), o.ack_timeout, o.max_backoff));
                    for m in due {
                        self.inner.metrics.resends.inc();
                        debug!(node = %node.name, id = %m.id(), "no ack yet: resending");
                        if !self.write(node, &mut tx, m, &cancel).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Writes one message with the node prefix stripped. False when the session must end.
    async fn write(&self, node: &Node, tx: &mut LinkTx, mut m: Message, cancel: &CancellationToken) -> bool {
        if let Some((_, edge)) = resource::strip_node_prefix(m.resource()) {
            m.route.resource = edge.to_owned();
        }
        match tokio::time::timeout(self.inner.opts.write_timeout, tx.send(&m)).await {
            Ok(Ok(())) => {
                self.inner.metrics.count_out(&m);
                true
            }
            Ok(Err(e)) => {
                debug!(node = %node.name, error = %e, "link write failed");
                cancel.cancel();
                false
            }
            Err(_) => {
                warn!(node = %node.name, "write took longer than {:?}: dropping the session", self.inner.opts.write_timeout);
                cancel.cancel();
                false
            }
        }
    }
}

fn error_from_hub(req: &Message, text: &str) -> Message {
    let mut m = req.error_reply(text);
    m.route.source = module::CLOUDHUB.to_owned();
    m
}

/// Binds the unix socket, replacing a stale socket file (never any other kind of file).
fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    UnixListener::bind(path)
}
