//! The store handle and its writer thread.
//!
//! One OS thread owns the [`Connection`]; every [`Store`] clone sends it boxed jobs over a channel
//! and awaits the result on a oneshot. Jobs run one at a time in arrival order, so there is
//! exactly one writer per database and a read-compare-write inside one job is atomic with respect
//! to every other caller of this process. A dedicated thread (rather than `spawn_blocking` + a
//! mutex) keeps blocking SQLite calls, fsyncs included, off the async workers and needs no lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::schema::{self, DEVICE_TABLES, META_DDL};

/// Default time SQLite waits for a lock held by another connection (another process, or a test
/// reading the file) before failing with `SQLITE_BUSY`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How to open a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// See [`DEFAULT_BUSY_TIMEOUT`].
    pub busy_timeout: Duration,
    /// Create the `meta` table (v1.2 does so only when metaManager is enabled).
    pub meta_table: bool,
    /// Create `device`, `device_attr`, `device_twin` (v1.2 does so only when devicetwin is enabled).
    pub device_tables: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            meta_table: true,
            device_tables: true,
        }
    }
}

/// One row of the `meta` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetaRow {
    /// Column `key`: the resource, e.g. `default/pod/nginx`.
    pub key: String,
    /// Column `type`: the resource type, e.g. `pod`.
    pub kind: String,
    /// Column `value`: JSON text of the content (`""` when the column is NULL).
    pub value: String,
}

impl MetaRow {
    /// A row.
    pub fn new(key: impl Into<String>, kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            kind: kind.into(),
            value: value.into(),
        }
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
    /// Resolves when the writer thread has closed the connection and exited.
    exited: oneshot::Receiver<()>,
}

