//! `edgecore.yaml` (`edgecore.config.kubeedge.io/v1alpha1`, kind `EdgeCore`).
//!
//! Same conventions as [`crate::cloudcore`]: alphabetical field order, `#[serde(default)]`,
//! `#[serde(deny_unknown_fields)]`. `modules.edged.hostnameOverride` and `modules.edged.nodeIP`
//! default to host facts ([`HostInfo`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, Result, ValidationErrors};
use crate::host::HostInfo;
use crate::{secs, validate, yaml};

/// `apiVersion` of edgecore.yaml.
pub const EDGECORE_API_VERSION: &str = "edgecore.config.kubeedge.io/v1alpha1";
/// `kind` of edgecore.yaml.
pub const EDGECORE_KIND: &str = "EdgeCore";
/// Default `--config` path of edgecore.
pub const EDGECORE_DEFAULT_CONFIG_PATH: &str = "/etc/kubeedge/config/edgecore.yaml";
/// Default of our `modules.edged.readOnlyAddress` extension (v1.2's fixed address).
pub const EDGED_DEFAULT_READ_ONLY_ADDRESS: &str = "127.0.0.1:10255";
/// Default of our `metricsAddress` extension for edgecore.
pub const EDGECORE_DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:10351";

/// The whole edgecore.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeCoreConfig {
    /// `apiVersion` (not checked, as in v1.2).
    pub api_version: String,
    /// `database`: the SQLite store.
    pub database: Database,
    /// `kind` (not checked, as in v1.2).
    pub kind: String,
    /// Extension: `metricsAddress`, the Prometheus `/metrics` listen address; empty disables it.
    pub metrics_address: String,
    /// `modules`.
    pub modules: EdgeCoreModules,
}

impl Default for EdgeCoreConfig {
    /// Defaults with the host facts detected once per process ([`HostInfo::cached`]).
    fn default() -> Self {
        Self::with_host(HostInfo::cached())
    }
}

/// `database`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Database {
    /// `aliasName` (`default`).
    pub alias_name: String,
    /// `dataSource`: SQLite file path (its parent directory is created at start).
    pub data_source: String,
    /// `driverName` (`sqlite3`).
    pub driver_name: String,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            alias_name: "default".to_owned(),
            data_source: "/var/lib/kubeedge/edgecore.db".to_owned(),
            driver_name: "sqlite3".to_owned(),
        }
    }
}

/// `modules` of edgecore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeCoreModules {
    /// `dbtest` (the `testManager` HTTP hook on :12345).
    #[serde(alias = "dbTest")]
    pub dbtest: Enable,
    /// `devicetwin`.
    #[serde(alias = "deviceTwin")]
    pub devicetwin: Enable,
    /// `edged`.
    pub edged: Edged,
    /// `edgehub`.
    #[serde(alias = "edgeHub")]
    pub edgehub: EdgeHub,
    /// `edgemesh`.
    #[serde(alias = "edgeMesh")]
    pub edgemesh: EdgeMesh,
    /// `eventbus`.
    #[serde(alias = "eventBus")]
    pub eventbus: EventBus,
    /// `metamanager`.
    #[serde(alias = "metaManager")]
    pub metamanager: MetaManager,
    /// `servicebus`.
    #[serde(alias = "serviceBus")]
    pub servicebus: Enable,
}

/// A module whose only setting is `enable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Enable {
    /// `enable`.
    pub enable: bool,
}

/// `modules.edged.cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CgroupDriver {
    /// `cgroupfs`.
    #[default]
    #[serde(rename = "cgroupfs")]
    Cgroupfs,
    /// `systemd`.
    #[serde(rename = "systemd")]
    Systemd,
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cgroupfs => "cgroupfs",
            Self::Systemd => "systemd",
        })
    }
}

