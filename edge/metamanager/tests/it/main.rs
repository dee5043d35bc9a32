//! metaManager driven through a real Beehive with fake `websocket` (the cloud side) and `edged`
//! peers, on a real SQLite file.

mod harness;
mod objects;
mod queries;
mod status;
