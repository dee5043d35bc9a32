//! The bus itself: routes, bounded queues, sync waiters.
//!
//! * Routes (module → queue sender, group → members) sit behind a `std::sync::RwLock`: they change
//!   only on registration, so the hot path takes a read lock, tries a non-blocking send and
//!   releases it. Only a full queue clones the sender and waits, outside the lock.
//! * Sync waiters are keyed by message id in 16 independently locked shards, so concurrent sync
//!   calls rarely meet on one lock. Each waiter carries a unique token: the guard that removes it on
//!   timeout or cancellation cannot remove a later waiter that reused the id.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ke_core::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Default capacity of a module's queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default time a sender waits for room in a full queue.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);

const WAITER_SHARDS: usize = 16;

/// Tuning of a [`Beehive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Capacity of each module's queue (messages). `0` is treated as `1`.
    pub queue_capacity: usize,
    /// Full-queue policy: a sender waits up to this long for room, then gets
    /// [`Error::QueueFull`]. Messages are never dropped silently.
    pub send_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }
}

/// One registered module as the router sees it.
#[derive(Debug, Clone)]
struct Member {
    name: Arc<str>,
    tx: mpsc::Sender<Message>,
}

#[derive(Debug, Default)]
struct Routes {
    modules: HashMap<String, Route>,
    /// Group → members in registration order. Rebuilt on (rare) registration so that a group send
    /// clones one `Arc` under the lock.
    groups: HashMap<String, Arc<[Member]>>,
}

#[derive(Debug)]
struct Route {
    group: String,
    member: Member,
    /// Identifies this registration, so that a stale cleanup cannot remove a successor.
    registration: u64,
}

#[derive(Debug)]
enum Waiter {
    /// `send_sync`: the first reply resolves and removes the waiter.
    One(oneshot::Sender<Message>),
    /// `send_to_group_sync`: `remaining` more replies expected; the channel has room for all.
    Many {
        tx: mpsc::Sender<Message>,
        remaining: usize,
    },
}

#[derive(Debug)]
struct WaiterEntry {
    token: u64,
    waiter: Waiter,
}

type Shard = Mutex<HashMap<String, WaiterEntry>>;

#[derive(Debug)]
struct Inner {
    opts: Options,
    routes: RwLock<Routes>,
    waiters: [Shard; WAITER_SHARDS],
    hasher: RandomState,
    next_token: AtomicU64,
}

/// The module bus. Cheap to clone (one `Arc`); every clone is the same bus.
///
/// Start with [`register`](Self::register) for each module, then [`send`](Self::send),
/// [`send_to_group`](Self::send_to_group), [`send_sync`](Self::send_sync) and
/// [`send_resp`](Self::send_resp). Most code uses it through [`Core`](crate::Core).
#[derive(Debug, Clone)]
pub struct Beehive {
    inner: Arc<Inner>,
}

impl Default for Beehive {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

/// The receiving end of a module's queue, returned by [`Beehive::register`].
///
/// Dropping it closes the queue (later sends fail with [`Error::MailboxClosed`]);
/// [`Beehive::cleanup`] also frees the module name.
#[derive(Debug)]
pub struct Mailbox {
    module: String,
    group: String,
    registration: u64,
    rx: mpsc::Receiver<Message>,
}

impl Mailbox {
    /// Next message; `None` once the module was cleaned up and its queue is drained.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// Next message, or `None` once `cancel` is cancelled (checked first) or the queue is closed
    /// and drained: the condition every module loop ends on. Cancel-safe, like [`Self::recv`].
    pub async fn recv_until(&mut self, cancel: &CancellationToken) -> Option<Message> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            m = self.rx.recv() => m,
        }
    }

    /// A message if one is queued now, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.rx.try_recv().ok()
    }

    /// Name of the module this mailbox belongs to.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// Group of the module.
    pub fn group(&self) -> &str {
        &self.group
    }

    pub(crate) fn registration(&self) -> u64 {
        self.registration
    }

    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Removes a sync waiter when the call ends, whatever the outcome (reply, timeout, send error or
/// the caller's future being dropped).
struct WaiterGuard<'a> {
    inner: &'a Inner,
    id: String,
    token: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.inner.shard(&self.id));
        if let Entry::Occupied(e) = map.entry(std::mem::take(&mut self.id))
            && e.get().token == self.token
        {
            e.remove();
        }
    }
}

