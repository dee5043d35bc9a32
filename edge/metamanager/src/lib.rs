//! MetaManager: the edge's metadata store and router (KubeEdge v1.2 semantics,
//! `shared/spec/edge-storage.md` §3–§5).
//!
//! Owns the `meta` table (through a [`ke_store::Store`]) and the "cloud connected" flag. Every
//! cloud object reaches edged/edgemesh through it, after it is durably stored; every edged status
//! reaches the cloud through it; queries are answered from SQLite or, when connected, from the
//! cloud. Start reading at [`MetaManager`] (construction) and `manager.rs` (`Worker::handle`, one
//! handler per operation); pure decisions live in `rules.rs`.
//!
//! Beehive: module `metaManager`, group `meta`. Consumes what edgehub delivers to `meta` (cloud
//! groups `resource`/`func`) and what edged/edgemesh send it. Emits to modules `edged`, `edgemesh`,
//! `edgefunction`, to group `contextSendGroup` (cloud) and `send_sync` to `contextSendModule`.
//!
//! | message | store | then |
//! |---|---|---|
//! | cloud `insert`/`update`/`response` (object) | upsert `key = resource`, `type`, `value = JSON` | forward to edgemesh (service/endpoints/lists) or edged **if the row changed**; ack to the cloud (always) |
//! | cloud `update` `servicelist`/`endpointslist` | one row per element `<ns>/service\|endpoints/<name>` (one transaction) | forward to edgemesh if changed; ack |
//! | cloud `update` `podlist` | one row `<ns>/podlist/<svc>` | forward to edgemesh if changed; ack |
//! | cloud `delete` | delete row | forward; ack |
//! | cloud `response` `"OK"` (answer to a forwarded node status) | nothing | dropped |
//! | edged `update` `podstatus` | upsert | forward to the cloud if changed; `"OK"` to edged |
//! | edged `update` other (`nodestatus`, `node`) | upsert | forward to the cloud (always: heartbeats); `"OK"` to edged |
//! | edge `insert`/`delete` (volumeattachment) | upsert / delete | `"OK"` to a sync requester |
//! | `query` | see below | |
//! | `publish` `node/connection` | — | connected flag (`cloud_connected` / `cloud_disconnected`, initially false) |
//! | `meta-internal-sync`, and every `podStatusSyncInterval` | drop podstatus rows whose pod row is gone | when connected, one `update` `<ns>/podstatus` per namespace to the cloud |
//! | `action` / `action_result` | upsert | forward to `edgefunction` / the cloud |
//! | CSI `createvolume`, … | — | `send_sync` to edged; its answer (as a `response`) to the cloud |
//!
//! Acks (`response`, content `"OK"`, parent = the cloud message id) are sent only after the SQLite
//! commit returned, and the store commits with `synchronous=FULL`, so an acked object survives a
//! crash. A write that fails is answered with an `error` message and **not** acked, so the cloud
//! delivers it again.
//!
//! Queries (`<ns>/<type>` lists every row of that type in all namespaces, `<ns>/<type>/<name>` one
//! row): `configmap`, `secret`, `endpoints`, `persistentvolume`, `persistentvolumeclaim` while
//! connected are served from the DB when stored and otherwise from the cloud; `node` and
//! `volumeattachment` while connected always from the cloud; everything else, and everything
//! while disconnected, from the DB. A local answer is a `response` from `metaManager` whose content
//! is a JSON array of the stored JSON texts. A remote query re-ids the request, `send_sync`s it to
//! `contextSendModule` with [`MetaManagerOptions::remote_query_timeout`], stores the answer, acks
//! it, and hands it (the cloud's bare object) to the requester with `parent_msg_id` = the request
//! id. Remote queries run as tasks, so a slow cloud never blocks the module.
//!
//! Replies go through `send_resp` when the request was synchronous, else to the requesting module.
//!
//! Differences from v1.2 (bugs fixed or intent kept):
//! * Error replies carry `parent_msg_id` = the request id (v1.2 copied the request's parent id).
//! * The pod status resync sends one message per namespace (v1.2 sent every namespace's statuses
//!   under the first row's namespace).
//! * A cloud `insert` of a key that exists overwrites it when the content differs (v1.2 kept the
//!   stale row), and identical cloud messages (redeliveries) are acked but not forwarded again.
//! * A named query for a remote-capable type that is not stored while disconnected gets an
//!   `error` reply instead of an empty list; a remote query that fails or times out gets an
//!   `error` reply (v1.2 could leave the requester waiting for its own timeout).
//! * The cloud's `"OK"` answers to forwarded node statuses are dropped (v1.2 stored `"OK"` as the
//!   node object and forwarded it to edged); late remote-query answers are acked.
//! * Edge-originated inserts/deletes (edged's volumeattachments) are not acked to the cloud nor
//!   echoed back to edged.
#![warn(missing_docs)]

mod error;
mod manager;
mod options;
mod rules;

pub use error::{Error, Result};
pub use manager::MetaManager;
pub use options::{
    DEFAULT_EDGED_CALL_TIMEOUT, DEFAULT_POD_STATUS_SYNC_INTERVAL, DEFAULT_REMOTE_QUERY_TIMEOUT,
    MetaManagerOptions,
};
