//! Errors of the store.

use std::path::PathBuf;

/// Why a store operation failed. Each variant names the database file or the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The parent directory of the database file could not be created.
    #[error("cannot create directory {dir} for the SQLite database: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Opening or configuring the database (pragmas, DDL) failed.
    #[error("cannot open SQLite database {path} ({step}): {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What was being done: `open`, `journal_mode=WAL`, `create table meta`, ...
        step: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread for {path}: {source}")]
    Spawn {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A query or write failed.
    #[error("SQLite {op} failed on {path}: {source}")]
    Sqlite {
        /// The operation (`meta upsert`, `meta get`, ...).
        op: &'static str,
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The writer thread is gone (every handle was closed, or a job panicked and took its reply
    /// with it); the request was not executed or its result was lost.
    #[error("the writer of SQLite database {path} is gone; request not served")]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
