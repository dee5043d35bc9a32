//! EdgeHub: the edge end of the link; heartbeat, reconnect, routing, sync replies.
#![warn(missing_docs)]