fn lock(shard: &Shard) -> std::sync::MutexGuard<'_, HashMap<String, WaiterEntry>> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn shard(&self, id: &str) -> &Shard {
        // Truncation is intended: only the low bits pick a shard.
        let h = self.hasher.hash_one(id) as usize;
        &self.waiters[h % WAITER_SHARDS]
    }

    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn routes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_waiter(&self, id: &str, waiter: Waiter) -> Result<WaiterGuard<'_>> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        match lock(self.shard(id)).entry(id.to_owned()) {
            Entry::Occupied(_) => {
                return Err(Error::DuplicateSyncId {
                    msg_id: id.to_owned(),
                });
            }
            Entry::Vacant(v) => {
                v.insert(WaiterEntry { token, waiter });
            }
        }
        Ok(WaiterGuard {
            inner: self,
            id: id.to_owned(),
            token,
        })
    }

    /// Hands `resp` to the waiter whose id is its parent id; returns it if there is none (or the
    /// waiter is already gone), `None` once delivered.
    fn resolve(&self, resp: Message) -> Option<Message> {
        let parent = resp.header.parent_id.as_str();
        if parent.is_empty() {
            return Some(resp);
        }
        let mut map = lock(self.shard(parent));
        let Some(entry) = map.get_mut(parent) else {
            return Some(resp);
        };
        match &mut entry.waiter {
            Waiter::One(_) => {
                let removed = map.remove(parent);
                drop(map);
                match removed.map(|e| e.waiter) {
                    Some(Waiter::One(tx)) => tx.send(resp).err(),
                    _ => Some(resp),
                }
            }
            Waiter::Many { tx, remaining } => {
                *remaining = remaining.saturating_sub(1);
                let tx = tx.clone();
                if *remaining == 0 {
                    map.remove(parent);
                }
                drop(map);
                // The channel has one slot per expected reply, so it is never full here; it is
                // closed only if the caller already gave up.
                tx.try_send(resp).err().map(|e| e.into_inner())
            }
        }
    }
}

impl Beehive {
    /// A new, empty bus.
    pub fn new(opts: Options) -> Self {
        Self {
            inner: Arc::new(Inner {
                opts: Options {
                    queue_capacity: opts.queue_capacity.max(1),
                    ..opts
                },
                routes: RwLock::default(),
                waiters: std::array::from_fn(|_| Mutex::default()),
                hasher: RandomState::new(),
                next_token: AtomicU64::new(0),
            }),
        }
    }

    /// The options in force.
    pub fn options(&self) -> Options {
        self.inner.opts
    }

    /// Registers `module` in `group` with the default queue capacity and returns its mailbox.
    pub fn register(&self, module: &str, group: &str) -> Result<Mailbox> {
        self.register_with_capacity(module, group, self.inner.opts.queue_capacity)
    }

