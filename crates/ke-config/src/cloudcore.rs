//! `cloudcore.yaml` (`cloudcore.config.kubeedge.io/v1alpha1`, kind `CloudCore`).
//!
//! Field order in every struct is the alphabetical order of the YAML keys, so printing keeps
//! v1.2's sorted output. Each struct carries `#[serde(default)]` (absent keys keep the built-in
//! default) and `#[serde(deny_unknown_fields)]` (a typo is an error, not silently ignored).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationErrors};
use crate::{secs, validate, yaml};

/// `apiVersion` of cloudcore.yaml.
pub const CLOUDCORE_API_VERSION: &str = "cloudcore.config.kubeedge.io/v1alpha1";
/// `kind` of cloudcore.yaml.
pub const CLOUDCORE_KIND: &str = "CloudCore";
/// Default `--config` path of cloudcore.
pub const CLOUDCORE_DEFAULT_CONFIG_PATH: &str = "/etc/kubeedge/config/cloudcore.yaml";
/// Default of our `metricsAddress` extension for cloudcore.
pub const CLOUDCORE_DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:10350";

/// The whole cloudcore.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudCoreConfig {
    /// `apiVersion` (not checked, as in v1.2).
    pub api_version: String,
    /// `kind` (not checked, as in v1.2).
    pub kind: String,
    /// `kubeAPIConfig`: how to reach the Kubernetes API server.
    #[serde(rename = "kubeAPIConfig")]
    pub kube_api_config: KubeApiConfig,
    /// Extension: `metricsAddress`, the Prometheus `/metrics` listen address; empty disables it.
    pub metrics_address: String,
    /// `modules`.
    pub modules: CloudCoreModules,
}

impl Default for CloudCoreConfig {
    fn default() -> Self {
        Self {
            api_version: CLOUDCORE_API_VERSION.to_owned(),
            kind: CLOUDCORE_KIND.to_owned(),
            kube_api_config: KubeApiConfig::default(),
            metrics_address: CLOUDCORE_DEFAULT_METRICS_ADDRESS.to_owned(),
            modules: CloudCoreModules::default(),
        }
    }
}

/// `kubeAPIConfig` (shared with edgesite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeApiConfig {
    /// `burst`: client-side rate-limit burst.
    pub burst: i32,
    /// `contentType`: content type of requests (`application/vnd.kubernetes.protobuf`).
    pub content_type: String,
    /// `kubeConfig`: kubeconfig path; must be absolute (and exist) when non-empty.
    pub kube_config: String,
    /// `master`: API server URL, overrides the kubeconfig's server.
    pub master: String,
    /// `qps`: client-side rate limit.
    pub qps: i32,
}

impl Default for KubeApiConfig {
    fn default() -> Self {
        Self {
            burst: 200,
            content_type: "application/vnd.kubernetes.protobuf".to_owned(),
            kube_config: "/root/.kube/config".to_owned(),
            master: String::new(),
            qps: 100,
        }
    }
}

/// `modules` of cloudcore.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudCoreModules {
    /// `cloudhub`.
    #[serde(alias = "cloudHub")]
    pub cloudhub: CloudHub,
    /// `devicecontroller` — read and printed by us; v1.2.1 did neither (duplicate JSON key bug).
    #[serde(alias = "deviceController")]
    pub devicecontroller: DeviceController,
    /// `edgecontroller`.
    #[serde(alias = "edgeController")]
    pub edgecontroller: EdgeController,
    /// `synccontroller` — read and printed by us; v1.2.1 did neither.
    #[serde(alias = "syncController")]
    pub synccontroller: SyncController,
}

