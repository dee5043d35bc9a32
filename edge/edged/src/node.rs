//! Node registration and node status (`shared/spec/edged.md` §2).
//!
//! Until the cloud answers `"OK"`, every tick sends `insert` `<ns>/nodestatus/<node>` (a
//! `v1.Node` with only `status`) straight to module `websocket`; afterwards every tick sends
//! `update` `<ns>/nodestatus/<node>` with a `NodeStatusRequest` through metaManager.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ke_beehive::Beehive;
use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_core::resource::kind;
use ke_cri::CriClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The node UID v1.2 sends in every `NodeStatusRequest` (a constant).
pub const NODE_STATUS_UID: &str = "38796d14-1df3-11e8-8e5a-286ed488f209";

/// `kubeletVersion` / `kubeProxyVersion` reported: the kubelet v1.2 vendored plus our version.
pub const KUBELET_VERSION: &str = "v1.17.1-kubeedge-v1.2.1";

/// Memory kept back from `allocatable`.
const RESERVED_MEMORY_MI: u64 = 100;

/// Pods per node (kubelet default).
const MAX_PODS: &str = "110";

/// What the host looks like; read once at start ([`HostInfo::read`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct HostInfo {
    pub(crate) cpus: usize,
    pub(crate) mem_total_kib: u64,
    pub(crate) hostname: String,
    pub(crate) kernel_version: String,
    pub(crate) os_image: String,
    pub(crate) machine_id: String,
    pub(crate) system_uuid: String,
    pub(crate) boot_id: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Number of `processor` entries in a `/proc/cpuinfo` text.
pub(crate) fn cpus_of(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
}