/// `modules.edged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Edged {
    /// `cgroupDriver`: `cgroupfs` or `systemd`.
    pub cgroup_driver: CgroupDriver,
    /// `clusterDNS`: comma-separated DNS server IPs for pods.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: String,
    /// `clusterDomain`.
    pub cluster_domain: String,
    /// `cniBinDir`.
    pub cni_bin_dir: String,
    /// `cniCacheDirs` (plural key, one directory).
    pub cni_cache_dirs: String,
    /// `cniConfDir`.
    pub cni_conf_dir: String,
    /// `devicePluginEnabled`.
    pub device_plugin_enabled: bool,
    /// `dockerAddress`.
    pub docker_address: String,
    /// `edgedMemoryCapacity` (bytes) reported as node capacity.
    pub edged_memory_capacity: i64,
    /// `enable`.
    pub enable: bool,
    /// `gpuPluginEnabled`.
    pub gpu_plugin_enabled: bool,
    /// `hostnameOverride`: the node name (= edgehub node id). Default: OS hostname.
    pub hostname_override: String,
    /// `imageGCHighThreshold` (percent).
    #[serde(rename = "imageGCHighThreshold")]
    pub image_gc_high_threshold: i32,
    /// `imageGCLowThreshold` (percent).
    #[serde(rename = "imageGCLowThreshold")]
    pub image_gc_low_threshold: i32,
    /// `imagePullProgressDeadline` (seconds).
    pub image_pull_progress_deadline: i32,
    /// `interfaceName`.
    pub interface_name: String,
    /// `maximumDeadContainersPerPod`.
    pub maximum_dead_containers_per_pod: i32,
    /// `networkPluginMTU`.
    #[serde(rename = "networkPluginMTU")]
    pub network_plugin_mtu: i32,
    /// `networkPluginName` (empty: no-op network plugin; omitted from output when empty, as in v1.2).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network_plugin_name: String,
    /// `nodeIP` (required). Default: first IPv4 of the hostname / default-route interface.
    #[serde(rename = "nodeIP")]
    pub node_ip: String,
    /// `nodeStatusUpdateFrequency` (seconds).
    pub node_status_update_frequency: i32,
    /// `podSandboxImage`.
    pub pod_sandbox_image: String,
    /// Extension `readOnlyAddress`: `IP:port` of edged's read-only `/pods` + `/healthz`
    /// endpoint (v1.2: fixed `127.0.0.1:10255`); empty serves nothing.
    pub read_only_address: String,
    /// `registerNode`.
    pub register_node: bool,
    /// `registerNodeNamespace`: namespace segment of node-scoped resources.
    pub register_node_namespace: String,
    /// `remoteImageEndpoint`.
    pub remote_image_endpoint: String,
    /// `remoteRuntimeEndpoint`: CRI endpoint.
    pub remote_runtime_endpoint: String,
    /// `runtimeRequestTimeout` — **minutes**, not seconds.
    pub runtime_request_timeout: i32,
    /// `runtimeType`: `docker` or `remote`.
    pub runtime_type: String,
}

impl Edged {
    /// Edged defaults for the given host facts.
    pub fn with_host(host: &HostInfo) -> Self {
        Self {
            cgroup_driver: CgroupDriver::Cgroupfs,
            cluster_dns: String::new(),
            cluster_domain: String::new(),
            cni_bin_dir: "/opt/cni/bin".to_owned(),
            cni_cache_dirs: "/var/lib/cni/cache".to_owned(),
            cni_conf_dir: "/etc/cni/net.d".to_owned(),
            device_plugin_enabled: false,
            docker_address: "unix:///var/run/docker.sock".to_owned(),
            edged_memory_capacity: 7_852_396_000,
            enable: true,
            gpu_plugin_enabled: false,
            hostname_override: host.hostname.clone(),
            image_gc_high_threshold: 80,
            image_gc_low_threshold: 40,
            image_pull_progress_deadline: 60,
            interface_name: "eth0".to_owned(),
            maximum_dead_containers_per_pod: 1,
            network_plugin_mtu: 1500,
            network_plugin_name: String::new(),
            node_ip: host.node_ip.clone(),
            node_status_update_frequency: 10,
            pod_sandbox_image: "kubeedge/pause:3.1".to_owned(),
            read_only_address: EDGED_DEFAULT_READ_ONLY_ADDRESS.to_owned(),
            register_node: true,
            register_node_namespace: "default".to_owned(),
            remote_image_endpoint: "unix:///var/run/dockershim.sock".to_owned(),
            remote_runtime_endpoint: "unix:///var/run/dockershim.sock".to_owned(),
            runtime_request_timeout: 2,
            runtime_type: "docker".to_owned(),
        }
    }