/// `modules.cloudhub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHub {
    /// Extension `allowLegacyEdgeCert`: accept stock v1.2 edges presenting the shared
    /// `CN=kubeedge.io` certificate (then the node id comes from the connection headers).
    pub allow_legacy_edge_cert: bool,
    /// `enable`.
    pub enable: bool,
    /// Extension `ha`: run several cloudcores against one API server, each edge node owned by
    /// one of them through a Lease (see `cloudhub::ha`). Omitted from output when off.
    #[serde(skip_serializing_if = "CloudHubHa::is_off")]
    pub ha: CloudHubHa,
    /// `https` (v1.3): the certificate-bootstrap HTTPS server (`GET /ca.crt`, `GET /edge.crt` with a
    /// token).
    pub https: CloudHubHttps,
    /// `keepaliveInterval` (seconds): an edge is dead after this long without a keepalive.
    pub keepalive_interval: i32,
    /// Extension `maxPendingPerNode`: bound of the per-node acked-delivery queue.
    pub max_pending_per_node: u32,
    /// `nodeLimit`: maximum number of connected edge nodes.
    pub node_limit: i32,
    /// Extension `queueStore`: SQLite file where the acked-delivery queues survive a cloudcore
    /// restart; empty keeps them in memory only.
    pub queue_store: String,
    /// `quic`.
    pub quic: CloudHubQuic,
    /// `tlsCAFile` (note the capitals; edgehub spells it `tlsCaFile`, accepted here too).
    #[serde(rename = "tlsCAFile", alias = "tlsCaFile")]
    pub tls_ca_file: String,
    /// `tlsCAKeyFile` (v1.3): the CA private key, used (with `https.enable`) to sign node
    /// certificates and to sign/verify bootstrap tokens.
    #[serde(rename = "tlsCAKeyFile", alias = "tlsCaKeyFile")]
    pub tls_ca_key_file: String,
    /// `tlsCertFile`.
    pub tls_cert_file: String,
    /// `tlsPrivateKeyFile`.
    pub tls_private_key_file: String,
    /// `unixsocket`.
    #[serde(rename = "unixsocket", alias = "unixSocket")]
    pub unix_socket: CloudHubUnixSocket,
    /// `websocket`.
    #[serde(alias = "webSocket")]
    pub websocket: CloudHubWebSocket,
    /// `writeTimeout` (seconds).
    pub write_timeout: i32,
}

impl Default for CloudHub {
    fn default() -> Self {
        Self {
            allow_legacy_edge_cert: false,
            enable: true,
            ha: CloudHubHa::default(),
            https: CloudHubHttps::default(),
            keepalive_interval: 30,
            max_pending_per_node: 1024,
            queue_store: "/var/lib/kubeedge/cloudhub-queue.db".to_owned(),
            node_limit: 10,
            quic: CloudHubQuic::default(),
            tls_ca_file: "/etc/kubeedge/ca/rootCA.crt".to_owned(),
            tls_ca_key_file: "/etc/kubeedge/ca/rootCA.key".to_owned(),
            tls_cert_file: "/etc/kubeedge/certs/edge.crt".to_owned(),
            tls_private_key_file: "/etc/kubeedge/certs/edge.key".to_owned(),
            unix_socket: CloudHubUnixSocket::default(),
            websocket: CloudHubWebSocket::default(),
            write_timeout: 30,
        }
    }
}

impl CloudHub {
    /// `keepaliveInterval` as a duration (negative reads as zero).
    pub fn keepalive_interval(&self) -> Duration {
        secs(self.keepalive_interval)
    }

    /// `writeTimeout` as a duration.
    pub fn write_timeout(&self) -> Duration {
        secs(self.write_timeout)
    }
}

/// `modules.cloudhub.ha` (extension): active-active cloudcores sharing one API server.
///
/// Every cloudcore renews its own Lease `cloudcore.<identity>` in `namespace`; the one an edge
/// connects to writes itself into the edge's Lease `node.<node>` and only then serves it. With
/// `enable`, missing CA files (`tlsCAFile`, `tlsCAKeyFile`) are taken from the Secret
/// `<namespace>/casecret` (created by the first cloudcore) and a missing server certificate is
/// issued from that CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHubHa {
    /// `enable`.
    pub enable: bool,
    /// `identity`: this cloudcore's name in the Leases; empty: the host name, then the pid.
    pub identity: String,
    /// `leaseDurationSeconds`: a cloudcore that has not renewed its Lease for this long is dead.
    pub lease_duration_seconds: u32,
    /// `namespace` of the Leases and of the CA Secret.
    pub namespace: String,
    /// `advertiseAddress`: IPs and DNS names put in a server certificate this cloudcore issues
    /// itself (the load balancer's and its own); empty: `127.0.0.1` and the host name.
    pub advertise_address: Vec<String>,
    /// `leaseQPS`: API requests per second (and burst) of the Lease client, apart from
    /// `kubeAPIConfig.qps`: taking a node over is one Lease write, so this bounds how fast a dead
    /// cloudcore's nodes re-home (5,000 nodes at the default 500: 10 s).
    #[serde(rename = "leaseQPS")]
    pub lease_qps: u32,
}