/// `MemTotal` in KiB of a `/proc/meminfo` text.
pub(crate) fn mem_total_kib_of(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `PRETTY_NAME` of an `/etc/os-release` text.
pub(crate) fn pretty_name_of(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

/// GOARCH spelling of the architecture.
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl HostInfo {
    /// Reads `/proc` and `/etc`; what is unreadable stays empty (zero CPUs fall back to the
    /// scheduler's view).
    pub(crate) fn read() -> Self {
        let cpus = match cpus_of(&read_trim("/proc/cpuinfo")) {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let machine_id = read_trim("/etc/machine-id");
        let system_uuid = match read_trim("/sys/class/dmi/id/product_uuid") {
            s if s.is_empty() => machine_id.clone(),
            s => s,
        };
        Self {
            cpus,
            mem_total_kib: mem_total_kib_of(&read_trim("/proc/meminfo")).unwrap_or(0),
            hostname: read_trim("/proc/sys/kernel/hostname"),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image: pretty_name_of(&read_trim("/etc/os-release")).unwrap_or_else(|| "Linux".to_owned()),
            machine_id,
            system_uuid,
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// The node's IP when `nodeIP` is not configured: the hostname's first non-loopback IPv4, else
/// the source address of the default route (no packet is sent).
pub(crate) fn default_node_ip(hostname: &str) -> String {
    use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
    if let Ok(addrs) = (hostname, 0).to_socket_addrs() {
        for a in addrs {
            if let IpAddr::V4(v4) = a.ip()
                && !v4.is_loopback()
            {
                return v4.to_string();
            }
        }
    }
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map_or_else(|_| "127.0.0.1".to_owned(), |a| a.ip().to_string())
}

/// Runtime readiness as the `Ready` condition reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Runtime {
    /// `Version` answered: `remote://<version>`.
    Up(String),
    /// `Version` failed with this text.
    Down(String),
}

/// The node status: capacity/allocatable, addresses, node info and the `Ready` condition.
pub(crate) fn node_status(
    host: &HostInfo,
    node_ip: &str,
    runtime: &Runtime,
    runtime_version: &str,
    now: Timestamp,
    ready_since: Timestamp,
) -> k8s::NodeStatus {
    let mem_mi = host.mem_total_kib / 1024;
    let res = |mem: u64| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(host.cpus.to_string())),
            ("memory".to_owned(), Quantity(format!("{mem}Mi"))),
            ("pods".to_owned(), Quantity(MAX_PODS.to_owned())),
        ])
    };
    let (status, reason, message) = match runtime {
        Runtime::Up(_) => ("True", "EdgeReady", "edge is posting ready status".to_owned()),
        Runtime::Down(e) => ("False", "EdgeNotReady", e.clone()),
    };
    k8s::NodeStatus {
        capacity: Some(res(mem_mi)),
        allocatable: Some(res(mem_mi.saturating_sub(RESERVED_MEMORY_MI))),
        phase: Some("Running".to_owned()),
        conditions: Some(vec![k8s::NodeCondition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(ready_since)),
        }]),
        addresses: Some(vec![
            k8s::NodeAddress {
                type_: "InternalIP".to_owned(),
                address: node_ip.to_owned(),
            },
            k8s::NodeAddress {
                type_: "Hostname".to_owned(),
                address: host.hostname.clone(),
            },
        ]),
        node_info: Some(k8s::NodeSystemInfo {
            machine_id: host.machine_id.clone(),
            system_uuid: host.system_uuid.clone(),
            boot_id: host.boot_id.clone(),
            kernel_version: host.kernel_version.clone(),
            os_image: host.os_image.clone(),
            container_runtime_version: format!("remote://{runtime_version}"),
            kubelet_version: KUBELET_VERSION.to_owned(),
            kube_proxy_version: KUBELET_VERSION.to_owned(),
            operating_system: std::env::consts::OS.to_owned(),
            architecture: go_arch().to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The registration content: a `v1.Node` with only `status` (the cloud fills the metadata).
pub(crate) fn registration(status: &k8s::NodeStatus) -> Value {
    json!({ "status": status })
}

/// The `NodeStatusRequest` of a status update.
pub(crate) fn status_request(status: &k8s::NodeStatus) -> Value {
    json!({ "UID": NODE_STATUS_UID, "Status": status, "ExtendResources": null })
}

/// What the node loop needs.
#[derive(Debug, Clone)]
pub(crate) struct NodeLoop {
    pub(crate) hive: Beehive,
    pub(crate) cri: CriClient,
    pub(crate) node_name: String,
    pub(crate) node_ip: String,
    pub(crate) namespace: String,
    pub(crate) register: bool,
    pub(crate) period: Duration,
    pub(crate) reply_timeout: Duration,
}

use crate::worker::wall_now;

impl NodeLoop {
    /// Registers (retrying every period until the cloud answers `"OK"`), then reports the status
    /// every period, until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let host = HostInfo::read();
        let node_ip = if self.node_ip.is_empty() {
            default_node_ip(&host.hostname)
        } else {
            self.node_ip.clone()
        };
        let resource = format!("{}/{}/{}", self.namespace, kind::NODESTATUS, self.node_name);
        let mut registered = !self.register;
        let mut last_ready: Option<(bool, Timestamp)> = None;
        let mut ticker = tokio::time::interval(self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let (runtime, version) = match self.cri.version().await {
                Ok(v) => (Runtime::Up(v.runtime_version.clone()), v.runtime_version),
                Err(e) => (Runtime::Down(e.to_string()), String::new()),
            };
            let now = wall_now();
            let up = matches!(runtime, Runtime::Up(_));
            let since = match last_ready {
                Some((was, since)) if was == up => since,
                _ => now,
            };
            last_ready = Some((up, since));
            let status = node_status(&host, &node_ip, &runtime, &version, now, since);
            if !registered {
                let msg = Message::new(
                    module::EDGED,
                    group::META,
                    op::INSERT,
                    resource.clone(),
                    registration(&status),
                );
                let reply = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = self.hive.send_sync(module::EDGEHUB, msg, self.reply_timeout) => r,
                };
                match reply {
                    Ok(r) if r.content_str() == Some(res::ACK_OK) => {
                        tracing::info!(node = %self.node_name, "node registered");
                        registered = true;
                    }
                    Ok(r) => {
                        tracing::warn!(answer = %r.content, "node registration refused; retrying");
                        continue;
                    }
                    Err(e) => {
                        tracing::info!(%e, "node registration not answered (cloud offline?); retrying");
                        continue;
                    }
                }
            }
            let msg = Message::new(
                module::EDGED,
                group::META,
                op::UPDATE,
                resource.clone(),
                status_request(&status),
            );
            let sent = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.hive.send_sync(module::META_MANAGER, msg, self.reply_timeout) => r,
            };
            if let Err(e) = sent {
                tracing::warn!(%e, "node status not delivered to metaManager");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_parse() {
        let cpuinfo = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(cpus_of(cpuinfo), 2);
        assert_eq!(
            mem_total_kib_of("MemTotal:        8039424 kB\nMemFree: 1 kB\n"),
            Some(8_039_424)
        );
        assert_eq!(
            pretty_name_of("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn status_shape() {
        let host = HostInfo {
            cpus: 2,
            mem_total_kib: 2048 * 1024,
            hostname: "h".into(),
            ..Default::default()
        };
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let st = node_status(&host, "192.0.2.1", &Runtime::Up("v1.6".into()), "v1.6", t, t);
        let v = status_request(&st);
        assert_eq!(v["UID"], NODE_STATUS_UID);
        let s = &v["Status"];
        assert_eq!(
            s["capacity"],
            json!({"cpu": "2", "memory": "2048Mi", "pods": "110"})
        );
        assert_eq!(s["allocatable"]["memory"], "1948Mi");
        assert_eq!(s["conditions"][0]["reason"], "EdgeReady");
        assert_eq!(s["nodeInfo"]["containerRuntimeVersion"], "remote://v1.6");
        assert_eq!(s["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(
            s["addresses"][0],
            json!({"type": "InternalIP", "address": "192.0.2.1"})
        );
        let down = node_status(&host, "ip", &Runtime::Down("gone".into()), "", t, t);
        let c = &down.conditions.unwrap()[0];
        assert_eq!((c.status.as_str(), c.message.as_deref()), ("False", Some("gone")));
        assert!(registration(&st).get("metadata").is_none());
    }
}