    /// Like [`register`](Self::register) with a queue of `capacity` messages (`0` means `1`).
    pub fn register_with_capacity(&self, module: &str, group: &str, capacity: usize) -> Result<Mailbox> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let member = Member {
            name: Arc::from(module),
            tx,
        };
        let registration = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let mut routes = self.inner.routes_mut();
        let Entry::Vacant(slot) = routes.modules.entry(module.to_owned()) else {
            return Err(Error::DuplicateModule {
                module: module.to_owned(),
            });
        };
        slot.insert(Route {
            group: group.to_owned(),
            member: member.clone(),
            registration,
        });
        let members = routes.groups.entry(group.to_owned()).or_default();
        *members = members.iter().cloned().chain([member]).collect();
        drop(routes);
        tracing::debug!(module, group, "module registered");
        Ok(Mailbox {
            module: module.to_owned(),
            group: group.to_owned(),
            registration,
            rx,
        })
    }

    /// Unregisters `module`: later sends to it fail with [`Error::UnknownModule`], it leaves its
    /// group, and its mailbox yields `None` once drained (after any send already waiting for
    /// room completes). Returns false if no such module was registered.
    pub fn cleanup(&self, module: &str) -> bool {
        self.cleanup_registration(module, None)
    }

    /// [`cleanup`](Self::cleanup), but only if `module` is still the registration `only` (when
    /// given): a module task that ends must not unregister a successor of the same name.
    pub(crate) fn cleanup_registration(&self, module: &str, only: Option<u64>) -> bool {
        let mut routes = self.inner.routes_mut();
        let Entry::Occupied(entry) = routes.modules.entry(module.to_owned()) else {
            return false;
        };
        if only.is_some_and(|r| r != entry.get().registration) {
            return false;
        }
        let route = entry.remove();
        if let Entry::Occupied(mut e) = routes.groups.entry(route.group) {
            let rest: Arc<[Member]> = e.get().iter().filter(|m| &*m.name != module).cloned().collect();
            if rest.is_empty() {
                e.remove();
            } else {
                e.insert(rest);
            }
        }
        drop(routes);
        tracing::debug!(module, "module cleaned up");
        true
    }

    /// Queues `msg` for `module`. If the queue is full, waits up to
    /// [`Options::send_timeout`] for room, then fails with [`Error::QueueFull`].
    pub async fn send(&self, module: &str, msg: Message) -> Result<()> {
        let deadline = Instant::now() + self.inner.opts.send_timeout;
        self.send_until(module, msg, deadline).await
    }

    async fn send_until(&self, module: &str, msg: Message, deadline: Instant) -> Result<()> {
        let (tx, msg) = {
            let routes = self.inner.routes();
            let Some(route) = routes.modules.get(module) else {
                return Err(Error::UnknownModule {
                    module: module.to_owned(),
                });
            };
            match route.member.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(Error::MailboxClosed {
                        module: module.to_owned(),
                    });
                }
                Err(mpsc::error::TrySendError::Full(msg)) => (route.member.tx.clone(), msg),
            }
        };
        wait_and_send(module, &tx, msg, deadline).await
    }

    /// Delivers a copy of `msg` to every module of `group` and returns how many there were.
    ///
    /// Members with room get it at once; full queues are then waited for against one shared
    /// deadline, so the call takes at most one [`Options::send_timeout`]. On failure the first
    /// error is returned after every member was tried; the other members still got the message.
    pub async fn send_to_group(&self, group: &str, msg: Message) -> Result<usize> {
        let deadline = Instant::now() + self.inner.opts.send_timeout;
        send_to_members(&self.members(group)?, msg, deadline).await
    }

    fn members(&self, group: &str) -> Result<Arc<[Member]>> {
        match self.inner.routes().groups.get(group) {
            Some(m) if !m.is_empty() => Ok(Arc::clone(m)),
            _ => Err(Error::UnknownGroup {
                group: group.to_owned(),
            }),
        }
    }

    /// Sends `msg` to `module` with `header.sync = true` and waits for the reply whose
    /// `parent_msg_id` is `msg`'s id (a fresh id is set if it has none). `timeout` bounds the whole
    /// call, queueing included. The waiter is removed however the call ends.
    pub async fn send_sync(&self, module: &str, mut msg: Message, timeout: Duration) -> Result<Message> {
        let deadline = Instant::now() + timeout;
        prepare_sync(&mut msg);
        let id = msg.header.id.clone();
        let (tx, rx) = oneshot::channel();
        let _guard = self.inner.add_waiter(&id, Waiter::One(tx))?;
        let send_deadline = deadline.min(Instant::now() + self.inner.opts.send_timeout);
        self.send_until(module, msg, send_deadline).await?;
        match timeout_at(deadline, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            // The sender lives in the map until a reply is sent through it; only our guard
            // removes it otherwise, so a dropped sender means no reply will come.
            Ok(Err(_)) | Err(_) => Err(Error::SyncTimeout { msg_id: id, timeout }),
        }
    }

    /// Sends `msg` (with `header.sync = true`) to every module of `group` and waits until each
    /// has replied, or `timeout` expires. Replies come in arrival order.
    pub async fn send_to_group_sync(
        &self,
        group: &str,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        prepare_sync(&mut msg);
        let id = msg.header.id.clone();
        let members = self.members(group)?;
        let expected = members.len();
        let (tx, mut rx) = mpsc::channel(expected);
        let _guard = self.inner.add_waiter(
            &id,
            Waiter::Many {
                tx,
                remaining: expected,
            },
        )?;
        let send_deadline = deadline.min(Instant::now() + self.inner.opts.send_timeout);
        send_to_members(&members, msg, send_deadline).await?;
        let mut replies = Vec::with_capacity(expected);
        while replies.len() < expected {
            match timeout_at(deadline, rx.recv()).await {
                Ok(Some(resp)) => replies.push(resp),
                Ok(None) | Err(_) => {
                    tracing::warn!(
                        group,
                        msg_id = %id,
                        received = replies.len(),
                        expected,
                        "group sync call timed out"
                    );
                    return Err(Error::SyncTimeout { msg_id: id, timeout });
                }
            }
        }
        Ok(replies)
    }

    /// Routes a reply to the sync call whose message id equals `resp.header.parent_id`. A reply
    /// that matches no pending call (late, duplicate, unknown) is dropped, logged, and reported
    /// as [`Error::NoWaiter`]; it is never handed to another waiter.
    pub fn send_resp(&self, resp: Message) -> Result<()> {
        let Some(resp) = self.inner.resolve(resp) else {
            return Ok(());
        };
        tracing::warn!(
            parent_id = %resp.header.parent_id,
            msg_id = %resp.header.id,
            operation = %resp.route.operation,
            resource = %resp.route.resource,
            "reply matches no pending sync call; dropped"
        );
        Err(Error::NoWaiter {
            parent_id: resp.header.parent_id,
        })
    }

    /// For hubs: if `msg` answers a pending sync call (its `parent_msg_id` has a live waiter),
    /// hands it to that waiter and returns `None`; otherwise returns it unchanged for normal
    /// routing. Logs nothing.
    pub fn try_resolve(&self, msg: Message) -> Option<Message> {
        self.inner.resolve(msg)
    }

    /// True if a sync call with message id `id` is waiting for a reply.
    pub fn is_pending(&self, id: &str) -> bool {
        lock(self.inner.shard(id)).contains_key(id)
    }

    /// Number of sync calls waiting for a reply.
    pub fn pending_sync(&self) -> usize {
        self.inner.waiters.iter().map(|s| lock(s).len()).sum()
    }

    /// Messages queued (or being queued) for `module`; `None` if it is not registered.
    pub fn depth(&self, module: &str) -> Option<usize> {
        let routes = self.inner.routes();
        let tx = &routes.modules.get(module)?.member.tx;
        Some(tx.max_capacity() - tx.capacity())
    }

    /// True if `module` is registered.
    pub fn is_registered(&self, module: &str) -> bool {
        self.inner.routes().modules.contains_key(module)
    }

    /// Group of a registered module.
    pub fn group_of(&self, module: &str) -> Option<String> {
        Some(self.inner.routes().modules.get(module)?.group.clone())
    }

    /// Modules of `group`, in registration order (empty if none).
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.inner
            .routes()
            .groups
            .get(group)
            .map(|ms| ms.iter().map(|m| m.name.to_string()).collect())
            .unwrap_or_default()
    }
}

