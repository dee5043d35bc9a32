//! Black-box tests of the real binaries. One test binary (modules below) to keep link time down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod autonomy;
mod bootstrap;
mod cluster;
mod config_cli;
mod controller;
mod devices;
mod edged_k8s;
mod ha;
mod hostile;
mod link;
mod mappers;
mod netsplit;
mod offline;
mod reliability;
mod sync;
mod twin;
