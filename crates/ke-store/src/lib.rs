//! SQLite access for the edge: the `meta` table of metaManager and the `device`, `device_attr`,
//! `device_twin` tables of the device twin, in one database file (`edgecore.db`).
//!
//! Owns: the connection and its configuration (WAL, `synchronous=FULL`, busy timeout), the exact
//! KubeEdge v1.2.1 DDL ([`schema`], verified against `shared/ground-truth/edgecore-db-schema.sql`)
//! and the typed `meta` operations. It knows nothing about beehive messages.
//!
//! Start reading at [`Store`]: [`Store::open`] starts one writer thread that owns the connection;
//! clones of the handle send it jobs. metaManager uses the `meta` methods
//! ([`Store::insert_or_update`], [`Store::get`], [`Store::query_by_type`], ...); the device twin
//! uses [`Store::call`] with its own SQL on the same handle, so the file keeps a single writer.
//!
//! Durability contract: a write method that returned `Ok` has been committed and fsynced
//! (WAL + `synchronous=FULL`), so it may be acknowledged to the cloud. (`synchronous=NORMAL`
//! would be faster but could lose the last commits on power loss — after an ack, which would make
//! the cloud believe the edge holds data it lost.)
#![warn(missing_docs)]

mod error;
pub mod schema;
mod store;

pub use error::{Error, Result};
pub use rusqlite;
pub use store::{DEFAULT_BUSY_TIMEOUT, MetaRow, Store, StoreOptions};