/// Delivers copies of `msg` to `members`: non-blocking first, then waits for full queues until the
/// one shared `deadline` (so the whole call is bounded by one timeout).
async fn send_to_members(members: &[Member], msg: Message, deadline: Instant) -> Result<usize> {
    let mut blocked = Vec::new();
    let mut first_err = None;
    let last = members.len().saturating_sub(1);
    let mut msg = Some(msg);
    for (i, m) in members.iter().enumerate() {
        let copy = if i == last { msg.take() } else { msg.clone() };
        let Some(copy) = copy else { break };
        match m.tx.try_send(copy) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(copy)) => blocked.push((m, copy)),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                first_err.get_or_insert(Error::MailboxClosed {
                    module: m.name.to_string(),
                });
            }
        }
    }
    for (m, copy) in blocked {
        if let Err(e) = wait_and_send(&m.name, &m.tx, copy, deadline).await {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => Ok(members.len()),
        Some(e) => Err(e),
    }
}

fn prepare_sync(msg: &mut Message) {
    msg.header.sync = true;
    if msg.header.id.is_empty() {
        msg.header.id = ke_core::message::new_id();
    }
}

/// Slow path of a send: waits for room until `deadline`.
async fn wait_and_send(
    module: &str,
    tx: &mpsc::Sender<Message>,
    msg: Message,
    deadline: Instant,
) -> Result<()> {
    match timeout_at(deadline, tx.reserve()).await {
        Ok(Ok(permit)) => {
            permit.send(msg);
            Ok(())
        }
        Ok(Err(_)) => Err(Error::MailboxClosed {
            module: module.to_owned(),
        }),
        Err(_) => {
            tracing::warn!(
                module,
                msg_id = %msg.header.id,
                operation = %msg.route.operation,
                resource = %msg.route.resource,
                "queue full until send timeout; message not delivered"
            );
            Err(Error::QueueFull {
                module: module.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ke_core::names::{group, module, op};
    use serde_json::json;

    const T: Duration = Duration::from_secs(1);

    fn msg(resource: &str) -> Message {
        Message::new(module::EDGED, group::META, op::UPDATE, resource, json!({"k": 1}))
    }

    fn hive(cap: usize) -> Beehive {
        Beehive::new(Options {
            queue_capacity: cap,
            send_timeout: Duration::from_secs(5),
        })
    }

    fn ok<V>(r: Result<V>) -> V {
        r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    /// A module that answers every request with `response(<its name>)` via `send_resp`.
    fn spawn_echo(h: &Beehive, mut mb: Mailbox) -> tokio::task::JoinHandle<usize> {
        let h = h.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(req) = mb.recv().await {
                assert!(req.header.sync, "sync flag must be set on sync requests");
                ok(h.send_resp(req.response(mb.module().to_owned())));
                n += 1;
            }
            n
        })
    }

    #[tokio::test]
    async fn send_delivers_in_order_to_the_named_module_only() {
        let h = hive(8);
        let mut a = ok(h.register("a", "g"));
        let mut b = ok(h.register("b", "g"));
        let m1 = msg("default/pod/1");
        let m2 = msg("default/pod/2");
        ok(h.send("a", m1.clone()).await);
        ok(h.send("a", m2.clone()).await);
        assert_eq!(h.depth("a"), Some(2));
        assert_eq!(h.depth("b"), Some(0));
        assert_eq!(a.recv().await, Some(m1));
        assert_eq!(a.recv().await, Some(m2));
        assert!(b.try_recv().is_none());
        assert_eq!(h.depth("a"), Some(0));
        assert_eq!((a.module(), a.group()), ("a", "g"));
        assert_eq!(h.pending_sync(), 0);
    }

    #[tokio::test]
    async fn recv_until_yields_messages_then_stops_on_cancel_or_close() {
        let h = hive(8);
        let mut a = ok(h.register("a", "g"));
        let cancel = CancellationToken::new();
        let m1 = msg("default/pod/1");
        ok(h.send("a", m1.clone()).await);
        assert_eq!(a.recv_until(&cancel).await, Some(m1));
        // Cancellation wins over a queued message.
        ok(h.send("a", msg("default/pod/2")).await);
        cancel.cancel();
        assert_eq!(a.recv_until(&cancel).await, None);
        // A closed, drained queue ends it too.
        let mut b = ok(h.register("b", "g"));
        assert!(h.cleanup("b"));
        assert_eq!(b.recv_until(&CancellationToken::new()).await, None);
    }

    #[tokio::test]
    async fn names_are_unique_and_unknown_targets_fail() {
        let h = hive(8);
        let _a = ok(h.register("a", "g1"));
        assert_eq!(
            h.register("a", "g2").err(),
            Some(Error::DuplicateModule { module: "a".into() })
        );
        assert_eq!(
            h.group_of("a").as_deref(),
            Some("g1"),
            "failed re-register must not move a"
        );
        assert_eq!(
            h.send("nope", msg("x")).await,
            Err(Error::UnknownModule {
                module: "nope".into()
            })
        );
        assert_eq!(
            h.send_to_group("nogroup", msg("x")).await,
            Err(Error::UnknownGroup {
                group: "nogroup".into()
            })
        );
        assert!(matches!(
            h.send_sync("nope", msg("x"), T).await,
            Err(Error::UnknownModule { .. })
        ));
        assert_eq!(h.pending_sync(), 0, "failed sync send must not leave a waiter");
        assert!(matches!(
            h.send_to_group_sync("nogroup", msg("x"), T).await,
            Err(Error::UnknownGroup { .. })
        ));
        assert_eq!(h.depth("nope"), None);
    }

    #[tokio::test]
    async fn group_fan_out_reaches_every_member() {
        let h = hive(8);
        let mut bus1 = ok(h.register(module::EVENTBUS, group::BUS));
        let mut bus2 = ok(h.register(module::SERVICEBUS, group::BUS));
        let mut other = ok(h.register(module::TWIN, group::TWIN));
        assert_eq!(
            h.group_members(group::BUS),
            vec![module::EVENTBUS.to_owned(), module::SERVICEBUS.to_owned()]
        );
        let m = msg("node/connection");
        assert_eq!(ok(h.send_to_group(group::BUS, m.clone()).await), 2);
        assert_eq!(bus1.recv().await, Some(m.clone()));
        assert_eq!(bus2.recv().await, Some(m));
        assert!(other.try_recv().is_none());
    }

    #[tokio::test]
    async fn cleanup_unregisters_closes_and_frees_the_name() {
        let h = hive(8);
        let mut a = ok(h.register("a", "g"));
        let _b = ok(h.register("b", "g"));
        let queued = msg("q");
        ok(h.send("a", queued.clone()).await);
        assert!(h.cleanup("a"));
        assert!(!h.cleanup("a"), "second cleanup finds nothing");
        assert!(!h.is_registered("a"));
        assert_eq!(h.group_members("g"), vec!["b".to_owned()]);
        assert!(matches!(
            h.send("a", msg("x")).await,
            Err(Error::UnknownModule { .. })
        ));
        // Already queued messages are still delivered, then the mailbox ends.
        assert_eq!(a.recv().await, Some(queued));
        assert_eq!(a.recv().await, None);
        // Last member gone: the group is gone too.
        assert!(h.cleanup("b"));
        assert!(matches!(
            h.send_to_group("g", msg("x")).await,
            Err(Error::UnknownGroup { .. })
        ));
        // The name can be used again.
        let mut again = ok(h.register("a", "g"));
        ok(h.send("a", msg("y")).await);
        assert!(again.recv().await.is_some());
    }

    #[tokio::test]
    async fn dropped_mailbox_is_reported_not_ignored() {
        let h = hive(8);
        drop(ok(h.register("a", "g")));
        assert_eq!(
            h.send("a", msg("x")).await,
            Err(Error::MailboxClosed { module: "a".into() })
        );
        assert!(matches!(
            h.send_to_group("g", msg("x")).await,
            Err(Error::MailboxClosed { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_waits_then_fails_with_queue_full() {
        let h = hive(2);
        let mut a = ok(h.register("a", "g"));
        ok(h.send("a", msg("1")).await);
        ok(h.send("a", msg("2")).await);
        assert_eq!(h.depth("a"), Some(2));
        let start = Instant::now();
        assert_eq!(
            h.send("a", msg("3")).await,
            Err(Error::QueueFull { module: "a".into() })
        );
        assert!(
            start.elapsed() >= Duration::from_secs(5),
            "waited the send timeout"
        );
        // Nothing was dropped or half-delivered.
        assert_eq!(a.recv().await.map(|m| m.route.resource), Some("1".into()));
        assert_eq!(a.recv().await.map(|m| m.route.resource), Some("2".into()));
        assert!(a.try_recv().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_sender_proceeds_when_room_appears() {
        let h = hive(1);
        let mut a = ok(h.register("a", "g"));
        ok(h.send("a", msg("1")).await);
        let h2 = h.clone();
        let waiting = tokio::spawn(async move { h2.send("a", msg("2")).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiting.is_finished(), "sender must wait while the queue is full");
        assert_eq!(a.recv().await.map(|m| m.route.resource), Some("1".into()));
        assert!(
            waiting.await.is_ok_and(|r| r.is_ok()),
            "waiting sender must succeed"
        );
        assert_eq!(a.recv().await.map(|m| m.route.resource), Some("2".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn group_send_with_one_full_member_delivers_to_the_others() {
        let h = hive(1);
        let mut a = ok(h.register("a", "g"));
        let mut b = ok(h.register("b", "g"));
        ok(h.send("a", msg("fill")).await);
        assert_eq!(
            h.send_to_group("g", msg("fan")).await,
            Err(Error::QueueFull { module: "a".into() })
        );
        assert_eq!(b.recv().await.map(|m| m.route.resource), Some("fan".into()));
        assert_eq!(a.recv().await.map(|m| m.route.resource), Some("fill".into()));
        assert!(a.try_recv().is_none());
    }

    #[tokio::test]
    async fn send_sync_gets_the_matching_reply() {
        let h = hive(8);
        let echo = spawn_echo(&h, ok(h.register("meta", "meta")));
        let req = msg("default/pod/p");
        let reply = ok(h.send_sync("meta", req.clone(), T).await);
        assert_eq!(reply.parent_id(), req.id());
        assert_eq!(reply.content, json!("meta"));
        assert_eq!(h.pending_sync(), 0);
        // A message without id gets one.
        let mut anon = msg("x");
        anon.header.id.clear();
        let reply = ok(h.send_sync("meta", anon, T).await);
        assert!(!reply.parent_id().is_empty());
        h.cleanup("meta");
        assert_eq!(ok(echo.await.map_err(|e| panic!("{e}"))), 2);
    }

    #[tokio::test]
    async fn concurrent_sync_calls_get_their_own_replies() {
        let h = hive(64);
        let mut mb = ok(h.register("srv", "g"));
        let replier = h.clone();
        // Replies in reverse order of arrival.
        let srv = tokio::spawn(async move {
            let mut reqs = Vec::new();
            for _ in 0..16 {
                reqs.extend(mb.recv().await);
            }
            for r in reqs.into_iter().rev() {
                let body = r.route.resource.clone();
                ok(replier.send_resp(r.response(body)));
            }
        });
        let calls: Vec<_> = (0..16)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move {
                    let reply = ok(h.send_sync("srv", msg(&format!("r{i}")), T).await);
                    assert_eq!(reply.content, json!(format!("r{i}")));
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap_or_else(|e| panic!("{e}"));
        }
        srv.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.pending_sync(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sync_timeout_removes_the_waiter_and_late_reply_is_dropped() {
        let h = hive(8);
        let mut mb = ok(h.register("slow", "g"));
        let req = msg("default/node/n1");
        let id = req.id().to_owned();
        let h2 = h.clone();
        let call = tokio::spawn(async move { h2.send_sync("slow", req, T).await });
        let got = mb.recv().await.unwrap_or_else(|| panic!("request not delivered"));
        assert!(got.header.sync);
        assert!(h.is_pending(&id));
        assert_eq!(h.pending_sync(), 1);
        let res = call.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            res,
            Err(Error::SyncTimeout {
                msg_id: id.clone(),
                timeout: T
            })
        );
        assert_eq!(h.pending_sync(), 0, "timed-out waiter leaked");
        assert!(!h.is_pending(&id));
        // The late reply finds no waiter: error for send_resp, handed back by try_resolve.
        let late = got.ack();
        assert_eq!(h.send_resp(late.clone()), Err(Error::NoWaiter { parent_id: id }));
        assert_eq!(h.try_resolve(late.clone()), Some(late));
    }

    #[tokio::test(start_paused = true)]
    async fn late_reply_never_reaches_a_newer_waiter() {
        let h = hive(8);
        let mut mb = ok(h.register("slow", "g"));
        let first = msg("first");
        let h2 = h.clone();
        let f = first.clone();
        let res = tokio::spawn(async move { h2.send_sync("slow", f, T).await });
        let got_first = mb.recv().await.unwrap_or_else(|| panic!("no request"));
        assert!(matches!(res.await, Ok(Err(Error::SyncTimeout { .. }))));

        let second = msg("second");
        let h2 = h.clone();
        let s = second.clone();
        let pending = tokio::spawn(async move { h2.send_sync("slow", s, T).await });
        let got_second = mb.recv().await.unwrap_or_else(|| panic!("no request"));
        assert!(h.send_resp(got_first.response("stale")).is_err());
        ok(h.send_resp(got_second.response("fresh")));
        let reply = ok(pending.await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            (reply.parent_id(), &reply.content),
            (second.id(), &json!("fresh"))
        );
    }

    #[tokio::test]
    async fn cancelled_sync_call_leaves_no_waiter() {
        let h = hive(8);
        let _mb = ok(h.register("silent", "g"));
        let h2 = h.clone();
        let call =
            tokio::spawn(async move { h2.send_sync("silent", msg("x"), Duration::from_secs(3600)).await });
        while h.pending_sync() == 0 {
            tokio::task::yield_now().await;
        }
        call.abort();
        assert!(call.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(h.pending_sync(), 0);
    }

    #[tokio::test]
    async fn duplicate_sync_id_is_refused() {
        let h = hive(8);
        let mut mb = ok(h.register("srv", "g"));
        let req = msg("x");
        let h2 = h.clone();
        let r = req.clone();
        let first = tokio::spawn(async move { h2.send_sync("srv", r, T).await });
        let got = mb.recv().await.unwrap_or_else(|| panic!("no request"));
        assert_eq!(
            h.send_sync("srv", req.clone(), T).await,
            Err(Error::DuplicateSyncId {
                msg_id: req.id().to_owned()
            })
        );
        assert_eq!(
            h.pending_sync(),
            1,
            "the refused call must not remove the first waiter"
        );
        ok(h.send_resp(got.ack()));
        assert!(first.await.is_ok_and(|r| r.is_ok()));
    }

    #[tokio::test]
    async fn try_resolve_hands_replies_to_waiters_and_returns_the_rest() {
        let h = hive(8);
        let mut hub = ok(h.register("websocket", "hub"));
        let h2 = h.clone();
        let req = msg("default/nodestatus/n1");
        let r = req.clone();
        let call = tokio::spawn(async move { h2.send_sync("websocket", r, T).await });
        let sent = hub.recv().await.unwrap_or_else(|| panic!("no request"));
        // Unrelated messages come back untouched.
        let unrelated = msg("default/pod/p");
        assert_eq!(h.try_resolve(unrelated.clone()), Some(unrelated));
        let foreign = Message::new("a", "b", op::RESPONSE, "r", "OK").with_parent("not-pending");
        assert_eq!(h.try_resolve(foreign.clone()), Some(foreign));
        // The answer is consumed and reaches the caller.
        let answer = sent.ack();
        assert_eq!(h.try_resolve(answer.clone()), None);
        assert_eq!(call.await.ok().and_then(Result::ok), Some(answer));
        assert_eq!(h.pending_sync(), 0);
    }

    #[tokio::test]
    async fn send_resp_without_parent_is_an_error() {
        let h = hive(8);
        assert_eq!(
            h.send_resp(msg("x")),
            Err(Error::NoWaiter {
                parent_id: String::new()
            })
        );
    }

    #[tokio::test]
    async fn group_sync_collects_one_reply_per_member() {
        let h = hive(8);
        let e1 = spawn_echo(&h, ok(h.register("m1", "meta")));
        let e2 = spawn_echo(&h, ok(h.register("m2", "meta")));
        let req = msg("node/connection");
        let replies = ok(h.send_to_group_sync("meta", req.clone(), T).await);
        let mut who: Vec<_> = replies
            .iter()
            .inspect(|r| assert_eq!(r.parent_id(), req.id()))
            .filter_map(|r| r.content_str().map(str::to_owned))
            .collect();
        who.sort();
        assert_eq!(who, ["m1", "m2"]);
        assert_eq!(h.pending_sync(), 0);
        // A third reply for the same request has nowhere to go.
        assert!(matches!(h.send_resp(req.ack()), Err(Error::NoWaiter { .. })));
        h.cleanup("m1");
        h.cleanup("m2");
        assert!(e1.await.is_ok() && e2.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn group_sync_times_out_when_a_member_stays_silent() {
        let h = hive(8);
        let echo = spawn_echo(&h, ok(h.register("m1", "meta")));
        let _silent = ok(h.register("m2", "meta"));
        let req = msg("x");
        assert_eq!(
            h.send_to_group_sync("meta", req.clone(), T).await,
            Err(Error::SyncTimeout {
                msg_id: req.id().to_owned(),
                timeout: T
            })
        );
        assert_eq!(h.pending_sync(), 0);
        h.cleanup("m1");
        assert!(echo.await.is_ok());
    }

    #[test]
    fn zero_capacity_is_clamped() {
        let h = hive(0);
        assert_eq!(h.options().queue_capacity, 1);
        let _mb = ok(h.register_with_capacity("a", "g", 0));
        assert_eq!(h.depth("a"), Some(0));
    }
}
