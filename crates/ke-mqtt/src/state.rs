//! Broker state shared by all connections: sessions, subscriptions, retained messages, in-process
//! subscribers, and the per-session outgoing queues ([`Outbox`]).
//!
//! Locking: one `Mutex<State>` for the routing tables, held only for short synchronous sections, and
//! one `Mutex` per outbox. Order is always State -> Outbox. Routing a message never waits for a
//! client: it pushes into bounded outboxes and returns, so a slow or stuck client cannot stall others.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Publish;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::options::BrokerOptions;
use crate::topic::topic_matches;
use crate::{Error, Result};

/// One application message on its way through the broker.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
}

pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) { a } else { b }
}

fn max_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) >= (b as u8) { a } else { b }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these tables half-updated in a way that matters
    // more than losing the whole broker would, so keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters, readable through [`crate::BrokerHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clients currently connected over TCP.
    pub connected_clients: usize,
    /// Sessions known (connected clients plus disconnected persistent sessions).
    pub sessions: usize,
    /// Subscriptions of all sessions (not counting in-process subscribers).
    pub subscriptions: usize,
    /// In-process subscribers ([`crate::BrokerHandle::subscribe`]) still alive.
    pub local_subscribers: usize,
    /// Retained messages stored.
    pub retained: usize,
    /// PUBLISH packets accepted from clients plus in-process publishes (wills included).
    pub messages_in: u64,
    /// Messages dropped because a client's queue or an in-process subscriber's channel was full.
    pub messages_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    messages_in: AtomicU64,
    messages_dropped: AtomicU64,
}

/// Everything the listener, the connections and the handles share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) opts: BrokerOptions,
    state: Mutex<State>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    retained: HashMap<String, Message>,
    locals: Vec<LocalSub>,
    next_conn_id: u64,
    closed: bool,
}

#[derive(Debug)]
struct Session {
    persistent: bool,
    subscriptions: HashMap<String, QoS>,
    outbox: Arc<Outbox>,
    conn: Option<ConnRef>,
}

#[derive(Debug)]
struct ConnRef {
    id: u64,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct LocalSub {
    filter: String,
    tx: mpsc::Sender<(String, Bytes)>,
}

/// What [`Shared::connect`] gives a new connection.
pub(crate) struct Attached {
    pub(crate) conn_id: u64,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) session_present: bool,
}