    /// `nodeStatusUpdateFrequency` as a duration.
    pub fn node_status_update_frequency(&self) -> Duration {
        secs(self.node_status_update_frequency)
    }

    /// `imagePullProgressDeadline` as a duration.
    pub fn image_pull_progress_deadline(&self) -> Duration {
        secs(self.image_pull_progress_deadline)
    }

    /// `runtimeRequestTimeout` as a duration — the field is in **minutes**.
    pub fn runtime_request_timeout(&self) -> Duration {
        secs(self.runtime_request_timeout).saturating_mul(60)
    }

    /// `clusterDNS` split on commas, blanks dropped.
    pub fn cluster_dns_servers(&self) -> Vec<&str> {
        self.cluster_dns
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl Default for Edged {
    fn default() -> Self {
        Self::with_host(HostInfo::cached())
    }
}

/// `modules.edgehub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeHub {
    /// `enable`.
    pub enable: bool,
    /// `heartbeat` (seconds): keepalive period; also the sync-reply wait; reconnect delay is 2×.
    pub heartbeat: i32,
    /// `httpServer` (v1.3): cloudhub's certificate-bootstrap URL, `https://host:port`; used only
    /// when `token` is set and a TLS file is missing.
    pub http_server: String,
    /// `projectID`.
    #[serde(rename = "projectID")]
    pub project_id: String,
    /// `quic`.
    pub quic: EdgeHubQuic,
    /// `tlsCaFile` (spelled so in v1.2 edgehub; `tlsCAFile` accepted too).
    #[serde(alias = "tlsCAFile")]
    pub tls_ca_file: String,
    /// `tlsCertFile`.
    pub tls_cert_file: String,
    /// `tlsPrivateKeyFile`.
    pub tls_private_key_file: String,
    /// `token` (v1.3): a bootstrap token `<caHash>.<jwt>` (`keadm gettoken`). When set and
    /// `tlsCaFile`, `tlsCertFile` or `tlsPrivateKeyFile` is missing, edgecore fetches the CA and a
    /// node certificate from `httpServer` at start-up and writes the three files.
    pub token: String,
    /// `websocket`.
    #[serde(alias = "webSocket")]
    pub websocket: EdgeHubWebSocket,
}

impl Default for EdgeHub {
    fn default() -> Self {
        Self {
            enable: true,
            heartbeat: 15,
            http_server: "https://127.0.0.1:10002".to_owned(),
            project_id: "e632aba927ea4ac2b575ec1603d56f10".to_owned(),
            quic: EdgeHubQuic::default(),
            tls_ca_file: "/etc/kubeedge/ca/rootCA.crt".to_owned(),
            tls_cert_file: "/etc/kubeedge/certs/edge.crt".to_owned(),
            tls_private_key_file: "/etc/kubeedge/certs/edge.key".to_owned(),
            token: String::new(),
            websocket: EdgeHubWebSocket::default(),
        }
    }
}

impl EdgeHub {
    /// `heartbeat` as a duration.
    pub fn heartbeat(&self) -> Duration {
        secs(self.heartbeat)
    }