impl Default for CloudHubHa {
    fn default() -> Self {
        Self {
            enable: false,
            identity: String::new(),
            lease_duration_seconds: 15,
            namespace: "kubeedge".to_owned(),
            advertise_address: Vec::new(),
            lease_qps: 500,
        }
    }
}

impl CloudHubHa {
    fn is_off(&self) -> bool {
        !self.enable
    }

    /// `leaseDurationSeconds` as a duration.
    pub fn lease_duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.lease_duration_seconds.max(1)))
    }
}

/// `modules.cloudhub.https` (v1.3): where cloudhub serves certificate bootstrap over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHubHttps {
    /// `address`: listen IP.
    pub address: String,
    /// `enable`: off by default; when on, cloudcore also needs `tlsCAKeyFile` and the Kubernetes
    /// API (the token is published in the Secret `kubeedge/tokensecret`).
    pub enable: bool,
    /// `port`.
    pub port: u32,
}

impl Default for CloudHubHttps {
    fn default() -> Self {
        Self {
            address: "0.0.0.0".to_owned(),
            enable: false,
            port: 10002,
        }
    }
}

/// `modules.cloudhub.quic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHubQuic {
    /// `address`: listen IP.
    pub address: String,
    /// `enable` (omitted from output when false, like v1.2's `omitempty`).
    #[serde(skip_serializing_if = "yaml::is_false")]
    pub enable: bool,
    /// `maxIncomingStreams`.
    pub max_incoming_streams: i32,
    /// `port`.
    pub port: u32,
}

impl Default for CloudHubQuic {
    fn default() -> Self {
        Self {
            address: "0.0.0.0".to_owned(),
            enable: false,
            max_incoming_streams: 10000,
            port: 10001,
        }
    }
}

/// `modules.cloudhub.unixsocket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHubUnixSocket {
    /// `address`: `unix://` URL of the socket.
    pub address: String,
    /// `enable`.
    pub enable: bool,
}

impl Default for CloudHubUnixSocket {
    fn default() -> Self {
        Self {
            address: "unix:///var/lib/kubeedge/kubeedge.sock".to_owned(),
            enable: true,
        }
    }
}

impl CloudHubUnixSocket {
    /// The filesystem path of the socket (`address` without `unix://`), if well-formed.
    pub fn path(&self) -> Option<&Path> {
        self.address.strip_prefix("unix://").map(Path::new)
    }
}

/// `modules.cloudhub.websocket`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CloudHubWebSocket {
    /// `address`: listen IP.
    pub address: String,
    /// `enable`.
    pub enable: bool,
    /// `port`.
    pub port: u32,
}

impl Default for CloudHubWebSocket {
    fn default() -> Self {
        Self {
            address: "0.0.0.0".to_owned(),
            enable: true,
            port: 10000,
        }
    }
}

/// `context` of a controller: which modules it sends to / receives from / responds to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ControllerContext {
    /// `receiveModule`.
    pub receive_module: String,
    /// `responseModule`.
    pub response_module: String,
    /// `sendModule`.
    pub send_module: String,
}

impl ControllerContext {
    fn new(send: &str, receive: &str, response: &str) -> Self {
        Self {
            receive_module: receive.to_owned(),
            response_module: response.to_owned(),
            send_module: send.to_owned(),
        }
    }
}

impl Default for ControllerContext {
    fn default() -> Self {
        Self::new("cloudhub", "edgecontroller", "cloudhub")
    }
}

/// `modules.edgecontroller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct EdgeController {
    /// `buffer`: channel sizes.
    pub buffer: EdgeControllerBuffer,
    /// `context`.
    pub context: ControllerContext,
    /// `enable`.
    pub enable: bool,
    /// `load`: worker counts.
    pub load: EdgeControllerLoad,
    /// `nodeUpdateFrequency` (seconds), must be > 0.
    pub node_update_frequency: i32,
}

impl Default for EdgeController {
    fn default() -> Self {
        Self {
            buffer: EdgeControllerBuffer::default(),
            context: ControllerContext::default(),
            enable: true,
            load: EdgeControllerLoad::default(),
            node_update_frequency: 10,
        }
    }
}

impl EdgeController {
    /// `nodeUpdateFrequency` as a duration.
    pub fn node_update_frequency(&self) -> Duration {
        secs(self.node_update_frequency)
    }
}

