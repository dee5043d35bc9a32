//! The module: its main loop and one handler per operation.

use std::sync::Arc;

use ke_beehive::{Beehive, Module, ModuleContext};
use ke_core::Message;
use ke_core::message::{new_id, now_millis};
use ke_core::names::{group, module, op, res};
use ke_core::resource::kind;
use ke_store::Store;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::options::MetaManagerOptions;
use crate::rules::{self, EDGEFUNCTION, Origin};

/// Legacy function-compute operations.
const OP_ACTION: &str = "action";
const OP_ACTION_RESULT: &str = "action_result";
/// CSI operations relayed to edged.
const VOLUME_OPS: [&str; 4] = [
    "createvolume",
    "deletevolume",
    "controllerpublishvolume",
    "controllerunpublishvolume",
];

/// The metaManager beehive module (name `metaManager`, group `meta`).
///
/// Build it with [`MetaManager::new`] and register it on a [`ke_beehive::Core`]; it runs until the
/// core shuts down. See the crate docs for what it does with each message.
#[derive(Debug)]
pub struct MetaManager {
    opts: MetaManagerOptions,
    store: Store,
}

impl MetaManager {
    /// A module that keeps its data in `store` (open it with [`ke_store::Store::open`] on
    /// `database.dataSource`; the device twin may share the same handle).
    pub fn new(opts: MetaManagerOptions, store: Store) -> Self {
        Self { opts, store }
    }

    /// The options.
    pub fn options(&self) -> &MetaManagerOptions {
        &self.opts
    }
}

impl Module for MetaManager {
    fn name(&self) -> &str {
        module::META_MANAGER
    }

    fn group(&self) -> &str {
        group::META
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
        let interval = self.opts.pod_status_sync_interval;
        let mut worker = Worker {
            shared: Arc::new(Shared {
                opts: self.opts,
                store: self.store,
                hive: beehive,
            }),
            connected: false,
            cancel: cancel.clone(),
            tracker,
        };
        let mut ticker = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                () = tick(ticker.as_mut()) => worker.sync_pod_status().await,
                m = mailbox.recv_until(&cancel) => match m {
                    Some(m) => worker.handle(m).await,
                    None => break,
                },
            }
        }
    }
}