    /// `httpServer` split into host (IPv6 without brackets) and port (443 when absent); `None`
    /// unless it is `https://host[:port]` with an optional trailing `/`.
    pub fn http_server_addr(&self) -> Option<(String, u16)> {
        let rest = self.http_server.trim().strip_prefix("https://")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':')?)),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0)?,
            None => 443,
        };
        (!host.is_empty()).then(|| (host.to_owned(), port))
    }
}

/// `modules.edgehub.quic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeHubQuic {
    /// `enable` (omitted from output when false, like v1.2's `omitempty`).
    #[serde(skip_serializing_if = "yaml::is_false")]
    pub enable: bool,
    /// `handshakeTimeout` (seconds).
    pub handshake_timeout: i32,
    /// `readDeadline` (seconds; not applied in v1.2.1).
    pub read_deadline: i32,
    /// `server`: cloudhub `host:port`; extension: several, comma-separated (cloudcores in HA
    /// mode), tried in turn.
    pub server: String,
    /// `writeDeadline` (seconds; not applied in v1.2.1).
    pub write_deadline: i32,
}

impl Default for EdgeHubQuic {
    fn default() -> Self {
        Self {
            enable: false,
            handshake_timeout: 30,
            read_deadline: 15,
            server: "127.0.0.1:10001".to_owned(),
            write_deadline: 15,
        }
    }
}

/// `modules.edgehub.websocket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeHubWebSocket {
    /// `enable`.
    pub enable: bool,
    /// `handshakeTimeout` (seconds).
    pub handshake_timeout: i32,
    /// `readDeadline` (seconds; not applied in v1.2.1).
    pub read_deadline: i32,
    /// `server`: cloudhub `host:port`; extension: several, comma-separated (cloudcores in HA
    /// mode), tried in turn.
    pub server: String,
    /// `writeDeadline` (seconds; not applied in v1.2.1).
    pub write_deadline: i32,
}

impl Default for EdgeHubWebSocket {
    fn default() -> Self {
        Self {
            enable: true,
            handshake_timeout: 30,
            read_deadline: 15,
            server: "127.0.0.1:10000".to_owned(),
            write_deadline: 15,
        }
    }
}

macro_rules! transport_durations {
    ($t:ty) => {
        impl $t {
            /// `handshakeTimeout` as a duration.
            pub fn handshake_timeout(&self) -> Duration {
                secs(self.handshake_timeout)
            }
            /// `readDeadline` as a duration.
            pub fn read_deadline(&self) -> Duration {
                secs(self.read_deadline)
            }
            /// `writeDeadline` as a duration.
            pub fn write_deadline(&self) -> Duration {
                secs(self.write_deadline)
            }
        }
    };
}
transport_durations!(EdgeHubQuic);
transport_durations!(EdgeHubWebSocket);

/// `modules.edgemesh.lbStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LbStrategy {
    /// `RoundRobin`.
    #[default]
    RoundRobin,
    /// `Random`.
    Random,
}

/// `modules.edgemesh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeMesh {
    /// `enable`.
    pub enable: bool,
    /// `lbStrategy`: `RoundRobin` or `Random`.
    pub lb_strategy: LbStrategy,
}

impl Default for EdgeMesh {
    fn default() -> Self {
        Self {
            enable: true,
            lb_strategy: LbStrategy::RoundRobin,
        }
    }
}

/// Meaning of `modules.eventbus.mqttMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttMode {
    /// 0: embedded broker only.
    Internal,
    /// 1: embedded and external broker.
    Both,
    /// 2: external broker only (default).
    External,
}

