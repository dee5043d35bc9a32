//! MetaManager: the edge's metadata store and router (SQLite meta table, store-then-forward, ack after durable write, local/remote queries).
#![warn(missing_docs)]