/// `modules.edgecontroller.buffer` (Go channel sizes: 0 would mean unbuffered; tokio channels
/// need `max(1)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)] // one field per YAML key; names say it all
pub struct EdgeControllerBuffer {
    pub configmap_event: i32,
    pub endpoints_event: i32,
    pub pod_event: i32,
    pub query_configmap: i32,
    pub query_endpoints: i32,
    pub query_node: i32,
    pub query_persistentvolume: i32,
    pub query_persistentvolumeclaim: i32,
    pub query_secret: i32,
    pub query_service: i32,
    pub query_volumeattachment: i32,
    pub secret_event: i32,
    pub service_event: i32,
    pub update_node: i32,
    pub update_node_status: i32,
    pub update_pod_status: i32,
}

impl Default for EdgeControllerBuffer {
    fn default() -> Self {
        Self {
            configmap_event: 1,
            endpoints_event: 1,
            pod_event: 1,
            query_configmap: 1024,
            query_endpoints: 1024,
            query_node: 1024,
            query_persistentvolume: 1024,
            query_persistentvolumeclaim: 1024,
            query_secret: 1024,
            query_service: 1024,
            query_volumeattachment: 1024,
            secret_event: 1,
            service_event: 1,
            update_node: 1024,
            update_node_status: 1024,
            update_pod_status: 1024,
        }
    }
}

impl EdgeControllerBuffer {
    fn entries(&self) -> [(&'static str, i32); 16] {
        [
            ("configmapEvent", self.configmap_event),
            ("endpointsEvent", self.endpoints_event),
            ("podEvent", self.pod_event),
            ("queryConfigmap", self.query_configmap),
            ("queryEndpoints", self.query_endpoints),
            ("queryNode", self.query_node),
            ("queryPersistentvolume", self.query_persistentvolume),
            ("queryPersistentvolumeclaim", self.query_persistentvolumeclaim),
            ("querySecret", self.query_secret),
            ("queryService", self.query_service),
            ("queryVolumeattachment", self.query_volumeattachment),
            ("secretEvent", self.secret_event),
            ("serviceEvent", self.service_event),
            ("updateNode", self.update_node),
            ("updateNodeStatus", self.update_node_status),
            ("updatePodStatus", self.update_pod_status),
        ]
    }
}

/// `modules.edgecontroller.load` (worker counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
#[allow(missing_docs)] // one field per YAML key; names say it all
pub struct EdgeControllerLoad {
    pub query_configmap_workers: i32,
    pub query_endpoints_workers: i32,
    pub query_node_workers: i32,
    /// v1.2 spells this key `queryPersistentColumeClaimWorkers` (sic).
    #[serde(rename = "queryPersistentColumeClaimWorkers")]
    pub query_persistent_volume_claim_workers: i32,
    pub query_persistent_volume_workers: i32,
    pub query_secret_workers: i32,
    pub query_service_workers: i32,
    pub query_volume_attachment_workers: i32,
    pub update_node_status_workers: i32,
    pub update_node_workers: i32,
    pub update_pod_status_workers: i32,
}

impl Default for EdgeControllerLoad {
    fn default() -> Self {
        Self {
            query_configmap_workers: 4,
            query_endpoints_workers: 4,
            query_node_workers: 4,
            query_persistent_volume_claim_workers: 4,
            query_persistent_volume_workers: 4,
            query_secret_workers: 4,
            query_service_workers: 4,
            query_volume_attachment_workers: 4,
            update_node_status_workers: 1,
            update_node_workers: 4,
            update_pod_status_workers: 1,
        }
    }
}

impl EdgeControllerLoad {
    fn entries(&self) -> [(&'static str, i32); 11] {
        [
            ("queryConfigmapWorkers", self.query_configmap_workers),
            ("queryEndpointsWorkers", self.query_endpoints_workers),
            ("queryNodeWorkers", self.query_node_workers),
            (
                "queryPersistentColumeClaimWorkers",
                self.query_persistent_volume_claim_workers,
            ),
            (
                "queryPersistentVolumeWorkers",
                self.query_persistent_volume_workers,
            ),
            ("querySecretWorkers", self.query_secret_workers),
            ("queryServiceWorkers", self.query_service_workers),
            (
                "queryVolumeAttachmentWorkers",
                self.query_volume_attachment_workers,
            ),
            ("updateNodeStatusWorkers", self.update_node_status_workers),
            ("updateNodeWorkers", self.update_node_workers),
            ("updatePodStatusWorkers", self.update_pod_status_workers),
        ]
    }
}

/// `modules.devicecontroller` (v1.3 layout under v1.2's lower-case module key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceController {
    /// `buffer`.
    pub buffer: DeviceControllerBuffer,
    /// `context` (default send `cloudhub`, receive `devicecontroller`, response `cloudhub`).
    pub context: ControllerContext,
    /// `enable`.
    pub enable: bool,
    /// `load`.
    pub load: DeviceControllerLoad,
}

impl Default for DeviceController {
    fn default() -> Self {
        Self {
            buffer: DeviceControllerBuffer::default(),
            context: ControllerContext::new("cloudhub", "devicecontroller", "cloudhub"),
            enable: true,
            load: DeviceControllerLoad::default(),
        }
    }
}

/// `modules.devicecontroller.buffer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceControllerBuffer {
    /// `deviceEvent`: Device watch channel size.
    pub device_event: i32,
    /// `deviceModelEvent`: DeviceModel watch channel size.
    pub device_model_event: i32,
    /// `updateDeviceStatus`: twin-report channel size (v1.2 also used it as the worker count).
    pub update_device_status: i32,
}

