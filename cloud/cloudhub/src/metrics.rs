//! Prometheus metrics of the hub.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type OpLabels = Vec<(&'static str, String)>;

/// Metrics kept by the hub.
#[derive(Debug, Clone, Default)]
pub struct HubMetrics {
    /// Nodes with a live link.
    pub connected_nodes: Gauge,
    /// Link sessions started (first connections and reconnects).
    pub connections: Counter,
    /// Connections refused (identity, node limit, bad headers, TLS).
    pub refused: Counter,
    /// Envelopes received from edges, by operation.
    pub messages_in: Family<OpLabels, Counter>,
    /// Envelopes written to edges, by operation.
    pub messages_out: Family<OpLabels, Counter>,
    /// Messages queued for all nodes (both lanes).
    pub queue_depth: Gauge,
    /// Acked-lane messages sent and not yet acked.
    pub acks_pending: Gauge,
    /// Resends of unacked messages.
    pub resends: Counter,
    /// Messages refused or dropped at a queue bound.
    pub queue_overflow: Counter,
    /// Peers dropped for sending garbage or oversized frames.
    pub bad_frames: Counter,
}

impl HubMetrics {
    /// Registers every metric under the `cloudhub_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cloudhub");
        r.register(
            "connected_nodes",
            "Edge nodes with a live link",
            self.connected_nodes.clone(),
        );
        r.register("connections", "Link sessions started", self.connections.clone());
        r.register("refused_connections", "Connections refused", self.refused.clone());
        r.register(
            "messages_in",
            "Envelopes received from edges",
            self.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Envelopes written to edges",
            self.messages_out.clone(),
        );
        r.register(
            "queue_depth",
            "Messages queued for edges",
            self.queue_depth.clone(),
        );
        r.register(
            "acks_pending",
            "Messages awaiting an ack",
            self.acks_pending.clone(),
        );
        r.register("resends", "Resends of unacked messages", self.resends.clone());
        r.register(
            "queue_overflow",
            "Messages refused or dropped at a queue bound",
            self.queue_overflow.clone(),
        );
        r.register(
            "bad_frames",
            "Peers dropped for malformed or oversized frames",
            self.bad_frames.clone(),
        );
    }

    pub(crate) fn count_in(&self, op: &str) {
        self.messages_in
            .get_or_create(&vec![("operation", op.to_owned())])
            .inc();
    }

    pub(crate) fn count_out(&self, op: &str) {
        self.messages_out
            .get_or_create(&vec![("operation", op.to_owned())])
            .inc();
    }
}
