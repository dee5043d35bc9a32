//! The per-node outbound queue: pure data, no I/O, driven by the session's writer.
//!
//! Two lanes, as in KubeEdge v1.2 (`shared/spec/cloudhub-edgehub.md` §7.1):
//!
//! * **list lane** — fire-and-forget messages (lists, membership, twin updates, `"OK"` replies, node
//!   replies, and anything without a `resourceversion` that is not a delete). Sent once, in order.
//! * **acked lane** — object messages with a `resourceversion` (and deletes). Keyed by
//!   `<type>/<namespace>/<name>`; only the newest message per key is kept; a message stays until the
//!   edge acks it (`response` whose `parent_msg_id` is its id).
//!
//! Improvements over v1.2: an insert/update whose version the edge has already acked is not sent
//! again, nor — for [`TOMBSTONE_TTL`] — a delete of an object instance (UID) whose delete the edge
//! has acked or has in flight, nor a UID-less delete of its name (the synccontroller re-offers an
//! object until its ObjectSync is written or removed, which trails the ack, and the upstream answers
//! a status report for a pod the cloud no longer has with a delete; v1.2 sent such duplicates); resource versions compare numerically; up to `window` messages are in
//! flight at once instead of stop-and-wait; an unacked message is resent with exponential back-off
//! for as long as it takes (v1.2 gave up after four resends), and survives disconnects.
//!
//! Bounds: the acked lane holds at most `limit` distinct keys; a message for a new key beyond that is
//! refused with [`QueueFull`] (the sender sees the error and the sync controller delivers the object
//! later). The list lane holds at most `limit` messages; beyond that the oldest list message is
//! dropped and counted (lists are periodic and superseded by the next one).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_core::resource::{self, Resource, kind};

/// The acked lane is full.
#[derive(Debug, Clone, thiserror::Error)]
#[error("outbound queue of node {node} is full ({limit} pending objects); retry later")]
pub struct QueueFull {
    /// Node whose queue is full.
    pub node: String,
    /// The bound.
    pub limit: usize,
}

/// Which lane a message takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lane {
    /// Fire-and-forget.
    List,
    /// Acked, keyed.
    Acked(String),
}

/// Decides the lane of a cloud-side message (resource still prefixed `node/<node>/`).
pub fn classify(msg: &Message) -> Lane {
    let edge_res = resource::strip_node_prefix(msg.resource())
        .map(|(_, r)| r)
        .unwrap_or(msg.resource());
    let listy = [
        "podlist",
        "servicelist",
        "endpointslist",
        "membership",
        "twin/cloud_updated",
    ]
    .iter()
    .any(|w| edge_res.contains(w));
    let ok_reply = msg.operation() == op::RESPONSE && msg.content_str() == Some(res::ACK_OK);
    let parsed = Resource::parse(edge_res);
    let node_reply = msg.source() == module::EDGECONTROLLER && parsed.is_some_and(|r| r.kind == kind::NODE);
    let is_delete = is_delete(msg);
    if listy || ok_reply || node_reply || msg.group() != group::RESOURCE {
        return Lane::List;
    }
    if msg.header.resource_version.is_empty() && !is_delete {
        return Lane::List;
    }
    match parsed {
        // A reply to an edge query is owed to that query: it never merges with another message
        // for the object (v1.2 bug: two queries for one secret, e.g. two pods of a Deployment
        // mounting it, got one reply; the other waited out its timeout).
        Some(r)
            if !r.name.is_empty() && msg.operation() == op::RESPONSE && !msg.header.parent_id.is_empty() =>
        {
            Lane::Acked(format!(
                "{}/{}/{}{REPLY_SEP}{}",
                r.kind, r.namespace, r.name, msg.header.parent_id
            ))
        }
        Some(r) if !r.name.is_empty() => Lane::Acked(format!("{}/{}/{}", r.kind, r.namespace, r.name)),
        _ => Lane::List,
    }
}

/// Separates the object key from the query id in the key of a query reply.
const REPLY_SEP: &str = "#reply:";

