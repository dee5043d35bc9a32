//! Errors of edged.

/// What went wrong in edged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRI call failed (the error names the call).
    #[error(transparent)]
    Cri(#[from] ke_cri::Error),
    /// The configuration cannot work.
    #[error("edged configuration: {0}")]
    Config(String),
    /// A pod message whose content is not a Pod.
    #[error("pod message {resource}: content is not a Pod: {source}")]
    BadPod {
        /// The message's resource.
        resource: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A pod volume cannot be set up.
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    /// A container's environment cannot be built.
    #[error(transparent)]
    Env(#[from] crate::env::Error),
    /// Talking to metaManager failed.
    #[error("metaManager: {0}")]
    Meta(#[from] ke_beehive::Error),
}

/// Result of edged.
pub type Result<T, E = Error> = std::result::Result<T, E>;
