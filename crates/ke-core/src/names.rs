//! Module, group and operation names of KubeEdge v1.2 (`shared/spec/message.md` §5–§6).
//!
//! These strings cross the link and the MQTT bus: never rename them.

/// Beehive module names (the `route.source` a module stamps on what it sends).
pub mod module {
    /// Edge hub. KubeEdge calls it `websocket` even when QUIC carries the link.
    pub const EDGEHUB: &str = "websocket";
    /// Edge metadata manager (capital M, as in v1.2).
    pub const META_MANAGER: &str = "metaManager";
    /// Edge pod manager.
    pub const EDGED: &str = "edged";
    /// Edge device twin.
    pub const TWIN: &str = "twin";
    /// Edge MQTT bridge.
    pub const EVENTBUS: &str = "eventbus";
    /// Edge HTTP bridge.
    pub const SERVICEBUS: &str = "servicebus";
    /// Edge service mesh.
    pub const EDGEMESH: &str = "edgemesh";
    /// Source stamped on edge connection events.
    pub const EDGEHUB_EVENTS: &str = "edgehub";
    /// Source stamped on messages produced from MQTT by the eventbus.
    pub const BUS: &str = "bus";
    /// Cloud hub.
    pub const CLOUDHUB: &str = "cloudhub";
    /// Cloud edge controller.
    pub const EDGECONTROLLER: &str = "edgecontroller";
    /// Cloud device controller.
    pub const DEVICECONTROLLER: &str = "devicecontroller";
    /// Cloud sync controller.
    pub const SYNCCONTROLLER: &str = "synccontroller";
}

/// Beehive group names: the `route.group` values used for dispatch.
pub mod group {
    /// Edge hub's group.
    pub const HUB: &str = "hub";
    /// Metadata manager's group.
    pub const META: &str = "meta";
    /// Edged's group.
    pub const EDGED: &str = "edged";
    /// Device twin's group.
    pub const TWIN: &str = "twin";
    /// Eventbus and servicebus group.
    pub const BUS: &str = "bus";
    /// Edge mesh group.
    pub const MESH: &str = "mesh";
    /// Link group for object messages; the edge hub delivers it to [`META`].
    pub const RESOURCE: &str = "resource";
    /// Legacy function messages; delivered to [`META`].
    pub const FUNC: &str = "func";
    /// User messages; delivered to [`BUS`].
    pub const USER: &str = "user";
    /// Cloud hub's group.
    pub const CLOUDHUB: &str = "cloudhub";
    /// Cloud edge controller's group.
    pub const EDGECONTROLLER: &str = "edgecontroller";
    /// Cloud device controller's group.
    pub const DEVICECONTROLLER: &str = "devicecontroller";
    /// Cloud sync controller's group.
    pub const SYNCCONTROLLER: &str = "synccontroller";
}

/// Operation verbs (`route.operation`).
pub mod op {
    /// Create an object.
    pub const INSERT: &str = "insert";
    /// Update an object (also lists, membership, twin, status).
    pub const UPDATE: &str = "update";
    /// Delete an object.
    pub const DELETE: &str = "delete";
    /// Ask for an object.
    pub const QUERY: &str = "query";
    /// Reply or ack (`"OK"`).
    pub const RESPONSE: &str = "response";
    /// Error reply; content is the error text.
    pub const ERROR: &str = "error";
    /// Edge heartbeat.
    pub const KEEPALIVE: &str = "keepalive";
    /// Edge-internal publish (connection events, MQTT publications).
    pub const PUBLISH: &str = "publish";
    /// Cloud asks the eventbus to subscribe to a topic.
    pub const SUBSCRIBE: &str = "subscribe";
    /// Cloud asks the eventbus to republish a message.
    pub const MESSAGE: &str = "message";
    /// Twin asks the cloud for membership detail.
    pub const GET: &str = "get";
    /// Cloud hub → controllers: node connected.
    pub const CONNECTED: &str = "connected";
    /// Cloud hub → controllers: node disconnected.
    pub const DISCONNECTED: &str = "disconnected";
    /// MetaManager's internal timer.
    pub const META_INTERNAL_SYNC: &str = "meta-internal-sync";
    /// Legacy "device updated" understood by the twin.
    pub const UPDATED: &str = "updated";
    /// Legacy "deleted".
    pub const DELETED: &str = "deleted";
    /// Viaduct control message; a cloud answers it with `ack` and never routes it.
    pub const VIADUCT_CONFIG: &str = "config";
    /// Viaduct control message.
    pub const VIADUCT_PING: &str = "ping";
    /// Viaduct control message.
    pub const VIADUCT_PONG: &str = "pong";
}

/// Well-known resources and contents.
pub mod res {
    /// Resource of the edge keepalive.
    pub const KEEPALIVE: &str = "node";
    /// Content of the edge keepalive.
    pub const KEEPALIVE_CONTENT: &str = "ping";
    /// Resource of edge-internal connection events.
    pub const NODE_CONNECTION: &str = "node/connection";
    /// Connection event content: link up.
    pub const CLOUD_CONNECTED: &str = "cloud_connected";
    /// Connection event content: link down.
    pub const CLOUD_DISCONNECTED: &str = "cloud_disconnected";
    /// Content of an ack.
    pub const ACK_OK: &str = "OK";
    /// Default KubeEdge project id, sent as the `project_id` header.
    pub const DEFAULT_PROJECT_ID: &str = "e632aba927ea4ac2b575ec1603d56f10";
}

/// Names of the WebSocket upgrade headers (`shared/spec/cloudhub-edgehub.md` §3). Matching is
/// case-insensitive, as in HTTP.
pub mod header {
    /// Node name; the routing key of the node's queues.
    pub const NODE_ID: &str = "node_id";
    /// Project id (logged only).
    pub const PROJECT_ID: &str = "project_id";
    /// Connection use; must be `msg` for message traffic.
    pub const CONNECTION_USE: &str = "ConnectionUse";
    /// The only connection use we serve.
    pub const CONNECTION_USE_MSG: &str = "msg";
}
