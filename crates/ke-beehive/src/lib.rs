//! Beehive: the in-process module bus (modules, groups, bounded queues, sync request/response).
#![warn(missing_docs)]
