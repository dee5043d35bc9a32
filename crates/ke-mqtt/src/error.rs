//! Errors of the public broker API.

use std::io;

/// Errors returned by [`crate::Broker`], [`crate::BrokerHandle`] and the URL helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be created.
    #[error("cannot bind the MQTT broker to {addr}: {source} (is the port already in use?)")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The listener's local address could not be read.
    #[error("cannot read the MQTT broker's local address: {0}")]
    LocalAddr(#[source] io::Error),
    /// A topic name given to [`crate::BrokerHandle::publish`] is not a valid MQTT topic.
    #[error("invalid MQTT topic name {topic:?}: must be non-empty and contain no '+', '#' or NUL")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
    },
    /// A topic filter given to [`crate::BrokerHandle::subscribe`] is not a valid MQTT filter.
    #[error(
        "invalid MQTT topic filter {filter:?}: '+' must fill a whole level and '#' must be the last level"
    )]
    InvalidFilter {
        /// The rejected filter.
        filter: String,
    },
    /// The broker has shut down (its cancellation token fired); nothing is routed any more.
    #[error("the MQTT broker has shut down")]
    Shutdown,
    /// A server URL such as KubeEdge's `mqttServerInternal` could not be parsed.
    #[error("invalid MQTT server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The rejected URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
