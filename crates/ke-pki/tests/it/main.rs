//! Integration tests of ke-pki: real TLS handshakes over loopback (tokio-rustls), certgen on a temp dir,
//! and stock KubeEdge v1.2 certificates made with the `openssl` CLI exactly like `certgen.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certgen;
mod common;
mod legacy;
mod tls;
mod verify;