/// Next tick of the resync timer; never, when it is disabled.
async fn tick(ticker: Option<&mut tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// What the main loop and the tasks it spawns share.
#[derive(Debug)]
struct Shared {
    opts: MetaManagerOptions,
    store: Store,
    hive: Beehive,
}

impl Shared {
    /// Sends to an edge module. A module that is not there (disabled edgemesh, edged not started)
    /// is not an error for metaManager: the data is in the DB and will be read from there.
    async fn to_module(&self, target: &str, msg: Message) {
        use ke_beehive::Error as E;
        match self.hive.send(target, msg).await {
            Ok(()) => {}
            Err(e @ (E::UnknownModule { .. } | E::MailboxClosed { .. })) => {
                tracing::debug!(%e, "not forwarded");
            }
            Err(e) => tracing::warn!(%e, "not forwarded"),
        }
    }

    /// Sends towards the cloud (group `contextSendGroup`).
    async fn to_cloud(&self, msg: Message) {
        let g = &self.opts.context_send_group;
        match self.hive.send_to_group(g, msg).await {
            Ok(_) => {}
            Err(e @ ke_beehive::Error::UnknownGroup { .. }) => {
                tracing::debug!(%e, "not sent to the cloud");
            }
            Err(e) => tracing::warn!(%e, "not sent to the cloud"),
        }
    }

    /// Answers an edge request: through the waiter if it is synchronous, else as a message to the
    /// requester (`fallback` module when the source is not a known requester).
    async fn reply(&self, req: &Message, resp: Message) {
        if req.header.sync {
            if let Err(e) = self.hive.send_resp(resp) {
                tracing::debug!(%e, request = %req, "requester no longer waits");
            }
        } else {
            let kind = rules::resource(req).map(|r| r.kind).unwrap_or_default();
            self.to_module(Origin::of(req).reply_module(kind), resp).await;
        }
    }

    /// Reports a failure: an `error` reply (parent = the request's id, source `metaManager`) to
    /// the edge requester, or to the cloud for cloud messages. No ack is sent in that case, so the
    /// cloud will deliver the message again.
    async fn fail(&self, req: &Message, err: &Error) {
        tracing::warn!(message = %req, %err, "message not handled");
        let mut reply = req.error_reply(err.to_string());
        reply.route.source = module::META_MANAGER.to_owned();
        match Origin::of(req) {
            Origin::Cloud | Origin::EdgeFunction | Origin::FuncMgr => self.to_cloud(reply).await,
            _ => self.reply(req, reply).await,
        }
    }

    /// The `"OK"` answer edged waits for.
    async fn ok(&self, req: &Message) {
        if req.header.sync {
            self.reply(req, req.response(res::ACK_OK)).await;
        }
    }
}

/// State owned by the main loop.
struct Worker {
    shared: Arc<Shared>,
    connected: bool,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Worker {
    async fn handle(&mut self, msg: Message) {
        tracing::trace!(message = %msg, "received");
        let result = match msg.operation() {
            op::INSERT => self.on_insert(&msg).await,
            op::UPDATE => self.on_update(&msg).await,
            op::DELETE => self.on_delete(&msg).await,
            op::QUERY => self.on_query(&msg).await,
            op::RESPONSE => self.on_response(&msg).await,
            op::PUBLISH if msg.resource() == res::NODE_CONNECTION => {
                self.on_connection(&msg);
                Ok(())
            }
            op::META_INTERNAL_SYNC => {
                self.sync_pod_status().await;
                Ok(())
            }
            OP_ACTION => self.on_action(&msg, Some(EDGEFUNCTION)).await,
            OP_ACTION_RESULT => self.on_action(&msg, None).await,
            o if VOLUME_OPS.contains(&o) => {
                self.on_volume(msg.clone());
                Ok(())
            }
            _ => {
                tracing::debug!(message = %msg, "operation not handled by metaManager; ignored");
                Ok(())
            }
        };
        if let Err(e) = result {
            self.shared.fail(&msg, &e).await;
        }
    }

    /// `insert`: store (an identical row is left alone), then for cloud messages forward to the
    /// consumer if the row changed and ack. Edge inserts (edged's volumeattachments) are stored
    /// only.
    async fn on_insert(&self, msg: &Message) -> Result<()> {
        let r = rules::resource(msg)?;
        let changed = self
            .shared
            .store
            .insert_or_update(msg.resource(), r.kind, rules::value_text(&msg.content))
            .await?;
        if Origin::of(msg) == Origin::Cloud {
            self.deliver_and_ack(msg, r.kind, changed).await;
        } else {
            self.shared.ok(msg).await;
        }
        Ok(())
    }

    /// After a committed write of a cloud message: forward to its consumer when something changed,
    /// then ack (duplicates are acked too, that is what makes redelivery harmless).
    async fn deliver_and_ack(&self, msg: &Message, kind: &str, changed: bool) {
        if changed {
            self.shared
                .to_module(rules::local_target(kind), msg.clone())
                .await;
        } else {
            tracing::debug!(message = %msg, "content unchanged; acked, not forwarded");
        }
        self.shared.to_cloud(msg.ack()).await;
    }

    async fn on_update(&self, msg: &Message) -> Result<()> {
        let r = rules::resource(msg)?;
        let store = &self.shared.store;
        let origin = Origin::of(msg);
        let list_rows = match r.kind {
            kind::SERVICELIST => Some(rules::list_rows(msg, kind::SERVICE)?),
            kind::ENDPOINTSLIST => Some(rules::list_rows(msg, kind::ENDPOINTS)?),
            _ => None,
        };
        let changed = match list_rows {
            Some(rows) => store.insert_or_update_many(rows).await? > 0,
            None => {
                let value = rules::value_text(&msg.content);
                store.insert_or_update(msg.resource(), r.kind, value).await?
            }
        };
        match origin {
            Origin::Cloud => self.deliver_and_ack(msg, r.kind, changed).await,
            Origin::Edged => {
                // Pod status: an identical report is not sent again (the periodic resync carries
                // it). Everything else (node status heartbeats, node annotations) always goes up.
                if changed || r.kind != kind::PODSTATUS {
                    self.shared.to_cloud(msg.clone()).await;
                }
                self.shared.ok(msg).await;
            }
            Origin::FuncMgr => self.shared.to_module(EDGEFUNCTION, msg.clone()).await,
            Origin::EdgeFunction => self.shared.to_cloud(msg.clone()).await,
            Origin::Edgemesh | Origin::Other => {
                tracing::debug!(message = %msg, "update from an unexpected source: stored only");
                self.shared.ok(msg).await;
            }
        }
        Ok(())
    }

    /// `delete`: remove the row; cloud deletes are always forwarded (deleting twice is harmless
    /// for the consumer) and acked.
    async fn on_delete(&self, msg: &Message) -> Result<()> {
        let r = rules::resource(msg)?;
        let existed = self.shared.store.delete(msg.resource()).await?;
        if !existed {
            tracing::debug!(message = %msg, "deleted row was not stored");
        }
        if Origin::of(msg) == Origin::Cloud {
            self.deliver_and_ack(msg, r.kind, true).await;
        } else {
            self.shared.ok(msg).await;
        }
        Ok(())
    }

    /// `response` that no waiter claimed: a late remote-query answer, or the cloud's `"OK"` to a
    /// forwarded node status (dropped: v1.2 stored that `"OK"` as the node object).
    async fn on_response(&self, msg: &Message) -> Result<()> {
        if matches!(msg.content.as_str(), Some(res::ACK_OK | "")) {
            tracing::debug!(message = %msg, "reply to a forwarded message; dropped");
            return Ok(());
        }
        let r = rules::resource(msg)?;
        let changed = self
            .shared
            .store
            .insert_or_update(msg.resource(), r.kind, rules::value_text(&msg.content))
            .await?;
        if Origin::of(msg) == Origin::Cloud {
            self.deliver_and_ack(msg, r.kind, changed).await;
        } else {
            self.shared.to_cloud(msg.clone()).await;
        }
        Ok(())
    }

    fn on_connection(&mut self, msg: &Message) {
        match msg.content_str() {
            Some(res::CLOUD_CONNECTED) => self.connected = true,
            Some(res::CLOUD_DISCONNECTED) => self.connected = false,
            _ => {
                tracing::warn!(message = %msg, content = %msg.content, "unknown connection event");
                return;
            }
        }
        tracing::info!(connected = self.connected, "cloud connection state");
    }

    /// `query` (spec edge-storage §5).
    async fn on_query(&self, msg: &Message) -> Result<()> {
        let r = rules::resource(msg)?;
        let store = &self.shared.store;
        let remote = rules::is_remote_type(r.kind);
        if remote && self.connected {
            if !r.name.is_empty() && !rules::always_remote(r.kind) {
                match store.get(msg.resource()).await {
                    Ok(Some(row)) => {
                        self.reply_rows(msg, vec![row.value]).await;
                        return Ok(());
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(%e, "local lookup failed; asking the cloud"),
                }
            }
            let shared = Arc::clone(&self.shared);
            let cancel = self.cancel.clone();
            let req = msg.clone();
            self.tracker.spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = remote_query(&shared, &req) => {}
                }
            });
            return Ok(());
        }
        let rows = if r.name.is_empty() {
            store.query_by_type(r.kind).await?
        } else {
            store.get(msg.resource()).await?.into_iter().collect()
        };
        if rows.is_empty() && remote && !r.name.is_empty() {
            return Err(Error::Disconnected {
                resource: msg.resource().to_owned(),
            });
        }
        self.reply_rows(msg, rows.into_iter().map(|row| row.value).collect())
            .await;
        Ok(())
    }

    /// A local query answer: JSON array of the stored JSON texts, source `metaManager`.
    async fn reply_rows(&self, req: &Message, values: Vec<String>) {
        let mut resp = req.response(Value::Array(values.into_iter().map(Value::String).collect()));
        resp.route.source = module::META_MANAGER.to_owned();
        self.shared.reply(req, resp).await;
    }

    /// `action` (forward to edgefunction) / `action_result` (forward to the cloud).
    async fn on_action(&self, msg: &Message, to_module: Option<&str>) -> Result<()> {
        let r = rules::resource(msg)?;
        self.shared
            .store
            .insert_or_update(msg.resource(), r.kind, rules::value_text(&msg.content))
            .await?;
        match to_module {
            Some(m) => self.shared.to_module(m, msg.clone()).await,
            None => self.shared.to_cloud(msg.clone()).await,
        }
        Ok(())
    }

    /// CSI operations: ask edged synchronously, answer the cloud with edged's result.
    fn on_volume(&self, msg: Message) {
        let shared = Arc::clone(&self.shared);
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let mut call = msg.clone();
            call.header.id = new_id();
            let timeout = shared.opts.edged_call_timeout;
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = shared.hive.send_sync(module::EDGED, call, timeout) => r,
            };
            match result {
                Ok(reply) => shared.to_cloud(msg.response(reply.content)).await,
                Err(source) => {
                    let err = Error::Call {
                        what: "volume operation",
                        resource: msg.resource().to_owned(),
                        source,
                    };
                    shared.fail(&msg, &err).await;
                }
            }
        });
    }

    /// The bulk pod status resync: drops status rows whose pod is gone, then (when connected)
    /// sends one `update` of `<ns>/podstatus` per namespace — v1.2 sent a single message under the
    /// first row's namespace.
    async fn sync_pod_status(&self) {
        let store = &self.shared.store;
        let rows = match store.query_by_type(kind::PODSTATUS).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(%e, "pod status resync: cannot read podstatus rows");
                return;
            }
        };
        let mut live = Vec::with_capacity(rows.len());
        let mut orphans = Vec::new();
        for row in rows {
            let pod = rules::pod_key_of_status(&row.key);
            let exists = match pod {
                Some(pod) => match store.get(pod).await {
                    Ok(found) => found.is_some(),
                    Err(e) => {
                        tracing::warn!(%e, "pod status resync: lookup failed");
                        true
                    }
                },
                None => false,
            };
            if exists {
                live.push(row);
            } else {
                orphans.push(row.key);
            }
        }
        if !orphans.is_empty() {
            tracing::debug!(?orphans, "removing pod status rows of deleted pods");
            if let Err(e) = store.delete_many(orphans).await {
                tracing::warn!(%e, "pod status resync: cannot remove stale rows");
            }
        }
        if !self.connected {
            tracing::debug!("pod status resync skipped: cloud disconnected");
            return;
        }
        let (by_ns, bad) = rules::podstatus_by_namespace(&live);
        if !bad.is_empty() {
            tracing::warn!(?bad, "pod status rows that are not JSON; not sent");
        }
        for (ns, statuses) in by_ns {
            let msg = Message::new(
                module::META_MANAGER,
                group::RESOURCE,
                op::UPDATE,
                format!("{ns}/{}", kind::PODSTATUS),
                Value::Array(statuses),
            );
            self.shared.to_cloud(msg).await;
        }
    }
}

