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
    /// Envelopes written to edges, by operation and object kind.
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
    /// HA: node Leases taken over from another cloudcore.
    pub lease_takeovers: Counter,
    /// HA: nodes another cloudcore took from this one.
    pub nodes_lost: Counter,
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
        r.register(
            "lease_takeovers",
            "HA: node Leases taken over from another cloudcore",
            self.lease_takeovers.clone(),
        );
        r.register(
            "nodes_lost",
            "HA: nodes another cloudcore took from this one",
            self.nodes_lost.clone(),
        );
    }

    pub(crate) fn count_in(&self, op: &str) {
        self.messages_in
            .get_or_create(&vec![("operation", op.to_owned())])
            .inc();
    }

    /// Counts a message written to an edge, by operation and by the kind of object it carries
    /// (`kind` = the resource's kind for group `resource`, e.g. `pod`, `configmap`, `service`;
    /// `other` for twin, membership and control messages).
    pub(crate) fn count_out(&self, msg: &ke_core::Message) {
        let kind = (msg.group() == ke_core::names::group::RESOURCE)
            .then(|| ke_core::resource::Resource::parse(msg.resource()))
            .flatten()
            .map_or("other", |r| r.kind);
        self.messages_out
            .get_or_create(&vec![
                ("operation", msg.operation().to_owned()),
                ("kind", kind.to_owned()),
            ])
            .inc();
    }
}

type ControllerLabels = Vec<(&'static str, &'static str)>;

/// Metrics of the cloud controllers, one label set per controller (`controller` =
/// `edgecontroller`, `upstream`, `synccontroller`, `devicecontroller`). They live here because
/// every controller already depends on the hub; cloudcore registers them next to the hub's.
#[derive(Debug, Clone, Default)]
pub struct ControllerMetrics {
    events: Family<ControllerLabels, Counter>,
    sent: Family<ControllerLabels, Counter>,
    errors: Family<ControllerLabels, Counter>,
    queue_depth: Family<ControllerLabels, Gauge>,
    api_requests: Family<ControllerLabels, Counter>,
}

impl ControllerMetrics {
    /// Registers `controller_events_handled`, `controller_messages_sent`, `controller_errors`,
    /// `controller_api_requests` (counters, exposed with `_total`) and `controller_queue_depth`
    /// (gauge).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("controller");
        r.register(
            "events_handled",
            "Watch events and edge messages handled",
            self.events.clone(),
        );
        r.register(
            "messages_sent",
            "Messages handed to cloudhub for edges",
            self.sent.clone(),
        );
        r.register(
            "errors",
            "Failed API calls, refused sends and failed edge messages",
            self.errors.clone(),
        );
        r.register(
            "queue_depth",
            "Work waiting in the controller (edge messages not yet handled)",
            self.queue_depth.clone(),
        );
        r.register(
            "api_requests",
            "Kubernetes API requests made, by verb (get, list, watch, create, update, patch, delete)",
            self.api_requests.clone(),
        );
    }

    /// The handle of one controller (its label set is created at once, so it shows as 0).
    pub fn controller(&self, name: &'static str) -> ControllerHandle {
        let l = vec![("controller", name)];
        ControllerHandle {
            events: self.events.get_or_create(&l).clone(),
            sent: self.sent.get_or_create(&l).clone(),
            errors: self.errors.get_or_create(&l).clone(),
            queue_depth: self.queue_depth.get_or_create(&l).clone(),
            api_requests: self.api_requests.clone(),
            name,
        }
    }
}

/// One controller's metrics (cheap to clone; all clones count together).
#[derive(Debug, Clone, Default)]
pub struct ControllerHandle {
    events: Counter,
    sent: Counter,
    errors: Counter,
    queue_depth: Gauge,
    api_requests: Family<ControllerLabels, Counter>,
    name: &'static str,
}

impl ControllerHandle {
    /// One Kubernetes API request of `verb` made
    /// (`controller_api_requests_total{controller,verb}`).
    pub fn api_request(&self, verb: &'static str) {
        self.api_requests
            .get_or_create(&vec![("controller", self.name), ("verb", verb)])
            .inc();
    }

    /// One watch event or edge message handled.
    pub fn event(&self) {
        self.events.inc();
    }

    /// One message handed to cloudhub.
    pub fn sent(&self) {
        self.sent.inc();
    }

    /// One error (API call, refused send, failed edge message).
    pub fn error(&self) {
        self.errors.inc();
    }

    /// Work items waiting: one more.
    pub fn enqueued(&self) {
        self.queue_depth.inc();
    }

    /// Work items waiting: one fewer.
    pub fn dequeued(&self) {
        self.queue_depth.dec();
    }

    /// Work items waiting: set.
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_metrics_are_exposed_per_controller() {
        let m = ControllerMetrics::default();
        let mut reg = Registry::default();
        m.register(&mut reg);
        let ec = m.controller("edgecontroller");
        let _dc = m.controller("devicecontroller");
        ec.event();
        ec.event();
        ec.sent();
        ec.error();
        ec.enqueued();
        ec.enqueued();
        ec.dequeued();
        ec.api_request("list");
        ec.api_request("list");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for line in [
            "controller_events_handled_total{controller=\"edgecontroller\"} 2",
            "controller_messages_sent_total{controller=\"edgecontroller\"} 1",
            "controller_errors_total{controller=\"edgecontroller\"} 1",
            "controller_queue_depth{controller=\"edgecontroller\"} 1",
            "controller_events_handled_total{controller=\"devicecontroller\"} 0",
            "controller_api_requests_total{controller=\"edgecontroller\",verb=\"list\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
        }
    }
}