/// The object a key is about (a query reply's key without its query id).
fn object_key(key: &str) -> &str {
    key.split_once(REPLY_SEP).map_or(key, |(k, _)| k)
}

/// `metadata.uid` of a message's content, when it has one.
fn uid_of(msg: &Message) -> Option<&str> {
    msg.content
        .pointer("/metadata/uid")
        .and_then(serde_json::Value::as_str)
        .filter(|u| !u.is_empty())
}

/// A delete of instance `done` (`None`: of any instance) makes the delete `msg` redundant: `msg`
/// names no instance (the upstream's "gone in the cloud" reply to a pod status carries no UID) or
/// the same one.
fn delete_covers(done: Option<&str>, msg: &Message) -> bool {
    match (done, uid_of(msg)) {
        (_, None) => true,
        (Some(a), Some(b)) => a == b,
        (None, Some(_)) => false,
    }
}

fn is_delete(msg: &Message) -> bool {
    msg.operation() == op::DELETE
        || msg
            .content
            .get("metadata")
            .and_then(|m| m.get("deletionTimestamp"))
            .is_some_and(|v| !v.is_null())
}

/// `a` is strictly newer than `b` (numeric when both parse, else "newer" = different).
fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a != b,
    }
}

#[derive(Debug)]
struct Entry {
    msg: Message,
    queued: bool,
}

#[derive(Debug)]
struct InFlight {
    key: String,
    sent_at: Instant,
    attempts: u32,
}

/// Result of offering a message to the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Queued (or replaced an older queued version).
    Queued,
    /// Not queued: an equal or newer version is already pending.
    Stale,
    /// Queued on the list lane, which was full: the oldest list message was dropped.
    QueuedDroppedOldest,
    /// Not queued: in HA mode another cloudcore serves this node (see [`crate::ha`]).
    NotOwned,
}

/// The queue of one node.
#[derive(Debug)]
pub struct NodeQueue {
    node: String,
    limit: usize,
    list: VecDeque<Message>,
    entries: HashMap<String, Entry>,
    pending: VecDeque<String>,
    inflight: HashMap<String, InFlight>,
    /// Key → resource version of the live object the edge last acked (removed when its delete is
    /// acked): one entry per object the node holds.
    acked: HashMap<String, String>,
    /// Key → UID of the object whose `delete` the edge acked last, until a live version of the key
    /// is acked again. At most `limit` of them, the oldest forgotten first (`tombstone_order`): a
    /// forgotten one only costs a duplicate delete, which the edge acks as a no-op.
    tombstones: HashMap<String, Tombstone>,
    tombstone_order: VecDeque<(u64, String)>,
    tombstone_seq: u64,
}

#[derive(Debug)]
struct Tombstone {
    uid: String,
    seq: u64,
    acked_at: Instant,
}

/// How long an acked delete makes a re-offered one redundant. The re-offers it is for come within
/// seconds (the synccontroller's pass before ObjectSync removal, the upstream's reply to a status
/// report sent before the edge applied the delete); past that, a delete is sent again, so that an
/// edge that somehow still holds the object (a database restored from a backup) is told again.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(120);

impl NodeQueue {
    /// An empty queue for `node` with the given bound.
    pub fn new(node: impl Into<String>, limit: usize) -> Self {
        Self {
            node: node.into(),
            limit: limit.max(1),
            list: VecDeque::new(),
            entries: HashMap::new(),
            pending: VecDeque::new(),
            inflight: HashMap::new(),
            acked: HashMap::new(),
            tombstones: HashMap::new(),
            tombstone_order: VecDeque::new(),
            tombstone_seq: 0,
        }
    }

    /// Offers a message.
    pub fn push(&mut self, msg: Message) -> Result<Admit, QueueFull> {
        self.push_at(msg, Instant::now())
    }

    /// Offers a message at `now`.
    pub fn push_at(&mut self, msg: Message, now: Instant) -> Result<Admit, QueueFull> {
        match classify(&msg) {
            Lane::List => Ok(self.push_list(msg)),
            Lane::Acked(key) => self.push_acked(key, msg, now),
        }
    }

