//! End-to-end suite of KubeEdge-rs: see `tests/e2e.rs`.
