//! CloudHub: the cloud end of the link; per-node sessions, queues, acked delivery.
#![warn(missing_docs)]
