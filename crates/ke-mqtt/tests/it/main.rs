//! Integration tests of the embedded broker: real TCP on loopback, rumqttc and raw-codec clients,
//! and Debian's mosquitto_pub/mosquitto_sub (package `mosquitto-clients`).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod clients;
mod common;
mod local;
mod mosquitto;
mod raw;