impl Default for DeviceControllerBuffer {
    fn default() -> Self {
        Self {
            device_event: 1,
            device_model_event: 1,
            update_device_status: 1024,
        }
    }
}

/// `modules.devicecontroller.load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceControllerLoad {
    /// `updateDeviceStatusWorkers`.
    pub update_device_status_workers: i32,
}

impl Default for DeviceControllerLoad {
    fn default() -> Self {
        Self {
            update_device_status_workers: 1,
        }
    }
}

/// `modules.synccontroller`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SyncController {
    /// `enable`.
    pub enable: bool,
}

impl Default for SyncController {
    fn default() -> Self {
        Self { enable: true }
    }
}

// ---- --minconfig: the reduced object of v1.2 (printing only) ----

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinCloudCore<'a> {
    api_version: &'a str,
    kind: &'a str,
    #[serde(rename = "kubeAPIConfig")]
    kube_api_config: MinKubeApi<'a>,
    modules: MinModules<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinKubeApi<'a> {
    kube_config: &'a str,
    master: &'a str,
}

#[derive(Serialize)]
struct MinModules<'a> {
    cloudhub: MinCloudHub<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MinCloudHub<'a> {
    node_limit: i32,
    #[serde(rename = "tlsCAFile")]
    tls_ca_file: &'a str,
    tls_cert_file: &'a str,
    tls_private_key_file: &'a str,
    unixsocket: &'a CloudHubUnixSocket,
    websocket: &'a CloudHubWebSocket,
}

impl CloudCoreConfig {
    /// The v1.2 `--minconfig` subset of this configuration, with its comment header.
    /// Our extensions are never part of it.
    pub fn to_min_yaml(&self) -> Result<String> {
        let hub = &self.modules.cloudhub;
        let min = MinCloudCore {
            api_version: &self.api_version,
            kind: &self.kind,
            kube_api_config: MinKubeApi {
                kube_config: &self.kube_api_config.kube_config,
                master: &self.kube_api_config.master,
            },
            modules: MinModules {
                cloudhub: MinCloudHub {
                    node_limit: hub.node_limit,
                    tls_ca_file: &hub.tls_ca_file,
                    tls_cert_file: &hub.tls_cert_file,
                    tls_private_key_file: &hub.tls_private_key_file,
                    unixsocket: &hub.unix_socket,
                    websocket: &hub.websocket,
                },
            },
        };
        yaml::document(yaml::MIN_HEADER, &min, "cloudcore")
    }