/// `modules.eventbus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EventBus {
    /// `enable`.
    pub enable: bool,
    /// `mqttMode`: 0 internal, 1 both, 2 external (see [`EventBus::mode`]).
    pub mqtt_mode: i32,
    /// `mqttQOS` (internal broker only).
    #[serde(rename = "mqttQOS")]
    pub mqtt_qos: u8,
    /// `mqttRetain` (internal broker only).
    pub mqtt_retain: bool,
    /// `mqttServerExternal`: e.g. `tcp://127.0.0.1:1883`.
    pub mqtt_server_external: String,
    /// `mqttServerInternal`: e.g. `tcp://127.0.0.1:1884`.
    pub mqtt_server_internal: String,
    /// `mqttSessionQueueSize`.
    pub mqtt_session_queue_size: i32,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            enable: true,
            mqtt_mode: 2,
            mqtt_qos: 0,
            mqtt_retain: false,
            mqtt_server_external: "tcp://127.0.0.1:1883".to_owned(),
            mqtt_server_internal: "tcp://127.0.0.1:1884".to_owned(),
            mqtt_session_queue_size: 100,
        }
    }
}

impl EventBus {
    /// `mqttMode` decoded; `None` if out of range (rejected by validation).
    pub fn mode(&self) -> Option<MqttMode> {
        match self.mqtt_mode {
            0 => Some(MqttMode::Internal),
            1 => Some(MqttMode::Both),
            2 => Some(MqttMode::External),
            _ => None,
        }
    }
}

/// `modules.metamanager`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MetaManager {
    /// `contextSendGroup` (`hub`).
    pub context_send_group: String,
    /// `contextSendModule` (`websocket`).
    pub context_send_module: String,
    /// `enable`.
    pub enable: bool,
    /// `podStatusSyncInterval` (seconds).
    pub pod_status_sync_interval: i32,
}

impl Default for MetaManager {
    fn default() -> Self {
        Self {
            context_send_group: "hub".to_owned(),
            context_send_module: "websocket".to_owned(),
            enable: true,
            pod_status_sync_interval: 60,
        }
    }
}

impl MetaManager {
    /// `podStatusSyncInterval` as a duration.
    pub fn pod_status_sync_interval(&self) -> Duration {
        secs(self.pod_status_sync_interval)
    }
}

impl Default for EdgeCoreModules {
    fn default() -> Self {
        Self::with_host(HostInfo::cached())
    }
}

impl EdgeCoreModules {
    fn with_host(host: &HostInfo) -> Self {
        Self {
            dbtest: Enable { enable: false },
            devicetwin: Enable { enable: true },
            edged: Edged::with_host(host),
            edgehub: EdgeHub::default(),
            edgemesh: EdgeMesh::default(),
            eventbus: EventBus::default(),
            metamanager: MetaManager::default(),
            servicebus: Enable { enable: false },
        }
    }
}

// ---- --minconfig: the reduced object of v1.2 (printing only) ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinEdgeCore<'a> {
    api_version: &'a str,
    database: MinDatabase<'a>,
    kind: &'a str,
    modules: MinModules<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinDatabase<'a> {
    data_source: &'a str,
}

#[derive(Serialize)]
struct MinModules<'a> {
    edged: MinEdged<'a>,
    edgehub: MinEdgeHub<'a>,
    eventbus: MinEventBus<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinEdged<'a> {
    cgroup_driver: CgroupDriver,
    #[serde(rename = "clusterDNS")]
    cluster_dns: &'a str,
    cluster_domain: &'a str,
    device_plugin_enabled: bool,
    docker_address: &'a str,
    gpu_plugin_enabled: bool,
    hostname_override: &'a str,
    interface_name: &'a str,
    #[serde(rename = "nodeIP")]
    node_ip: &'a str,
    pod_sandbox_image: &'a str,
    remote_image_endpoint: &'a str,
    remote_runtime_endpoint: &'a str,
    runtime_type: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinEdgeHub<'a> {
    heartbeat: i32,
    tls_ca_file: &'a str,
    tls_cert_file: &'a str,
    tls_private_key_file: &'a str,
    websocket: &'a EdgeHubWebSocket,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinEventBus<'a> {
    mqtt_mode: i32,
    #[serde(rename = "mqttQOS")]
    mqtt_qos: u8,
    mqtt_retain: bool,
    mqtt_server_external: &'a str,
    mqtt_server_internal: &'a str,
}

