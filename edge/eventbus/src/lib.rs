//! EventBus: the edge MQTT bridge.
#![warn(missing_docs)]