    /// The rules of v1.2 (plus a few of ours) that need no filesystem access.
    /// Disabled modules are not checked, as in v1.2.
    pub fn validate(&self) -> Result<()> {
        let mut errs = ValidationErrors::default();
        let k = &self.kube_api_config;
        if !k.kube_config.is_empty() && !Path::new(&k.kube_config).is_absolute() {
            errs.push(crate::error::FieldError::invalid(
                "kubeAPIConfig.kubeConfig",
                &k.kube_config,
                "kubeconfig path must be absolute",
            ));
        }
        validate::optional_socket_addr(&mut errs, "metricsAddress", &self.metrics_address);

        let hub = &self.modules.cloudhub;
        if hub.enable {
            let p = "modules.cloudhub";
            validate::ip(
                &mut errs,
                &format!("{p}.websocket.address"),
                &hub.websocket.address,
            );
            validate::port(&mut errs, &format!("{p}.websocket.port"), hub.websocket.port);
            if hub.https.enable {
                validate::ip(&mut errs, &format!("{p}.https.address"), &hub.https.address);
                validate::port(&mut errs, &format!("{p}.https.port"), hub.https.port);
            }
            validate::ip(&mut errs, &format!("{p}.quic.address"), &hub.quic.address);
            validate::port(&mut errs, &format!("{p}.quic.port"), hub.quic.port);
            if !hub.unix_socket.address.starts_with("unix://") {
                errs.push(crate::error::FieldError::invalid(
                    &format!("{p}.unixsocket.address"),
                    &hub.unix_socket.address,
                    "unixSocketAddress must has prefix unix://",
                ));
            }
            validate::positive(
                &mut errs,
                &format!("{p}.keepaliveInterval"),
                hub.keepalive_interval.into(),
            );
            validate::positive(&mut errs, &format!("{p}.nodeLimit"), hub.node_limit.into());
            validate::positive(
                &mut errs,
                &format!("{p}.maxPendingPerNode"),
                hub.max_pending_per_node.into(),
            );
            if hub.ha.enable {
                validate::positive(
                    &mut errs,
                    &format!("{p}.ha.leaseDurationSeconds"),
                    hub.ha.lease_duration_seconds.into(),
                );
                validate::positive(&mut errs, &format!("{p}.ha.leaseQPS"), hub.ha.lease_qps.into());
                if hub.ha.namespace.is_empty() {
                    errs.push(crate::error::FieldError::invalid(
                        &format!("{p}.ha.namespace"),
                        &hub.ha.namespace,
                        "the Leases need a namespace",
                    ));
                }
            }
        }

        let ec = &self.modules.edgecontroller;
        if ec.enable {
            let p = "modules.edgecontroller";
            validate::positive(
                &mut errs,
                &format!("{p}.nodeUpdateFrequency"),
                ec.node_update_frequency.into(),
            );
            for (key, v) in ec.buffer.entries() {
                validate::non_negative(&mut errs, &format!("{p}.buffer.{key}"), v.into());
            }
            for (key, v) in ec.load.entries() {
                validate::positive(&mut errs, &format!("{p}.load.{key}"), v.into());
            }
        }

        let dc = &self.modules.devicecontroller;
        if dc.enable {
            let p = "modules.devicecontroller";
            validate::non_negative(
                &mut errs,
                &format!("{p}.buffer.deviceEvent"),
                dc.buffer.device_event.into(),
            );
            validate::non_negative(
                &mut errs,
                &format!("{p}.buffer.deviceModelEvent"),
                dc.buffer.device_model_event.into(),
            );
            validate::positive(
                &mut errs,
                &format!("{p}.buffer.updateDeviceStatus"),
                dc.buffer.update_device_status.into(),
            );
            validate::positive(
                &mut errs,
                &format!("{p}.load.updateDeviceStatusWorkers"),
                dc.load.update_device_status_workers.into(),
            );
        }
        errs.into_result()
    }

    /// The v1.2 rules that look at the filesystem: the kubeconfig (when set) and, when cloudhub is
    /// enabled, its TLS files must exist. Kept apart so tests and `--defaultconfig` need no
    /// `/etc/kubeedge`.
    pub fn validate_files(&self) -> Result<()> {
        let mut errs = ValidationErrors::default();
        if !self.kube_api_config.kube_config.is_empty() {
            validate::file_exists(
                &mut errs,
                "kubeAPIConfig.kubeConfig",
                &self.kube_api_config.kube_config,
            );
        }
        let hub = &self.modules.cloudhub;
        // With `ha`, missing TLS files come from the cluster (the CA Secret) at start.
        if hub.enable && !hub.ha.enable {
            validate::file_exists(&mut errs, "modules.cloudhub.tlsCAFile", &hub.tls_ca_file);
            validate::file_exists(&mut errs, "modules.cloudhub.tlsCertFile", &hub.tls_cert_file);
            validate::file_exists(
                &mut errs,
                "modules.cloudhub.tlsPrivateKeyFile",
                &hub.tls_private_key_file,
            );
            if hub.https.enable {
                validate::file_exists(&mut errs, "modules.cloudhub.tlsCAKeyFile", &hub.tls_ca_key_file);
            }
        }
        errs.into_result()
    }

    /// Default `--config` path.
    pub fn default_config_path() -> PathBuf {
        PathBuf::from(CLOUDCORE_DEFAULT_CONFIG_PATH)
    }
}
