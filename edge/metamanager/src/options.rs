//! Configuration of the module (edgecore YAML `modules.metaManager`, plus two timeouts v1.2 hard-codes).

use std::time::Duration;

use ke_core::names::{group, module};

/// Default [`MetaManagerOptions::pod_status_sync_interval`] (v1.2 `podStatusSyncInterval: 60`).
pub const DEFAULT_POD_STATUS_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// Default [`MetaManagerOptions::remote_query_timeout`]. v1.2 nominally waits 60 s but its
/// edgehub gives up after `heartbeat` (15 s) — the effective limit, which also leaves edged room to
/// retry inside its own one-minute window.
pub const DEFAULT_REMOTE_QUERY_TIMEOUT: Duration = Duration::from_secs(15);
/// Default [`MetaManagerOptions::edged_call_timeout`] (v1.2: one minute for CSI volume calls).
pub const DEFAULT_EDGED_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How metaManager runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaManagerOptions {
    /// `modules.metaManager.enable`. A disabled module is not registered on the bus.
    pub enabled: bool,
    /// `contextSendModule`: module that carries remote queries to the cloud (`send_sync`).
    /// `websocket` on edgecore, `edgecontroller` on edgesite.
    pub context_send_module: String,
    /// `contextSendGroup`: group that gets everything else meant for the cloud (acks, forwarded
    /// edged messages, pod status resync). `hub` on edgecore, `edgecontroller` on edgesite.
    pub context_send_group: String,
    /// `podStatusSyncInterval`: period of the bulk pod status resync. `Duration::ZERO` disables
    /// the timer (a `meta-internal-sync` message still triggers one resync).
    pub pod_status_sync_interval: Duration,
    /// How long a remote query waits for the cloud before the requester gets an `error` reply.
    pub remote_query_timeout: Duration,
    /// How long a CSI volume operation waits for edged.
    pub edged_call_timeout: Duration,
}

impl Default for MetaManagerOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            context_send_module: module::EDGEHUB.to_owned(),
            context_send_group: group::HUB.to_owned(),
            pod_status_sync_interval: DEFAULT_POD_STATUS_SYNC_INTERVAL,
            remote_query_timeout: DEFAULT_REMOTE_QUERY_TIMEOUT,
            edged_call_timeout: DEFAULT_EDGED_CALL_TIMEOUT,
        }
    }
}