    /// Puts a message at the front of the list lane (control replies).
    pub fn push_urgent(&mut self, msg: Message) {
        self.list.push_front(msg);
    }

    fn push_list(&mut self, msg: Message) -> Admit {
        self.list.push_back(msg);
        if self.list.len() > self.limit {
            self.list.pop_front();
            return Admit::QueuedDroppedOldest;
        }
        Admit::Queued
    }

    fn push_acked(&mut self, key: String, msg: Message, now: Instant) -> Result<Admit, QueueFull> {
        if let Some(e) = self.entries.get_mut(&key) {
            // A second delete of the instance already being deleted (or of whatever the name
            // holds: a delete without a UID) adds nothing, whatever its version says.
            if msg.operation() == op::DELETE
                && e.msg.operation() == op::DELETE
                && delete_covers(uid_of(&e.msg), &msg)
            {
                return Ok(Admit::Stale);
            }
            let delete_over_live = is_delete(&msg) && !is_delete(&e.msg);
            if !delete_over_live && !newer(&msg.header.resource_version, &e.msg.header.resource_version) {
                return Ok(Admit::Stale);
            }
            e.msg = msg;
            if !e.queued {
                e.queued = true;
                self.pending.push_back(key);
            }
            return Ok(Admit::Queued);
        }
        if !is_delete(&msg)
            && self
                .acked
                .get(&key)
                .is_some_and(|rv| !newer(&msg.header.resource_version, rv))
        {
            return Ok(Admit::Stale);
        }
        if msg.operation() == op::DELETE
            && self.tombstones.get(&key).is_some_and(|t| {
                now.saturating_duration_since(t.acked_at) < TOMBSTONE_TTL && delete_covers(Some(&t.uid), &msg)
            })
        {
            return Ok(Admit::Stale);
        }
        if self.entries.len() >= self.limit {
            return Err(QueueFull {
                node: self.node.clone(),
                limit: self.limit,
            });
        }
        self.entries.insert(key.clone(), Entry { msg, queued: true });
        self.pending.push_back(key);
        Ok(Admit::Queued)
    }

    /// The next message to write, if the window allows: list lane first, then acked messages.
    pub fn next(&mut self, window: usize, now: Instant) -> Option<Message> {
        if let Some(m) = self.list.pop_front() {
            return Some(m);
        }
        if self.inflight.len() >= window {
            return None;
        }
        while let Some(key) = self.pending.pop_front() {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            e.queued = false;
            self.inflight.insert(
                e.msg.header.id.clone(),
                InFlight {
                    key,
                    sent_at: now,
                    attempts: 0,
                },
            );
            return Some(e.msg.clone());
        }
        None
    }

    /// Handles an ack. Returns the acked message when it is the newest version of its object (it
    /// then leaves the queue); `None` for an unknown id or a superseded version.
    pub fn ack(&mut self, parent_id: &str) -> Option<Message> {
        self.ack_at(parent_id, Instant::now())
    }

    /// [`ack`](Self::ack) at `now`.
    pub fn ack_at(&mut self, parent_id: &str, now: Instant) -> Option<Message> {
        let f = self.inflight.remove(parent_id)?;
        let current = self
            .entries
            .get(&f.key)
            .is_some_and(|e| e.msg.header.id == parent_id && !e.queued);
        if current {
            let e = self.entries.remove(&f.key)?;
            let key = object_key(&f.key).to_owned();
            if is_delete(&e.msg) {
                self.acked.remove(&key);
                if e.msg.operation() == op::DELETE
                    && let Some(uid) = uid_of(&e.msg)
                {
                    self.remember_delete(key, uid.to_owned(), now);
                }
            } else {
                self.tombstones.remove(&key);
                if self
                    .acked
                    .get(&key)
                    .is_none_or(|rv| newer(&e.msg.header.resource_version, rv))
                {
                    self.acked.insert(key, e.msg.header.resource_version.clone());
                }
            }
            Some(e.msg)
        } else {
            None
        }
    }

