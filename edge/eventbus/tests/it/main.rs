//! Integration tests of the eventbus: a real beehive, real MQTT clients (rumqttc) and real brokers
//! (the embedded one, and mosquitto for external mode) on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod external;
mod internal;
