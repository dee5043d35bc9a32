//! [`EdgedOptions`]: what edgecore's `modules.edged` section turns into.

use std::time::Duration;

/// Settings of the edged module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgedOptions {
    /// `enable`.
    pub enabled: bool,
    /// `hostnameOverride`: the node name; sandboxes are labelled with it.
    pub node_name: String,
    /// `nodeIP`: reported as `hostIP` (and `podIP` of host-network pods).
    pub node_ip: String,
    /// `remoteRuntimeEndpoint`.
    pub runtime_endpoint: String,
    /// `runtimeRequestTimeout` (a duration here; the YAML field is in minutes).
    pub runtime_request_timeout: Duration,
    /// `podSandboxImage`: checked at start. containerd runs the sandbox image of its own
    /// configuration (`sandbox_image`), so keep the two equal.
    pub pod_sandbox_image: String,
    /// `registerNodeNamespace`: namespace of the initial pod-list query.
    pub register_node_namespace: String,
    /// Pod cgroup root with the cgroupfs driver (`/kubepods`); `None` leaves `cgroup_parent`
    /// empty (the runtime's default).
    pub cgroup_root: Option<String>,
    /// Directory of pod log directories.
    pub pod_log_root: String,
    /// How often each pod worker relists its containers (kubelet PLEG: 1 s).
    pub relist_period: Duration,
    /// First restart back-off (kubelet: 10 s).
    pub backoff_base: Duration,
    /// Longest restart back-off (kubelet: 300 s).
    pub backoff_max: Duration,
    /// How long a pod status waits for metaManager's answer.
    pub report_timeout: Duration,
    /// How long the start waits for metaManager to answer the pod-list query.
    pub initial_list_timeout: Duration,
    /// Root of edged's state: pod volumes live under `<root>/pods/<uid>/volumes` (v1.2:
    /// `/var/lib/edged`).
    pub root_directory: std::path::PathBuf,
    /// `registerNode`: register the node with the cloud before reporting its status.
    pub register_node: bool,
    /// `nodeStatusUpdateFrequency`: registration retry and node status period.
    pub node_status_update_frequency: Duration,
    /// Address of the read-only `/pods` + `/healthz` endpoint (`modules.edged.readOnlyAddress`;
    /// v1.2: fixed `127.0.0.1:10255`);
    /// `None` serves nothing.
    pub read_only_address: Option<String>,
    /// How often dead containers are collected (v1.2: 60 s).
    pub container_gc_period: Duration,
    /// Dead containers younger than this are kept (v1.2: 60 s).
    pub container_gc_min_age: Duration,
    /// `maximumDeadContainersPerPod`: dead containers kept per pod and container name;
    /// negative keeps all.
    pub max_dead_containers_per_pod: i32,
    /// How often image disk usage is checked (v1.2: 5 s).
    pub image_gc_period: Duration,
    /// `imageGCHighThreshold` (percent of the image filesystem); 100 turns image GC off.
    pub image_gc_high_threshold: u8,
    /// `imageGCLowThreshold` (percent): image GC frees down to this.
    pub image_gc_low_threshold: u8,
    /// Images seen for less than this are not collected (v1.2: 60 s).
    pub image_gc_min_age: Duration,
    /// How often running pods' configMap/secret/downwardAPI volumes are rewritten from their
    /// sources, besides right after a ConfigMap/Secret/pod update arrives (kubelet: its 1 min
    /// sync period). Extension: not a YAML key.
    pub volume_resync_period: Duration,
}

impl Default for EdgedOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            node_name: String::new(),
            node_ip: String::new(),
            runtime_endpoint: ke_cri::CONTAINERD_ENDPOINT.to_owned(),
            runtime_request_timeout: ke_cri::DEFAULT_REQUEST_TIMEOUT,
            pod_sandbox_image: String::new(),
            register_node_namespace: "default".to_owned(),
            cgroup_root: Some("/kubepods".to_owned()),
            pod_log_root: "/var/log/pods".to_owned(),
            relist_period: Duration::from_secs(2),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            report_timeout: Duration::from_secs(20),
            initial_list_timeout: Duration::from_secs(30),
            root_directory: "/var/lib/edged".into(),
            register_node: true,
            node_status_update_frequency: Duration::from_secs(10),
            read_only_address: Some("127.0.0.1:10255".to_owned()),
            container_gc_period: Duration::from_secs(60),
            container_gc_min_age: Duration::from_secs(60),
            max_dead_containers_per_pod: 1,
            image_gc_period: Duration::from_secs(5),
            image_gc_high_threshold: 80,
            image_gc_low_threshold: 40,
            image_gc_min_age: Duration::from_secs(60),
            volume_resync_period: Duration::from_secs(60),
        }
    }
}
