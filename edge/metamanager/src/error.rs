//! Errors of metaManager. They never stop the module: each one becomes an `error` reply to the
//! requester (or to the cloud) whose text is the error's `Display`.

/// Why one message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource is not `<namespace>/<type>[/<name>]`.
    #[error("resource {resource:?} is not <namespace>/<type>[/<name>]")]
    BadResource {
        /// The resource received.
        resource: String,
    },
    /// A `servicelist` / `endpointslist` update whose content is not an array of objects with
    /// `metadata.name`.
    #[error("list update {resource:?} is malformed: {reason}")]
    BadList {
        /// The resource received.
        resource: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The SQLite store failed.
    #[error("metaManager store: {0}")]
    Store(#[from] ke_store::Error),
    /// The object is not in the local store and the cloud is disconnected, so it cannot be asked.
    #[error("{resource} is not in the local store and the cloud is disconnected")]
    Disconnected {
        /// The resource queried.
        resource: String,
    },
    /// Asking the cloud (or edged, for volume operations) failed or timed out.
    #[error("{what} of {resource} failed: {source}")]
    Call {
        /// `remote query`, `volume operation`.
        what: &'static str,
        /// The resource concerned.
        resource: String,
        /// The bus error (timeout, module missing, ...).
        source: ke_beehive::Error,
    },
}

/// Result of metaManager operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