/// Asks the cloud for `req`'s object, stores the answer, acks it to the cloud and hands it to the
/// requester re-parented to the request. Any failure becomes an `error` reply: never a hang.
async fn remote_query(shared: &Shared, req: &Message) {
    let mut out = req.clone();
    out.header.id = new_id();
    out.header.timestamp = now_millis();
    let timeout = shared.opts.remote_query_timeout;
    let reply = match shared
        .hive
        .send_sync(&shared.opts.context_send_module, out, timeout)
        .await
    {
        Ok(reply) => reply,
        Err(source) => {
            let err = Error::Call {
                what: "remote query",
                resource: req.resource().to_owned(),
                source,
            };
            shared.fail(req, &err).await;
            return;
        }
    };
    let stored = if reply.operation() == op::ERROR {
        Ok(false)
    } else {
        let kind = rules::resource(req).map(|r| r.kind).unwrap_or_default();
        shared
            .store
            .insert_or_update(req.resource(), kind, rules::value_text(&reply.content))
            .await
            .map(|_| true)
    };
    match stored {
        // Durable (or an error reply, which is not stored): ack it so the cloud stops resending.
        Ok(_) => shared.to_cloud(reply.ack()).await,
        // Not acked: the cloud resends it and the late copy is stored by `on_response`.
        Err(e) => tracing::warn!(%e, reply = %reply, "remote query answer not stored; not acked"),
    }
    let mut answer = reply;
    answer.header.parent_id = req.id().to_owned();
    shared.reply(req, answer).await;
}
