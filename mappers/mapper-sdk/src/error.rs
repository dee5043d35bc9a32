//! Errors of the mapper runtime.

use std::path::PathBuf;

/// What went wrong in the mapper runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device profile file could not be read.
    #[error("cannot read device profile {path}: {source}")]
    ReadProfile {
        /// The profile file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The device profile is not valid profile JSON.
    #[error("device profile {path} is not valid: {source}")]
    ParseProfile {
        /// The profile file.
        path: PathBuf,
        /// The JSON error (with line and column).
        source: serde_json::Error,
    },
    /// The file watcher could not be set up.
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        /// The watched directory.
        path: PathBuf,
        /// The watcher error.
        source: notify::Error,
    },
    /// The MQTT broker URL is not usable.
    #[error("bad MQTT server URL {url:?}: {reason}")]
    MqttUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The MQTT client's request queue is closed (the event loop stopped).
    #[error("MQTT client stopped: {0}")]
    Mqtt(#[from] rumqttc::ClientError),
    /// A message could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