impl Shared {
    pub(crate) fn new(opts: BrokerOptions) -> Self {
        Self {
            opts,
            state: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// Registers a connection for `client_id`, taking over (cancelling) any live connection with the
    /// same id and resuming the stored session when both the old and new connect were
    /// `clean_session = false`.
    pub(crate) fn connect(
        &self,
        client_id: &str,
        clean_session: bool,
        cancel: CancellationToken,
    ) -> Result<Attached> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Error::Shutdown);
        }
        st.next_conn_id += 1;
        let conn_id = st.next_conn_id;
        let mut session_present = false;
        if let Some(old) = st.sessions.get_mut(client_id) {
            if let Some(prev) = old.conn.take() {
                tracing::info!(
                    client_id,
                    "MQTT client id reconnected: disconnecting the previous connection"
                );
                prev.cancel.cancel();
            }
            if clean_session || !old.persistent {
                st.sessions.remove(client_id);
            } else {
                session_present = true;
            }
        }
        let queue_len = self.opts.queue_len;
        let session = st
            .sessions
            .entry(client_id.to_owned())
            .or_insert_with(|| Session {
                persistent: !clean_session,
                subscriptions: HashMap::new(),
                outbox: Arc::new(Outbox::new(queue_len)),
                conn: None,
            });
        session.conn = Some(ConnRef { id: conn_id, cancel });
        session.outbox.attach(conn_id);
        Ok(Attached {
            conn_id,
            outbox: Arc::clone(&session.outbox),
            session_present,
        })
    }

    /// Ends connection `conn_id` of `client_id` (no-op for the session if it was taken over) and
    /// publishes `will` if given.
    pub(crate) fn disconnect(&self, client_id: &str, conn_id: u64, will: Option<Message>) {
        let mut st = lock(&self.state);
        let owned = st
            .sessions
            .get(client_id)
            .and_then(|s| s.conn.as_ref())
            .is_some_and(|c| c.id == conn_id);
        if owned && let Some(session) = st.sessions.get_mut(client_id) {
            session.conn = None;
            session.outbox.detach(conn_id);
            if !session.persistent {
                st.sessions.remove(client_id);
            }
        }
        if let Some(will) = will
            && !st.closed
        {
            self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
            self.route(&mut st, will);
        }
    }

    /// Adds subscriptions for a connected session; returns the granted QoS per filter (`None` for an
    /// invalid filter) and the retained messages to deliver, or `None` if the connection was taken over.
    pub(crate) fn subscribe(
        &self,
        client_id: &str,
        conn_id: u64,
        filters: &[(String, QoS, bool)],
    ) -> Option<Vec<Message>> {
        let mut st = lock(&self.state);
        let State {
            sessions, retained, ..
        } = &mut *st;
        let session = sessions
            .get_mut(client_id)
            .filter(|s| s.conn.as_ref().is_some_and(|c| c.id == conn_id))?;
        let mut deliver = Vec::new();
        for (filter, granted, valid) in filters {
            if !valid {
                continue;
            }
            session.subscriptions.insert(filter.clone(), *granted);
            for msg in retained.values().filter(|m| topic_matches(filter, &m.topic)) {
                deliver.push(Message {
                    qos: min_qos(msg.qos, *granted),
                    ..msg.clone()
                });
            }
        }
        Some(deliver)
    }

    /// Queues `msg` on one session's outbox (retained messages after SUBSCRIBE).
    pub(crate) fn push_to(&self, outbox: &Outbox, msg: Message) {
        if !outbox.push(msg) {
            self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes subscriptions of a connected session.
    pub(crate) fn unsubscribe(&self, client_id: &str, conn_id: u64, filters: &[String]) {
        let mut st = lock(&self.state);
        if let Some(session) = st.sessions.get_mut(client_id)
            && session.conn.as_ref().is_some_and(|c| c.id == conn_id)
        {
            for f in filters {
                session.subscriptions.remove(f);
            }
        }
    }

    /// Routes a published message (from a client or in-process).
    pub(crate) fn publish(&self, msg: Message) -> Result<()> {
        self.publish_with(msg, true)
    }

    /// Routes a message; `to_locals: false` skips in-process subscribers (for messages that an
    /// in-process subscriber itself publishes, so they do not loop back to it).
    pub(crate) fn publish_with(&self, msg: Message, to_locals: bool) -> Result<()> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Error::Shutdown);
        }
        self.counters.messages_in.fetch_add(1, Ordering::Relaxed);
        self.route_to(&mut st, msg, to_locals);
        Ok(())
    }

    /// Registers an in-process subscriber; retained messages matching `filter` are queued first.
    pub(crate) fn subscribe_local(&self, filter: &str) -> Result<mpsc::Receiver<(String, Bytes)>> {
        let (tx, rx) = mpsc::channel(self.opts.local_queue_len.max(1));
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Error::Shutdown);
        }
        for msg in st.retained.values().filter(|m| topic_matches(filter, &m.topic)) {
            if tx.try_send((msg.topic.clone(), msg.payload.clone())).is_err() {
                self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        st.locals.push(LocalSub {
            filter: filter.to_owned(),
            tx,
        });
        Ok(rx)
    }

    /// Stops routing, ends in-process subscriptions and disconnects every client.
    pub(crate) fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.locals.clear();
        for session in st.sessions.values_mut() {
            if let Some(conn) = &session.conn {
                conn.cancel.cancel();
            }
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut st = lock(&self.state);
        st.locals.retain(|l| !l.tx.is_closed());
        Stats {
            connected_clients: st.sessions.values().filter(|s| s.conn.is_some()).count(),
            sessions: st.sessions.len(),
            subscriptions: st.sessions.values().map(|s| s.subscriptions.len()).sum(),
            local_subscribers: st.locals.len(),
            retained: st.retained.len(),
            messages_in: self.counters.messages_in.load(Ordering::Relaxed),
            messages_dropped: self.counters.messages_dropped.load(Ordering::Relaxed),
        }
    }

    fn route(&self, st: &mut State, msg: Message) {
        self.route_to(st, msg, true);
    }

    fn route_to(&self, st: &mut State, msg: Message, to_locals: bool) {
        if msg.retain {
            if msg.payload.is_empty() {
                st.retained.remove(&msg.topic);
            } else {
                st.retained.insert(msg.topic.clone(), msg.clone());
            }
        }
        // Established subscriptions get the message with retain = 0 [MQTT-3.3.1-9].
        let msg = Message { retain: false, ..msg };
        for session in st.sessions.values() {
            let granted = session
                .subscriptions
                .iter()
                .filter(|(filter, _)| topic_matches(filter, &msg.topic))
                .map(|(_, qos)| *qos)
                .reduce(max_qos);
            let Some(granted) = granted else { continue };
            let qos = min_qos(msg.qos, granted);
            if session.conn.is_none() && qos == QoS::AtMostOnce {
                continue; // offline persistent sessions only keep QoS 1
            }
            if !session.outbox.push(Message { qos, ..msg.clone() }) {
                self.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !to_locals {
            return;
        }
        let dropped = &self.counters.messages_dropped;
        st.locals.retain(|local| {
            if !topic_matches(&local.filter, &msg.topic) {
                return !local.tx.is_closed();
            }
            match local.tx.try_send((msg.topic.clone(), msg.payload.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(filter = %local.filter, topic = %msg.topic, "in-process MQTT subscriber is full: message dropped");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

/// Outgoing queue of one session, shared between the router (producer) and the connection's writer
/// (consumer). Survives reconnects of persistent sessions.
#[derive(Debug)]
pub(crate) struct Outbox {
    inner: Mutex<OutboxInner>,
    notify: Notify,
}

#[derive(Debug)]
struct OutboxInner {
    /// Connection currently allowed to drain this outbox.
    owner: Option<u64>,
    queue: VecDeque<Message>,
    /// QoS 1 messages written and not yet acknowledged, in send order.
    inflight: VecDeque<(u16, Message)>,
    next_pkid: u16,
    cap: usize,
}

/// Result of [`Outbox::fill`].
pub(crate) enum Fill {
    /// Packets (possibly none) were taken.
    Taken,
    /// Another connection owns the outbox now: stop writing.
    Detached,
}

impl Outbox {
    fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(OutboxInner {
                owner: None,
                queue: VecDeque::new(),
                inflight: VecDeque::new(),
                next_pkid: 0,
                cap: cap.max(1),
            }),
            notify: Notify::new(),
        }
    }

    fn attach(&self, conn_id: u64) {
        lock(&self.inner).owner = Some(conn_id);
        self.notify.notify_one();
    }

    fn detach(&self, conn_id: u64) {
        let mut g = lock(&self.inner);
        if g.owner == Some(conn_id) {
            g.owner = None;
            g.queue.retain(|m| m.qos != QoS::AtMostOnce);
        }
    }

    /// Queues a message; returns `false` if a message (this one or an older one) had to be dropped.
    ///
    /// Overflow policy: a QoS 0 message arriving at a full queue is dropped; a QoS 1 message evicts
    /// the oldest queued QoS 0 message, or if there is none the oldest queued QoS 1 message.
    fn push(&self, msg: Message) -> bool {
        let mut g = lock(&self.inner);
        let mut kept_all = true;
        if g.queue.len() >= g.cap {
            kept_all = false;
            if msg.qos == QoS::AtMostOnce {
                return false;
            }
            match g.queue.iter().position(|m| m.qos == QoS::AtMostOnce) {
                Some(i) => drop(g.queue.remove(i)),
                None => drop(g.queue.pop_front()),
            }
        }
        g.queue.push_back(msg);
        drop(g);
        self.notify.notify_one();
        kept_all
    }

    /// Handles a PUBACK from the client.
    pub(crate) fn ack(&self, pkid: u16) {
        let mut g = lock(&self.inner);
        if let Some(i) = g.inflight.iter().position(|(p, _)| *p == pkid) {
            g.inflight.remove(i);
            drop(g);
            self.notify.notify_one();
        }
    }

    /// Unacknowledged QoS 1 messages to resend (DUP set) when a persistent session resumes.
    pub(crate) fn resend(&self, conn_id: u64) -> Vec<Publish> {
        let g = lock(&self.inner);
        if g.owner != Some(conn_id) {
            return Vec::new();
        }
        g.inflight
            .iter()
            .map(|(pkid, m)| {
                let mut p = to_publish(m, *pkid);
                p.dup = true;
                p
            })
            .collect()
    }

    /// Moves up to `limit` queued messages into `out`, respecting the in-flight window.
    pub(crate) fn fill(
        &self,
        conn_id: u64,
        max_inflight: usize,
        limit: usize,
        out: &mut Vec<Publish>,
    ) -> Fill {
        let mut g = lock(&self.inner);
        if g.owner != Some(conn_id) {
            return Fill::Detached;
        }
        while out.len() < limit {
            let Some(front) = g.queue.front() else { break };
            if front.qos != QoS::AtMostOnce && g.inflight.len() >= max_inflight {
                break;
            }
            let Some(msg) = g.queue.pop_front() else { break };
            if msg.qos == QoS::AtMostOnce {
                out.push(to_publish(&msg, 0));
            } else {
                let pkid = g.alloc_pkid();
                out.push(to_publish(&msg, pkid));
                g.inflight.push_back((pkid, msg));
            }
        }
        Fill::Taken
    }

    /// Waits until something was pushed, acknowledged or the owner changed.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl OutboxInner {
    fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid != 0 && !self.inflight.iter().any(|(p, _)| *p == self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}

fn to_publish(m: &Message, pkid: u16) -> Publish {
    let mut p = Publish::from_bytes(m.topic.clone(), m.qos, m.payload.clone());
    p.retain = m.retain;
    p.pkid = pkid;
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn msg(topic: &str, qos: QoS) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
        }
    }

    #[test]
    fn overflow_drops_qos0_first_then_oldest_qos1() {
        let outbox = Outbox::new(2);
        outbox.attach(1);
        assert!(outbox.push(msg("a", QoS::AtLeastOnce)));
        assert!(outbox.push(msg("b", QoS::AtMostOnce)));
        assert!(
            !outbox.push(msg("c", QoS::AtMostOnce)),
            "QoS 0 into a full queue is dropped"
        );
        assert!(
            !outbox.push(msg("d", QoS::AtLeastOnce)),
            "QoS 1 evicts the queued QoS 0"
        );
        assert!(!outbox.push(msg("e", QoS::AtLeastOnce)), "then the oldest QoS 1");
        let mut out = Vec::new();
        assert!(matches!(outbox.fill(1, 10, 10, &mut out), Fill::Taken));
        let topics: Vec<_> = out.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(topics, ["d", "e"]);
    }

    #[test]
    fn inflight_window_and_resend() {
        let outbox = Outbox::new(10);
        outbox.attach(1);
        for t in ["a", "b", "c"] {
            outbox.push(msg(t, QoS::AtLeastOnce));
        }
        let mut out = Vec::new();
        outbox.fill(1, 2, 10, &mut out);
        assert_eq!(out.iter().map(|p| p.pkid).collect::<Vec<_>>(), [1, 2]);
        outbox.ack(1);
        out.clear();
        outbox.fill(1, 2, 10, &mut out);
        assert_eq!(
            out.iter().map(|p| (p.topic.as_str(), p.pkid)).collect::<Vec<_>>(),
            [("c", 3)]
        );
        // Reconnect: a new owner gets the unacknowledged ones again with DUP, the old one is detached.
        outbox.detach(1);
        outbox.attach(2);
        assert!(matches!(outbox.fill(1, 2, 10, &mut out), Fill::Detached));
        let again = outbox.resend(2);
        assert_eq!(
            again.iter().map(|p| (p.pkid, p.dup)).collect::<Vec<_>>(),
            [(2, true), (3, true)]
        );
    }

    #[test]
    fn pkids_skip_zero_and_inflight_ids() {
        let outbox = Outbox::new(10);
        outbox.attach(1);
        lock(&outbox.inner).next_pkid = u16::MAX - 1;
        for t in ["a", "b", "c"] {
            outbox.push(msg(t, QoS::AtLeastOnce));
        }
        let mut out = Vec::new();
        outbox.fill(1, 10, 10, &mut out);
        assert_eq!(out.iter().map(|p| p.pkid).collect::<Vec<_>>(), [u16::MAX, 1, 2]);
    }
}
