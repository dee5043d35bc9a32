//! Cloud-edge link transports carrying beehive envelopes: WebSocket over mTLS, IETF QUIC, unix socket.
#![warn(missing_docs)]