impl EdgeCoreConfig {
    /// Defaults computed for the given host facts (deterministic; for tests and keadm).
    pub fn with_host(host: &HostInfo) -> Self {
        Self {
            api_version: EDGECORE_API_VERSION.to_owned(),
            database: Database::default(),
            kind: EDGECORE_KIND.to_owned(),
            metrics_address: EDGECORE_DEFAULT_METRICS_ADDRESS.to_owned(),
            modules: EdgeCoreModules::with_host(host),
        }
    }

    /// The v1.2 `--minconfig` subset of this configuration, with its comment header.
    /// Our extensions are never part of it.
    pub fn to_min_yaml(&self) -> Result<String> {
        let m = &self.modules;
        let e = &m.edged;
        let min = MinEdgeCore {
            api_version: &self.api_version,
            database: MinDatabase {
                data_source: &self.database.data_source,
            },
            kind: &self.kind,
            modules: MinModules {
                edged: MinEdged {
                    cgroup_driver: e.cgroup_driver,
                    cluster_dns: &e.cluster_dns,
                    cluster_domain: &e.cluster_domain,
                    device_plugin_enabled: e.device_plugin_enabled,
                    docker_address: &e.docker_address,
                    gpu_plugin_enabled: e.gpu_plugin_enabled,
                    hostname_override: &e.hostname_override,
                    interface_name: &e.interface_name,
                    node_ip: &e.node_ip,
                    pod_sandbox_image: &e.pod_sandbox_image,
                    remote_image_endpoint: &e.remote_image_endpoint,
                    remote_runtime_endpoint: &e.remote_runtime_endpoint,
                    runtime_type: &e.runtime_type,
                },
                edgehub: MinEdgeHub {
                    heartbeat: m.edgehub.heartbeat,
                    tls_ca_file: &m.edgehub.tls_ca_file,
                    tls_cert_file: &m.edgehub.tls_cert_file,
                    tls_private_key_file: &m.edgehub.tls_private_key_file,
                    websocket: &m.edgehub.websocket,
                },
                eventbus: MinEventBus {
                    mqtt_mode: m.eventbus.mqtt_mode,
                    mqtt_qos: m.eventbus.mqtt_qos,
                    mqtt_retain: m.eventbus.mqtt_retain,
                    mqtt_server_external: &m.eventbus.mqtt_server_external,
                    mqtt_server_internal: &m.eventbus.mqtt_server_internal,
                },
            },
        };
        yaml::document(yaml::MIN_HEADER, &min, "edgecore")
    }

