//! Durable copy of the acked lanes, so a cloudcore restart loses no queued object.
//!
//! One SQLite file (`modules.cloudhub.queueStore`), one table
//! `pending(node, key, id, msg)` holding the newest unacked message per node and object key.
//! A dedicated writer thread applies puts and deletes in batches (one transaction per batch, WAL,
//! `synchronous=NORMAL`): the hub's hot path only sends to a channel. A delete names the message id,
//! so the ack of a superseded version never removes its successor. On start the rows are loaded back
//! into the node queues in the order they were written. A graceful stop flushes everything; after a
//! crash at most the last few milliseconds of enqueues are missing, which the sync controller
//! reconciles from the API server.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use ke_core::Message;
use rusqlite::{Connection, params};
use tracing::{error, warn};

/// Errors opening the queue store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused.
    #[error("queue store {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: rusqlite::Error,
    },
    /// The directory could not be created.
    #[error("queue store {path}: cannot create its directory: {source}")]
    Dir {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

enum Op {
    Put {
        node: String,
        key: String,
        id: String,
        msg: Vec<u8>,
    },
    Del {
        node: String,
        key: String,
        id: String,
    },
}

/// Handle to the writer thread.
#[derive(Debug)]
pub(crate) struct QueueStore {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

const DDL: &str = "CREATE TABLE IF NOT EXISTS pending (
    node TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL, msg BLOB NOT NULL,
    PRIMARY KEY (node, key))";

fn open(path: &Path) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
            path: path.to_owned(),
            source,
        })?;
    }
    let sq = |source| Error::Sqlite {
        path: path.to_owned(),
        source,
    };
    let db = Connection::open(path).map_err(sq)?;
    db.pragma_update(None, "journal_mode", "WAL").map_err(sq)?;
    db.pragma_update(None, "synchronous", "NORMAL").map_err(sq)?;
    db.execute(DDL, []).map_err(sq)?;
    Ok(db)
}

impl QueueStore {
    /// Opens (creating) the store and returns the messages it holds, oldest write first.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Message>), Error> {
        let db = open(path)?;
        let sq = |source| Error::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut saved = Vec::new();
        {
            let mut stmt = db.prepare("SELECT msg FROM pending ORDER BY rowid").map_err(sq)?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sq)?;
            for row in rows {
                let bytes = row.map_err(sq)?;
                match Message::from_slice(&bytes) {
                    Ok(m) => saved.push(m),
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "skipping an unreadable queued message")
                    }
                }
            }
        }
        let (tx, rx) = mpsc::channel::<Op>();
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("cloudhub-queue-store".into())
            .spawn(move || writer(db, rx, &shown))
            .map_err(|source| Error::Dir {
                path: path.to_owned(),
                source,
            })?;
        Ok((
            Self {
                tx: Some(tx),
                thread: Some(thread),
            },
            saved,
        ))
    }

    pub(crate) fn put(&self, node: &str, key: &str, msg: &Message) {
        self.send(Op::Put {
            node: node.into(),
            key: key.into(),
            id: msg.id().into(),
            msg: msg.to_json_vec(),
        });
    }

    pub(crate) fn delete(&self, node: &str, key: &str, id: &str) {
        self.send(Op::Del {
            node: node.into(),
            key: key.into(),
            id: id.into(),
        });
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx
            && tx.send(op).is_err()
        {
            error!("cloudhub queue store writer is gone: queued messages are no longer persisted");
        }
    }

    /// Writes everything pending and stops the writer.
    pub(crate) fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for QueueStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn apply(db: &mut Connection, batch: &[Op]) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO pending (node, key, id, msg) VALUES (?1, ?2, ?3, ?4)")?;
        let mut del = tx.prepare_cached("DELETE FROM pending WHERE node = ?1 AND key = ?2 AND id = ?3")?;
        for op in batch {
            match op {
                Op::Put { node, key, id, msg } => put.execute(params![node, key, id, msg])?,
                Op::Del { node, key, id } => del.execute(params![node, key, id])?,
            };
        }
    }
    tx.commit()
}

fn writer(mut db: Connection, rx: mpsc::Receiver<Op>, path: &str) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Err(e) = apply(&mut db, &batch) {
            error!(%path, error = %e, "cannot persist {} queue changes", batch.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn survives_reopen_and_deletes_only_the_named_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/q.db");
        let m1 = Message::new(
            "edgecontroller",
            "resource",
            "insert",
            "node/n/default/pod/a",
            json!({"v": 1}),
        );
        let m2 = Message::new(
            "edgecontroller",
            "resource",
            "update",
            "node/n/default/pod/a",
            json!({"v": 2}),
        );
        let m3 = Message::new(
            "edgecontroller",
            "resource",
            "insert",
            "node/n/default/pod/b",
            json!({"v": 3}),
        );
        {
            let (mut s, saved) = QueueStore::open(&path).unwrap();
            assert!(saved.is_empty());
            s.put("n", "pod/default/a", &m1);
            s.put("n", "pod/default/a", &m2);
            s.put("n", "pod/default/b", &m3);
            s.delete("n", "pod/default/a", m1.id()); // ack of the superseded version: m2 stays
            s.delete("n", "pod/default/b", m3.id());
            s.close();
        }
        let (_s, saved) = QueueStore::open(&path).unwrap();
        assert_eq!(saved, vec![m2]);
    }
}
