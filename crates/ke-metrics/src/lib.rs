//! Prometheus /metrics endpoint shared by the daemons.
#![warn(missing_docs)]