    /// The rules of v1.2 (plus a few of ours) that need no filesystem access.
    /// Disabled modules are not checked, as in v1.2.
    pub fn validate(&self) -> Result<()> {
        let mut errs = ValidationErrors::default();
        validate::optional_socket_addr(&mut errs, "metricsAddress", &self.metrics_address);
        if self.database.data_source.is_empty() {
            errs.push(FieldError::required(
                "database.dataSource",
                "the SQLite file path",
            ));
        }
        let m = &self.modules;

        let e = &m.edged;
        if e.enable {
            let p = "modules.edged";
            if e.node_ip.is_empty() {
                errs.push(FieldError::required(
                    &format!("{p}.nodeIP"),
                    "the IP address of this node",
                ));
            } else {
                validate::ip(&mut errs, &format!("{p}.nodeIP"), &e.node_ip);
            }
            validate::dns1123_subdomain(&mut errs, &format!("{p}.hostnameOverride"), &e.hostname_override);
            validate::positive(
                &mut errs,
                &format!("{p}.nodeStatusUpdateFrequency"),
                e.node_status_update_frequency.into(),
            );
            validate::positive(
                &mut errs,
                &format!("{p}.runtimeRequestTimeout"),
                e.runtime_request_timeout.into(),
            );
            for (key, v) in [
                ("imageGCHighThreshold", e.image_gc_high_threshold),
                ("imageGCLowThreshold", e.image_gc_low_threshold),
            ] {
                if !(0..=100).contains(&v) {
                    errs.push(FieldError::invalid(
                        &format!("{p}.{key}"),
                        v,
                        "must be a percentage (0..100)",
                    ));
                }
            }
            if e.image_gc_low_threshold > e.image_gc_high_threshold {
                errs.push(FieldError::invalid(
                    &format!("{p}.imageGCLowThreshold"),
                    e.image_gc_low_threshold,
                    "must not exceed imageGCHighThreshold",
                ));
            }
            validate::optional_socket_addr(&mut errs, &format!("{p}.readOnlyAddress"), &e.read_only_address);
            for s in e.cluster_dns_servers() {
                validate::ip(&mut errs, &format!("{p}.clusterDNS"), s);
            }
        }

        let h = &m.edgehub;
        if h.enable {
            let p = "modules.edgehub";
            match (h.websocket.enable, h.quic.enable) {
                (true, false) => {
                    for s in h.websocket.server.split(',') {
                        validate::host_port(&mut errs, &format!("{p}.websocket.server"), s.trim());
                    }
                }
                (false, true) => {
                    for s in h.quic.server.split(',') {
                        validate::host_port(&mut errs, &format!("{p}.quic.server"), s.trim());
                    }
                }
                (both, _) => errs.push(FieldError::invalid(
                    &format!("{p}.websocket.enable"),
                    both,
                    "exactly one of websocket.enable and quic.enable must be true",
                )),
            }
            validate::positive(&mut errs, &format!("{p}.heartbeat"), h.heartbeat.into());
            if !h.token.is_empty() && h.http_server_addr().is_none() {
                errs.push(FieldError::invalid(
                    &format!("{p}.httpServer"),
                    &h.http_server,
                    "must be https://host[:port] (e.g. https://192.168.1.10:10002) when token is set",
                ));
            }
        }

        let b = &m.eventbus;
        if b.enable {
            let p = "modules.eventbus";
            if b.mode().is_none() {
                errs.push(FieldError::invalid(
                    &format!("{p}.mqttMode"),
                    b.mqtt_mode,
                    "must be 0 (internal), 1 (both) or 2 (external)",
                ));
            }
            if b.mqtt_qos > 2 {
                errs.push(FieldError::invalid(
                    &format!("{p}.mqttQOS"),
                    b.mqtt_qos,
                    "must be 0, 1 or 2",
                ));
            }
        }

        let mm = &m.metamanager;
        if mm.enable {
            validate::positive(
                &mut errs,
                "modules.metamanager.podStatusSyncInterval",
                mm.pod_status_sync_interval.into(),
            );
        }
        errs.into_result()
    }

    /// The v1.2 rules that look at the filesystem: when edgehub is enabled its TLS files must
    /// exist. Kept apart so tests and `--defaultconfig` need no `/etc/kubeedge`.
    pub fn validate_files(&self) -> Result<()> {
        let mut errs = ValidationErrors::default();
        let h = &self.modules.edgehub;
        // With a token, missing TLS files are fetched at start-up (certificate bootstrap).
        if h.enable && h.token.is_empty() {
            validate::file_exists(&mut errs, "modules.edgehub.tlsCaFile", &h.tls_ca_file);
            validate::file_exists(&mut errs, "modules.edgehub.tlsCertFile", &h.tls_cert_file);
            validate::file_exists(
                &mut errs,
                "modules.edgehub.tlsPrivateKeyFile",
                &h.tls_private_key_file,
            );
        }
        errs.into_result()
    }

    /// Default `--config` path.
    pub fn default_config_path() -> PathBuf {
        PathBuf::from(EDGECORE_DEFAULT_CONFIG_PATH)
    }
}