/// Handle to one SQLite database. Cheap to clone; all clones share the one writer thread, which
/// stops (closing the database) when the last clone is dropped or [`close`](Self::close)d.
///
/// Durability: the database is in WAL mode with `synchronous=FULL`, so when a write method returns
/// `Ok` its transaction is in the WAL *and fsynced*: it survives a process crash or power loss.
/// Callers may therefore acknowledge data to a peer as soon as the write returned.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` with [`StoreOptions::default`]: all tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (creating if needed) the database at `path`: creates the parent directory, sets
    /// `journal_mode=WAL`, `synchronous=FULL` and the busy timeout, and creates the selected
    /// tables with the exact v1.2 DDL if they are missing. Blocks until the database is ready.
    pub fn open_with(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        let (exited_tx, exited) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("ke-store".into())
            .spawn(move || {
                let mut conn = match open_connection(&thread_path, &opts) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                writer_loop(&mut conn, &rx, &thread_path);
                drop(conn);
                tracing::debug!(path = %thread_path.display(), "SQLite writer stopped");
                let _ = exited_tx.send(());
            })
            .map_err(|source| Error::Spawn {
                path: path.clone(),
                source,
            })?;
        ready_rx
            .recv()
            .map_err(|_| Error::Closed { path: path.clone() })??;
        tracing::info!(path = %path.display(), "SQLite database open (WAL, synchronous=FULL)");
        Ok(Self {
            inner: Arc::new(Inner { tx, path, exited }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the writer thread with exclusive access to the connection and returns its
    /// result. This is the escape hatch for other tables (the device twin): do a whole logical
    /// change in one `f`, inside a transaction, and keep `f` short — every other caller waits.
    /// A panic inside `f` is caught (the thread survives, an open transaction is rolled back) and
    /// reported as [`Error::Closed`].
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit(f)?.await.map_err(|_| self.closed())
    }

    /// [`call`](Self::call) for synchronous code. Must not be called from an async task (it
    /// blocks the thread until the job ran).
    pub fn call_blocking<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        self.submit(f)?.blocking_recv().map_err(|_| self.closed())
    }

    fn submit<R, F>(&self, f: F) -> Result<oneshot::Receiver<R>>
    where
        F: FnOnce(&mut Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.inner.tx.send(job).map_err(|_| self.closed())?;
        Ok(rx)
    }

    fn closed(&self) -> Error {
        Error::Closed {
            path: self.inner.path.clone(),
        }
    }

    async fn sql<R, F>(&self, op: &'static str, f: F) -> Result<R>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.call(f).await?.map_err(|source| Error::Sqlite {
            op,
            path: self.inner.path.clone(),
            source,
        })
    }

    /// Drops this handle; if it was the last one, waits until the writer thread has closed the
    /// database and returns true. Returns false (and closes nothing) while other clones live.
    pub async fn close(self) -> bool {
        match Arc::try_unwrap(self.inner) {
            Ok(Inner { tx, exited, .. }) => {
                drop(tx);
                let _ = exited.await;
                true
            }
            Err(_) => false,
        }
    }

    /// Writes `(key, kind, value)` into `meta` unless a row with exactly that type and value is
    /// already there. Returns whether the row changed (false: it was identical, nothing written).
    /// Durable when it returns `Ok` (see [`Store`]).
    pub async fn insert_or_update(
        &self,
        key: impl Into<String>,
        kind: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<bool> {
        let row = MetaRow::new(key, kind, value);
        Ok(self.insert_or_update_many(vec![row]).await? > 0)
    }

    /// [`insert_or_update`](Self::insert_or_update) for many rows in one transaction (all or
    /// nothing). Returns how many rows changed.
    pub async fn insert_or_update_many(&self, rows: Vec<MetaRow>) -> Result<usize> {
        self.sql("meta upsert", move |c| upsert_rows(c, &rows)).await
    }

    /// Deletes the `meta` row `key`. Returns whether it existed.
    pub async fn delete(&self, key: impl Into<String>) -> Result<bool> {
        let key = key.into();
        Ok(self.delete_many(vec![key]).await? > 0)
    }

    /// Deletes the `meta` rows `keys` in one transaction. Returns how many existed.
    pub async fn delete_many(&self, keys: Vec<String>) -> Result<usize> {
        self.sql("meta delete", move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            {
                let mut del = tx.prepare_cached("DELETE FROM `meta` WHERE `key` = ?1")?;
                for k in &keys {
                    n += del.execute([k])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// The `meta` row `key`, if any.
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<MetaRow>> {
        let key = key.into();
        self.sql("meta get", move |c| {
            c.prepare_cached("SELECT `key`, `type`, `value` FROM `meta` WHERE `key` = ?1")?
                .query_row([&key], read_row)
                .optional()
        })
        .await
    }

    /// All `meta` rows of type `kind` (every namespace), ordered by key.
    pub async fn query_by_type(&self, kind: impl Into<String>) -> Result<Vec<MetaRow>> {
        let kind = kind.into();
        self.sql("meta query by type", move |c| {
            c.prepare_cached("SELECT `key`, `type`, `value` FROM `meta` WHERE `type` = ?1 ORDER BY `key`")?
                .query_map([&kind], read_row)?
                .collect()
        })
        .await
    }

    /// All `meta` rows whose key starts with `prefix` (e.g. `default/pod/`), ordered by key.
    pub async fn query_prefix(&self, prefix: impl Into<String>) -> Result<Vec<MetaRow>> {
        let prefix = prefix.into();
        self.sql("meta query by prefix", move |c| {
            c.prepare_cached(
                "SELECT `key`, `type`, `value` FROM `meta` \
                 WHERE substr(`key`, 1, length(?1)) = ?1 ORDER BY `key`",
            )?
            .query_map([&prefix], read_row)?
            .collect()
        })
        .await
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MetaRow> {
    Ok(MetaRow {
        key: r.get(0)?,
        kind: r.get(1)?,
        value: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
    })
}

fn upsert_rows(c: &mut Connection, rows: &[MetaRow]) -> rusqlite::Result<usize> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut changed = 0;
    {
        let mut get = tx.prepare_cached("SELECT `type`, `value` FROM `meta` WHERE `key` = ?1")?;
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO `meta` (`key`, `type`, `value`) VALUES (?1, ?2, ?3)")?;
        for r in rows {
            let current: Option<(String, Option<String>)> = get
                .query_row([&r.key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let same = current
                .as_ref()
                .is_some_and(|(t, v)| *t == r.kind && v.as_deref() == Some(r.value.as_str()));
            if !same {
                put.execute(params![r.key, r.kind, r.value])?;
                changed += 1;
            }
        }
    }
    tx.commit()?;
    Ok(changed)
}

fn open_connection(path: &Path, opts: &StoreOptions) -> Result<Connection> {
    let step = |step: &str| {
        let path = path.to_path_buf();
        let step = step.to_owned();
        move |source| Error::Open { path, step, source }
    };
    let conn = Connection::open(path).map_err(step("open"))?;
    conn.busy_timeout(opts.busy_timeout)
        .map_err(step("busy_timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(step("journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode; using its default journal");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(step("synchronous=FULL"))?;
    if opts.device_tables {
        for (name, ddl) in DEVICE_TABLES {
            conn.execute_batch(&schema::create_if_missing(ddl))
                .map_err(step(&format!("create table {name}")))?;
        }
    }
    if opts.meta_table {
        conn.execute_batch(&schema::create_if_missing(META_DDL))
            .map_err(step("create table meta"))?;
    }
    Ok(conn)
}

fn writer_loop(conn: &mut Connection, rx: &mpsc::Receiver<Job>, path: &Path) {
    while let Ok(job) = rx.recv() {
        let run = std::panic::AssertUnwindSafe(|| job(conn));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(path = %path.display(), "a SQLite job panicked; its caller gets an error");
        }
    }
}
