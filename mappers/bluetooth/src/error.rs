//! Errors of the Bluetooth mapper.

use std::path::PathBuf;

/// What went wrong in the Bluetooth mapper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.yaml` could not be read.
    #[error("cannot read mapper config {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `config.yaml` is not valid.
    #[error("mapper config {path} is not valid: {reason}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// Parser message (with line/column).
        reason: String,
    },
    /// A runtime-topic payload is not valid.
    #[error("bad payload on {topic}: {source}")]
    Payload {
        /// The topic.
        topic: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// No device instance in the profile has the configured model.
    #[error("no device of model {model:?} in the device profile")]
    NoDevice {
        /// `device-model-name` of the config.
        model: String,
    },
    /// An action name is not known to the action manager.
    #[error("unknown action {0:?}")]
    UnknownAction(String),
    /// Bytes could not be converted.
    #[error("data conversion: {0}")]
    Convert(String),
    /// The GATT peripheral failed.
    #[error("bluetooth: {0}")]
    Ble(String),
    /// The runtime's MQTT side failed.
    #[error(transparent)]
    Sdk(#[from] mapper_sdk::Error),
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