    /// Records that the edge acked the delete of `key`'s instance `uid`, forgetting the oldest
    /// such record beyond `limit`.
    fn remember_delete(&mut self, key: String, uid: String, now: Instant) {
        self.tombstone_seq += 1;
        let seq = self.tombstone_seq;
        self.tombstones.insert(
            key.clone(),
            Tombstone {
                uid,
                seq,
                acked_at: now,
            },
        );
        self.tombstone_order.push_back((seq, key));
        while self.tombstone_order.len() > self.limit {
            let Some((old_seq, old)) = self.tombstone_order.pop_front() else {
                break;
            };
            // An older record of a key deleted again since is not the live one.
            if self.tombstones.get(&old).is_some_and(|t| t.seq == old_seq) {
                self.tombstones.remove(&old);
            }
        }
    }

    /// True if `id` is a message in flight.
    pub fn is_inflight(&self, id: &str) -> bool {
        self.inflight.contains_key(id)
    }

    /// Messages whose ack is overdue: timeout doubles per attempt up to `max_backoff`. Their clocks
    /// restart; each is returned for resending.
    pub fn due(&mut self, now: Instant, ack_timeout: Duration, max_backoff: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        let mut superseded = Vec::new();
        for (id, f) in &mut self.inflight {
            let wait = ack_timeout
                .saturating_mul(1u32 << f.attempts.min(16))
                .min(max_backoff);
            if now.duration_since(f.sent_at) < wait {
                continue;
            }
            match self.entries.get(&f.key) {
                Some(e) if &e.msg.header.id == id => {
                    f.sent_at = now;
                    f.attempts = f.attempts.saturating_add(1);
                    out.push(e.msg.clone());
                }
                _ => superseded.push(id.clone()),
            }
        }
        for id in superseded {
            self.inflight.remove(&id);
        }
        out
    }

    /// When the next ack deadline falls, if anything is in flight.
    pub fn next_deadline(&self, ack_timeout: Duration, max_backoff: Duration) -> Option<Instant> {
        self.inflight
            .values()
            .map(|f| {
                f.sent_at
                    + ack_timeout
                        .saturating_mul(1u32 << f.attempts.min(16))
                        .min(max_backoff)
            })
            .min()
    }

    /// The link went down: everything in flight goes back to the front of the acked lane, in the
    /// order it was first sent, to be resent on reconnect.
    pub fn requeue_inflight(&mut self) {
        let mut back: Vec<(Instant, String)> = Vec::new();
        for (id, f) in self.inflight.drain() {
            if let Some(e) = self.entries.get_mut(&f.key)
                && e.msg.header.id == id
                && !e.queued
            {
                e.queued = true;
                back.push((f.sent_at, f.key));
            }
        }
        back.sort();
        for (_, key) in back.into_iter().rev() {
            self.pending.push_front(key);
        }
    }

    /// Forgets everything: the node is served elsewhere now (HA), what it holds is recorded in
    /// ObjectSync.
    pub fn clear(&mut self) {
        *self = Self::new(std::mem::take(&mut self.node), self.limit);
    }

    /// Messages waiting or in flight (both lanes).
    pub fn depth(&self) -> usize {
        self.list.len() + self.entries.len()
    }

