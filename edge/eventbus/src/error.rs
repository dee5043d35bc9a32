//! Errors of the eventbus.

/// Why the eventbus could not be configured or started. Every variant names the setting or
/// address concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `modules.eventbus.mqttMode` is not 0, 1 or 2.
    #[error("invalid modules.eventbus.mqttMode {0}: use 0 (internal), 1 (both) or 2 (external)")]
    InvalidMode(i64),
    /// `modules.eventbus.mqttQOS` is not 0, 1 or 2.
    #[error("invalid modules.eventbus.mqttQOS {0}: use 0, 1 or 2")]
    InvalidQos(u8),
    /// A broker URL could not be parsed.
    #[error("invalid modules.eventbus.{setting}: {source}")]
    InvalidUrl {
        /// `mqttServerInternal` or `mqttServerExternal`.
        setting: &'static str,
        /// The parse error (names the URL).
        #[source]
        source: ke_mqtt::Error,
    },
    /// `ssl://` URLs need TLS support, which this build does not include.
    #[error("modules.eventbus.{setting} {url:?} asks for TLS, which is not supported; use a tcp:// URL")]
    TlsUnsupported {
        /// `mqttServerInternal` or `mqttServerExternal`.
        setting: &'static str,
        /// The URL as configured.
        url: String,
    },
    /// The embedded broker could not listen on `mqttServerInternal`.
    #[error("cannot start the internal MQTT broker: {0}")]
    Broker(#[source] ke_mqtt::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
