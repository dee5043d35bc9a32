//! Broker tuning knobs.

use std::time::Duration;

/// Options of the embedded broker. `BrokerOptions::default()` is what edgecore uses unless its config
/// says otherwise (`mqttSessionQueueSize` maps to [`BrokerOptions::queue_len`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOptions {
    /// Largest accepted MQTT packet, counted as the packet's *remaining length* (everything after the
    /// fixed header). A client announcing a bigger packet is disconnected before the body is read
    /// (its will is published). Default 1 MiB: KubeEdge twin/device payloads are a few KiB, and the
    /// limit bounds the memory a single peer can make the broker allocate.
    pub max_packet_size: usize,
    /// Per-session queue of messages waiting to be written to the client (not counting the in-flight
    /// QoS 1 window). Default 100, like KubeEdge's `mqttSessionQueueSize`. See the crate docs for the
    /// overflow policy.
    pub queue_len: usize,
    /// QoS 1 messages sent to one client and not yet acknowledged (PUBACK). Further QoS 1 messages
    /// wait in the queue. Default 32; values below 1 are treated as 1.
    pub max_inflight: u16,
    /// How long a new TCP connection may take to send its CONNECT packet. Default 10 s.
    pub connect_timeout: Duration,
    /// Capacity of each in-process subscriber channel ([`crate::BrokerHandle::subscribe`]). When the
    /// receiver does not keep up, further messages for it are dropped and counted. Default 1024.
    pub local_queue_len: usize,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            queue_len: 100,
            max_inflight: 32,
            connect_timeout: Duration::from_secs(10),
            local_queue_len: 1024,
        }
    }
}