    /// Messages sent and not yet acked.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(op: &str, res: &str, rv: &str) -> Message {
        Message::new(
            "edgecontroller",
            "resource",
            op,
            format!("node/n1/{res}"),
            json!({"metadata": {"name": "x"}}),
        )
        .with_resource_version(rv)
    }

    #[test]
    fn every_query_gets_its_reply_even_for_the_same_object() {
        let mut q = NodeQueue::new("n1", 10);
        let now = Instant::now();
        let reply = |parent: &str| obj("response", "default/secret/token", "5").with_parent(parent);
        assert_eq!(q.push(reply("query-1")).unwrap(), Admit::Queued);
        assert_eq!(q.push(reply("query-2")).unwrap(), Admit::Queued);
        let a = q.next(8, now).unwrap();
        let b = q.next(8, now).unwrap();
        assert_eq!(
            (a.header.parent_id.as_str(), b.header.parent_id.as_str()),
            ("query-1", "query-2")
        );
        assert!(q.ack(a.id()).is_some() && q.ack(b.id()).is_some());
        // A third query after both acks is answered too; a plain re-offer of that version is not.
        assert_eq!(q.push(reply("query-3")).unwrap(), Admit::Queued);
        assert_eq!(
            q.push(obj("update", "default/secret/token", "5")).unwrap(),
            Admit::Stale
        );
    }

    #[test]
    fn a_version_the_edge_acked_is_not_sent_again() {
        let mut q = NodeQueue::new("n1", 10);
        let now = Instant::now();
        q.push(obj("update", "default/configmap/c", "7")).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        // The synccontroller re-offers the same version before its ObjectSync is written.
        assert_eq!(
            q.push(obj("update", "default/configmap/c", "7")).unwrap(),
            Admit::Stale
        );
        assert_eq!(
            q.push(obj("update", "default/configmap/c", "6")).unwrap(),
            Admit::Stale
        );
        assert!(q.next(8, now).is_none());
        // A newer version goes, and so does a delete (even at the acked version).
        assert_eq!(
            q.push(obj("update", "default/configmap/c", "8")).unwrap(),
            Admit::Queued
        );
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        assert_eq!(
            q.push(obj("delete", "default/configmap/c", "8")).unwrap(),
            Admit::Queued
        );
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        // After the delete, a re-created object with any version is sent.
        assert_eq!(
            q.push(obj("insert", "default/configmap/c", "3")).unwrap(),
            Admit::Queued
        );
    }

    #[test]
    fn a_delete_the_edge_acked_is_not_sent_again() {
        let mut q = NodeQueue::new("n1", 10);
        let now = Instant::now();
        let with_uid = |op: &str, rv: &str, uid: &str| {
            Message::new(
                "edgecontroller",
                "resource",
                op,
                "node/n1/default/pod/p",
                json!({"metadata": {"name": "p", "namespace": "default", "uid": uid}}),
            )
            .with_resource_version(rv)
        };
        q.push(with_uid("insert", "5", "u1")).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        q.push(with_uid("delete", "6", "u1")).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        // The synccontroller re-offers the delete (stub at the recorded version) before the
        // ObjectSync is removed: the edge has it already.
        assert_eq!(q.push(with_uid("delete", "5", "u1")).unwrap(), Admit::Stale);
        assert!(q.next(8, now).is_none());
        // Another instance of the name is not covered by that delete.
        assert_eq!(q.push(with_uid("delete", "9", "u2")).unwrap(), Admit::Queued);
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        // A re-created object that reached the edge can be deleted again.
        q.push(with_uid("insert", "10", "u1")).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        assert_eq!(q.push(with_uid("delete", "11", "u1")).unwrap(), Admit::Queued);
    }

    #[test]
    fn a_delete_without_uid_is_covered_by_a_pending_or_acked_delete() {
        let mut q = NodeQueue::new("n1", 10);
        let now = Instant::now();
        let msg = |op: &str, rv: &str, uid: Option<&str>| {
            let mut meta = json!({"name": "p", "namespace": "default"});
            if let Some(u) = uid {
                meta["uid"] = json!(u);
            }
            Message::new(
                "edgecontroller",
                "resource",
                op,
                "node/n1/default/pod/p",
                json!({"metadata": meta}),
            )
            .with_resource_version(rv)
        };
        q.push(msg("insert", "5", Some("u1"))).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        // The watch's delete is in flight when the edge's status report for the pod makes the
        // upstream send its own "gone" delete (no version, no UID): it is not sent again.
        q.push(msg("delete", "6", Some("u1"))).unwrap();
        let first = q.next(8, now).unwrap();
        assert_eq!(q.push(msg("delete", "", None)).unwrap(), Admit::Stale);
        assert!(q.next(8, now).is_none());
        assert!(q.ack(first.id()).is_some());
        // Nor once it is acked.
        assert_eq!(q.push(msg("delete", "", None)).unwrap(), Admit::Stale);
        assert!(q.next(8, now).is_none());
        // Without any delete before it, such a delete goes out.
        q.push(msg("insert", "7", Some("u2"))).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack(m.id()).is_some());
        assert_eq!(q.push(msg("delete", "", None)).unwrap(), Admit::Queued);
        // An acked delete covers re-offers for a while only: an edge still reporting the object
        // long after is told again.
        let mut q = NodeQueue::new("n1", 10);
        q.push_at(msg("delete", "6", Some("u1")), now).unwrap();
        let m = q.next(8, now).unwrap();
        assert!(q.ack_at(m.id(), now).is_some());
        let soon = now + TOMBSTONE_TTL / 2;
        assert_eq!(q.push_at(msg("delete", "", None), soon).unwrap(), Admit::Stale);
        let later = now + TOMBSTONE_TTL;
        assert_eq!(q.push_at(msg("delete", "", None), later).unwrap(), Admit::Queued);
        // A delete of another instance while one is pending still replaces it (newer version).
        let mut q = NodeQueue::new("n1", 10);
        q.push(msg("delete", "6", Some("u1"))).unwrap();
        assert_eq!(q.push(msg("delete", "8", Some("u2"))).unwrap(), Admit::Queued);
        assert_eq!(q.next(8, now).unwrap().content["metadata"]["uid"], "u2");
    }

    #[test]
    fn acked_deletes_are_remembered_within_the_bound() {
        let mut q = NodeQueue::new("n1", 2);
        let now = Instant::now();
        let del = |name: &str| {
            Message::new(
                "edgecontroller",
                "resource",
                "delete",
                format!("node/n1/default/configmap/{name}"),
                json!({"metadata": {"name": name, "uid": format!("uid-{name}")}}),
            )
            .with_resource_version("1")
        };
        for name in ["a", "b", "c"] {
            q.push(del(name)).unwrap();
            let m = q.next(8, now).unwrap();
            assert!(q.ack(m.id()).is_some());
        }
        assert_eq!(q.tombstones.len(), 2);
        assert_eq!(q.push(del("c")).unwrap(), Admit::Stale);
        assert_eq!(q.push(del("b")).unwrap(), Admit::Stale);
        // The oldest record is forgotten: at worst one duplicate delete.
        assert_eq!(q.push(del("a")).unwrap(), Admit::Queued);
    }

    #[test]
    fn lanes_follow_v12_rules() {
        assert_eq!(
            classify(&obj("insert", "default/pod/p", "5")),
            Lane::Acked("pod/default/p".into())
        );
        assert_eq!(classify(&obj("update", "default/podlist/svc", "5")), Lane::List);
        assert_eq!(
            classify(&obj("update", "namespace/servicelist/service", "5")),
            Lane::List
        );
        assert_eq!(classify(&obj("insert", "default/pod/p", "")), Lane::List);
        assert_eq!(
            classify(&obj("delete", "default/pod/p", "")),
            Lane::Acked("pod/default/p".into())
        );
        let node_reply = Message::new(
            "edgecontroller",
            "resource",
            "response",
            "node/n1/default/node/n1",
            "OK",
        );
        assert_eq!(classify(&node_reply), Lane::List);
        let twin = Message::new(
            "devicecontroller",
            "twin",
            "update",
            "node/n1/membership",
            json!({}),
        );
        assert_eq!(classify(&twin), Lane::List);
    }

    #[test]
    fn newest_version_wins_and_stale_is_refused() {
        let mut q = NodeQueue::new("n1", 10);
        assert_eq!(
            q.push(obj("insert", "default/pod/p", "9")).ok(),
            Some(Admit::Queued)
        );
        assert_eq!(
            q.push(obj("update", "default/pod/p", "10")).ok(),
            Some(Admit::Queued)
        );
        assert_eq!(
            q.push(obj("update", "default/pod/p", "8")).ok(),
            Some(Admit::Stale)
        );
        assert_eq!(q.depth(), 1);
        let m = q.next(8, Instant::now()).map(|m| m.header.resource_version);
        assert_eq!(m.as_deref(), Some("10"), "numeric compare: 10 > 9");
        assert!(q.next(8, Instant::now()).is_none());
    }

    #[test]
    fn ack_removes_only_current_version() {
        let mut q = NodeQueue::new("n1", 10);
        q.push(obj("insert", "default/pod/p", "1")).ok();
        let first = q.next(8, Instant::now()).unwrap_or_default();
        q.push(obj("update", "default/pod/p", "2")).ok();
        assert!(
            q.ack(first.id()).is_none(),
            "superseded version acked: object stays"
        );
        let second = q.next(8, Instant::now()).unwrap_or_default();
        assert_eq!(second.header.resource_version, "2");
        assert_eq!(
            q.ack(second.id()).map(|m| m.header.resource_version),
            Some("2".into())
        );
        assert_eq!(q.depth(), 0);
        assert!(q.ack("unknown").is_none());
    }

    #[test]
    fn window_limits_inflight_and_backoff_resends() {
        let mut q = NodeQueue::new("n1", 100);
        for i in 0..5 {
            q.push(obj("insert", &format!("default/pod/p{i}"), "1")).ok();
        }
        let t0 = Instant::now();
        let sent: Vec<_> = std::iter::from_fn(|| q.next(3, t0)).collect();
        assert_eq!(sent.len(), 3);
        let to = Duration::from_secs(5);
        let max = Duration::from_secs(60);
        assert!(q.due(t0 + Duration::from_secs(4), to, max).is_empty());
        assert_eq!(q.due(t0 + Duration::from_secs(5), to, max).len(), 3);
        // Second resend waits twice as long.
        assert!(q.due(t0 + Duration::from_secs(14), to, max).is_empty());
        assert_eq!(q.due(t0 + Duration::from_secs(15), to, max).len(), 3);
        q.ack(sent[0].id());
        assert!(q.next(3, t0).is_some(), "an ack opens the window");
    }

    #[test]
    fn disconnect_requeues_in_order() {
        let mut q = NodeQueue::new("n1", 100);
        for i in 0..3 {
            q.push(obj("insert", &format!("default/pod/p{i}"), "1")).ok();
        }
        let t0 = Instant::now();
        let a = q.next(8, t0).unwrap_or_default();
        let b = q.next(8, t0 + Duration::from_millis(1)).unwrap_or_default();
        q.requeue_inflight();
        assert_eq!(q.inflight_len(), 0);
        let order: Vec<_> = std::iter::from_fn(|| q.next(8, t0))
            .map(|m| m.id().to_owned())
            .collect();
        assert_eq!(order.len(), 3);
        assert_eq!((order[0].as_str(), order[1].as_str()), (a.id(), b.id()));
    }

    #[test]
    fn bounds() {
        let mut q = NodeQueue::new("n1", 2);
        q.push(obj("insert", "default/pod/a", "1")).ok();
        q.push(obj("insert", "default/pod/b", "1")).ok();
        assert!(q.push(obj("insert", "default/pod/c", "1")).is_err());
        assert_eq!(
            q.push(obj("update", "default/pod/a", "2")).ok(),
            Some(Admit::Queued),
            "known keys still update"
        );
        let l = |i: i32| {
            Message::new(
                "devicecontroller",
                "twin",
                "update",
                "node/n1/membership",
                json!(i),
            )
        };
        q.push(l(1)).ok();
        q.push(l(2)).ok();
        assert_eq!(q.push(l(3)).ok(), Some(Admit::QueuedDroppedOldest));
        assert_eq!(q.next(8, Instant::now()).map(|m| m.content), Some(json!(2)));
    }
}
