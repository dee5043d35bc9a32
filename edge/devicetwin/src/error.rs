//! Errors of the device twin.

/// Why the twin could not carry out a change. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store's writer thread is gone.
    #[error("device twin store unavailable: {0}")]
    Store(#[from] ke_store::Error),
    /// A statement on the device tables failed (the transaction was rolled back).
    #[error("SQLite {op} on the device tables failed: {source}")]
    Sqlite {
        /// What was being done (`save devices`, `load devices`).
        op: &'static str,
        /// The SQLite error.
        source: ke_store::rusqlite::Error,
    },
}

/// Result of a twin operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
