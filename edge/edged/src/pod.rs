//! Pure translation between Kubernetes pods and CRI: sandbox and container configs, labels,
//! spec hashes, and the pod status computed from what the runtime shows.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use ke_cri::api;

/// Label: pod name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label: pod namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label: pod UID — how edged finds a pod's sandboxes and containers again after a restart.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label: container name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Label: the node (edged instance) that owns the sandbox; orphans are collected per node only.
pub const LABEL_NODE: &str = "kubeedge.io/node";
/// Label: hash of the container spec the container was created from.
pub const LABEL_CONTAINER_HASH: &str = "kubeedge.io/container-hash";

/// Identity of a pod as the worker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodId {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

impl PodId {
    pub(crate) fn of(pod: &k8s::Pod) -> Self {
        Self {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Where pod-level settings come from.
#[derive(Debug, Clone)]
pub(crate) struct NodeContext {
    pub(crate) node_name: String,
    pub(crate) node_ip: String,
    /// `Some("/kubepods")` with the cgroupfs driver: pods get `/kubepods/<qos>/pod<uid>`.
    pub(crate) cgroup_root: Option<String>,
    pub(crate) log_root: String,
}

pub(crate) fn host_network(pod: &k8s::Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

pub(crate) fn containers(pod: &k8s::Pod) -> &[k8s::Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

pub(crate) fn restart_policy(pod: &k8s::Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Seconds a container gets between SIGTERM and SIGKILL.
pub(crate) fn grace_seconds(pod: &k8s::Pod) -> u64 {
    let g = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    u64::try_from(g).unwrap_or(0)
}

/// True once the pod carries a `deletionTimestamp` (the cloud's graceful delete).
pub(crate) fn is_deleting(pod: &k8s::Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn qos_class(pod: &k8s::Pod) -> &'static str {
    crate::resources::qos_class(pod).as_str()
}

/// The pod cgroup (kubelet layout): `<root>/pod<uid>` for `Guaranteed` pods,
/// `<root>/<burstable|besteffort>/pod<uid>` for the others.
pub(crate) fn cgroup_parent(ctx: &NodeContext, pod: &k8s::Pod, uid: &str) -> Option<String> {
    let root = ctx.cgroup_root.as_deref()?.trim_end_matches('/');
    Some(match crate::resources::qos_class(pod) {
        crate::resources::Qos::Guaranteed => format!("{root}/pod{uid}"),
        q => format!("{root}/{}/pod{uid}", q.as_str().to_ascii_lowercase()),
    })
}

pub(crate) fn log_directory(ctx: &NodeContext, id: &PodId) -> String {
    format!(
        "{}/{}_{}_{}",
        ctx.log_root.trim_end_matches('/'),
        id.namespace,
        id.name,
        id.uid
    )
}

fn pod_labels(ctx: &NodeContext, id: &PodId) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_POD_NAME.to_owned(), id.name.clone()),
        (LABEL_POD_NAMESPACE.to_owned(), id.namespace.clone()),
        (LABEL_POD_UID.to_owned(), id.uid.clone()),
        (LABEL_NODE.to_owned(), ctx.node_name.clone()),
    ])
}

fn namespace_options(pod: &k8s::Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let node_if = |on: bool, otherwise: api::NamespaceMode| {
        if on {
            api::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    api::NamespaceOption {
        network: node_if(host_network(pod), api::NamespaceMode::Pod),
        pid: node_if(
            spec.and_then(|s| s.host_pid).unwrap_or(false),
            api::NamespaceMode::Container,
        ),
        ipc: node_if(
            spec.and_then(|s| s.host_ipc).unwrap_or(false),
            api::NamespaceMode::Pod,
        ),
        ..Default::default()
    }
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => api::Protocol::Udp as i32,
        Some("SCTP") => api::Protocol::Sctp as i32,
        _ => api::Protocol::Tcp as i32,
    }
}

/// The `RunPodSandbox` config of `pod` (attempt = how many sandboxes it had before).
pub(crate) fn sandbox_config(ctx: &NodeContext, pod: &k8s::Pod, attempt: u32) -> api::PodSandboxConfig {
    let id = PodId::of(pod);
    let hostnet = host_network(pod);
    let hostname = if hostnet {
        String::new()
    } else {
        pod.spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| id.name.clone())
    };
    let port_mappings = containers(pod)
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| api::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: id.name.clone(),
            uid: id.uid.clone(),
            namespace: id.namespace.clone(),
            attempt,
        }),
        hostname,
        log_directory: log_directory(ctx, &id),
        port_mappings,
        labels: pod_labels(ctx, &id),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(ctx, pod, &id.uid).unwrap_or_default(),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// FNV-1a of the container spec's JSON: stable across edgecore builds and restarts, so a
/// restarted edged recognises containers created from the same spec.
pub(crate) fn container_hash(c: &k8s::Container) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The `CreateContainer` config of container `c` of `pod`.
pub(crate) fn container_config(
    ctx: &NodeContext,
    pod: &k8s::Pod,
    c: &k8s::Container,
    attempt: u32,
) -> api::ContainerConfig {
    let id = PodId::of(pod);
    let mut labels = pod_labels(ctx, &id);
    labels.insert(LABEL_CONTAINER_NAME.to_owned(), c.name.clone());
    labels.insert(LABEL_CONTAINER_HASH.to_owned(), container_hash(c));
    // Literal values only; `worker` resolves `valueFrom` and `envFrom` (`env.rs`) before creating.
    let envs = c
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| api::KeyValue {
            key: e.name.clone(),
            value: e.value.clone().unwrap_or_default(),
        })
        .collect();
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs,
        labels,
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged: c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false),
                ..Default::default()
            }),
            resources: Some(crate::resources::linux_resources(
                c,
                crate::resources::qos_class(pod),
            )),
        }),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// What the runtime shows, and the status computed from it.

/// One sandbox of the pod as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SandboxObs {
    pub(crate) id: String,
    pub(crate) ready: bool,
    pub(crate) attempt: u32,
    pub(crate) ip: String,
    /// Nanoseconds since the epoch.
    pub(crate) created_at: i64,
}

/// Coarse container state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container of the pod as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerObs {
    pub(crate) id: String,
    pub(crate) sandbox_id: String,
    pub(crate) name: String,
    pub(crate) attempt: u32,
    pub(crate) hash: String,
    pub(crate) state: CState,
    pub(crate) exit_code: i32,
    pub(crate) reason: String,
    pub(crate) message: String,
    /// Nanoseconds since the epoch; 0 = never.
    pub(crate) started_at: i64,
    pub(crate) finished_at: i64,
    pub(crate) image: String,
    pub(crate) image_ref: String,
}

impl ContainerObs {
    pub(crate) fn from_status(c: &api::ContainerStatus, sandbox_id: &str) -> Self {
        let state = match api::ContainerState::try_from(c.state) {
            Ok(api::ContainerState::ContainerCreated) => CState::Created,
            Ok(api::ContainerState::ContainerRunning) => CState::Running,
            Ok(api::ContainerState::ContainerExited) => CState::Exited,
            _ => CState::Unknown,
        };
        let meta = c.metadata.clone().unwrap_or_default();
        Self {
            id: c.id.clone(),
            sandbox_id: sandbox_id.to_owned(),
            name: meta.name,
            attempt: meta.attempt,
            hash: c.labels.get(LABEL_CONTAINER_HASH).cloned().unwrap_or_default(),
            state,
            exit_code: c.exit_code,
            reason: c.reason.clone(),
            message: c.message.clone(),
            started_at: c.started_at,
            finished_at: c.finished_at,
            image: c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
            image_ref: c.image_ref.clone(),
        }
    }
}

/// Everything the runtime holds for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observation {
    /// The newest ready sandbox.
    pub(crate) sandbox: Option<SandboxObs>,
    /// Every other sandbox of the pod (dead or superseded): to be removed.
    pub(crate) stale: Vec<SandboxObs>,
    /// Containers of the current sandbox, newest attempt first per name.
    pub(crate) containers: Vec<ContainerObs>,
}

impl Observation {
    /// The newest container named `name`, and the one before it.
    pub(crate) fn latest(&self, name: &str) -> (Option<&ContainerObs>, Option<&ContainerObs>) {
        let mut v: Vec<&ContainerObs> = self.containers.iter().filter(|c| c.name == name).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.attempt));
        (v.first().copied(), v.get(1).copied())
    }
}

pub(crate) fn time_of(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    // Whole seconds, as Kubernetes serialises them.
    Timestamp::from_second(nanos / 1_000_000_000).ok().map(Time)
}

fn terminated(c: &ContainerObs) -> k8s::ContainerState {
    let reason = if c.reason.is_empty() {
        if c.exit_code == 0 { "Completed" } else { "Error" }.to_owned()
    } else {
        c.reason.clone()
    };
    k8s::ContainerState {
        terminated: Some(k8s::ContainerStateTerminated {
            container_id: Some(format!("containerd://{}", c.id)),
            exit_code: c.exit_code,
            finished_at: time_of(c.finished_at),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            reason: Some(reason),
            started_at: time_of(c.started_at),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> k8s::ContainerState {
    k8s::ContainerState {
        waiting: Some(k8s::ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..Default::default()
    }
}

/// Inputs of [`pod_status`] beyond the observation.
#[derive(Debug, Clone, Default)]
pub(crate) struct StatusInputs<'a> {
    /// Containers held back by restart back-off (name → message).
    pub(crate) backing_off: BTreeMap<&'a str, String>,
    /// Containers whose probes say not ready (name → whether the startup probe passed).
    pub(crate) unready: BTreeMap<String, bool>,
    /// Why the pod cannot start (sandbox or image failure), if it cannot.
    pub(crate) error: Option<String>,
    pub(crate) start_time: Option<Time>,
    /// The pod was killed for deletion: report `Succeeded` with `Completed` containers (v1.2).
    pub(crate) killed: bool,
}

fn condition(type_: &str, ok: bool, reason: Option<&str>) -> k8s::PodCondition {
    k8s::PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.filter(|_| !ok).map(str::to_owned),
        ..Default::default()
    }
}

/// The pod's status from the runtime's view (kubelet phase rules). Condition transition times
/// are left empty; the worker carries them over from the previous report.
pub(crate) fn pod_status(
    ctx: &NodeContext,
    pod: &k8s::Pod,
    obs: &Observation,
    inp: &StatusInputs<'_>,
) -> k8s::PodStatus {
    let policy = restart_policy(pod);
    let mut statuses = Vec::new();
    let (mut running, mut succeeded, mut failed, mut waiting_n) = (0, 0, 0, 0);
    for spec in containers(pod) {
        let (cur, prev) = obs.latest(&spec.name);
        let image = spec.image.clone().unwrap_or_default();
        let mut st = k8s::ContainerStatus {
            name: spec.name.clone(),
            image: image.clone(),
            ..Default::default()
        };
        if inp.killed {
            st.state = Some(k8s::ContainerState {
                terminated: Some(k8s::ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            statuses.push(st);
            succeeded += 1;
            continue;
        }
        match cur {
            None => {
                waiting_n += 1;
                let reason = if inp.error.is_some() {
                    "CreateContainerError"
                } else {
                    "ContainerCreating"
                };
                st.state = Some(waiting(reason, inp.error.clone()));
            }
            Some(c) => {
                st.container_id = Some(format!("containerd://{}", c.id));
                st.image_id = c.image_ref.clone();
                st.restart_count = i32::try_from(c.attempt).unwrap_or(i32::MAX);
                if let Some(p) = prev.filter(|p| p.state == CState::Exited) {
                    st.last_state = Some(terminated(p));
                }
                match c.state {
                    CState::Running => {
                        running += 1;
                        let started = inp.unready.get(&spec.name).copied();
                        st.ready = started.is_none();
                        st.started = Some(started.unwrap_or(true));
                        st.state = Some(k8s::ContainerState {
                            running: Some(k8s::ContainerStateRunning {
                                started_at: time_of(c.started_at),
                            }),
                            ..Default::default()
                        });
                    }
                    CState::Exited => {
                        st.started = Some(false);
                        let will_restart = match policy {
                            "Never" => false,
                            "OnFailure" => c.exit_code != 0,
                            _ => true,
                        };
                        if let Some(msg) = inp.backing_off.get(spec.name.as_str()) {
                            running += 1; // has run and will run again: the pod stays Running
                            st.last_state = Some(terminated(c));
                            st.state = Some(waiting("CrashLoopBackOff", Some(msg.clone())));
                        } else {
                            if will_restart {
                                running += 1; // about to be restarted: the pod stays Running
                            } else if c.exit_code == 0 {
                                succeeded += 1;
                            } else {
                                failed += 1;
                            }
                            st.state = Some(terminated(c));
                        }
                    }
                    CState::Created | CState::Unknown => {
                        waiting_n += 1;
                        st.state = Some(waiting("ContainerCreating", None));
                    }
                }
            }
        }
        st.image = if image.is_empty() {
            cur.map(|c| c.image.clone()).unwrap_or_default()
        } else {
            image
        };
        statuses.push(st);
    }
    let total = statuses.len();
    let phase = if inp.killed {
        "Succeeded"
    } else if total == 0 || waiting_n > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if failed > 0 {
        "Failed"
    } else if succeeded == total {
        "Succeeded"
    } else {
        "Running"
    };
    let ready = total > 0 && statuses.iter().all(|s| s.ready) && !inp.killed;
    let ip = if host_network(pod) {
        Some(ctx.node_ip.clone())
    } else {
        obs.sandbox
            .as_ref()
            .map(|s| s.ip.clone())
            .filter(|ip| !ip.is_empty())
    };
    k8s::PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(vec![
            condition("Initialized", true, None),
            condition("Ready", ready, Some("ContainersNotReady")),
            condition("ContainersReady", ready, Some("ContainersNotReady")),
            condition("PodScheduled", true, None),
        ]),
        host_ip: Some(ctx.node_ip.clone()),
        pod_ip: ip.clone(),
        pod_ips: ip.map(|ip| vec![k8s::PodIP { ip }]),
        start_time: inp.start_time.clone(),
        container_statuses: Some(statuses),
        qos_class: Some(qos_class(pod).to_owned()),
        message: inp.error.clone(),
        ..Default::default()
    }
}

/// `prev`'s condition transition times carried into `next` where the status value is unchanged;
/// `now` where it changed.
pub(crate) fn carry_transition_times(prev: Option<&k8s::PodStatus>, next: &mut k8s::PodStatus, now: &Time) {
    let prev_conds = prev.and_then(|p| p.conditions.as_ref());
    for c in next.conditions.iter_mut().flatten() {
        let old = prev_conds.and_then(|v| v.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match old {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ctx() -> NodeContext {
        NodeContext {
            node_name: "edge-1".into(),
            node_ip: "192.0.2.10".into(),
            cgroup_root: Some("/kubepods".into()),
            log_root: "/var/log/pods".into(),
        }
    }

    pub(crate) fn pod(json: serde_json::Value) -> k8s::Pod {
        serde_json::from_value(json).unwrap()
    }

    fn web() -> k8s::Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox", "command": ["sh"], "args": ["-c", "x"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]
            }]}
        }))
    }

    #[test]
    fn sandbox_config_from_pod() {
        let s = sandbox_config(&ctx(), &web(), 2);
        let m = s.metadata.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt),
            ("web", "ns", "u-1", 2)
        );
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "/var/log/pods/ns_web_u-1");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(
            (s.port_mappings[0].container_port, s.port_mappings[0].host_port),
            (80, 8080)
        );
        assert_eq!(s.labels[LABEL_POD_UID], "u-1");
        assert_eq!(s.labels[LABEL_NODE], "edge-1");
        let l = s.linux.unwrap();
        assert_eq!(l.cgroup_parent, "/kubepods/besteffort/podu-1");
        let ns = l.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
    }

    #[test]
    fn host_network_pod() {
        let mut p = web();
        p.spec.as_mut().unwrap().host_network = Some(true);
        let s = sandbox_config(&ctx(), &p, 0);
        assert_eq!(s.hostname, "");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
        let st = pod_status(&ctx(), &p, &Observation::default(), &StatusInputs::default());
        assert_eq!(st.pod_ip.as_deref(), Some("192.0.2.10"));
    }

    #[test]
    fn container_config_from_spec() {
        let p = web();
        let c = &containers(&p)[0];
        let cc = container_config(&ctx(), &p, c, 3);
        assert_eq!(cc.command, ["sh"]);
        assert_eq!(cc.args, ["-c", "x"]);
        assert_eq!(cc.envs.len(), 1, "valueFrom is left out");
        assert_eq!((cc.envs[0].key.as_str(), cc.envs[0].value.as_str()), ("A", "1"));
        assert_eq!(cc.log_path, "c/3.log");
        assert_eq!(cc.labels[LABEL_CONTAINER_NAME], "c");
        assert_eq!(cc.labels[LABEL_CONTAINER_HASH], container_hash(c));
        let mut c2 = c.clone();
        c2.args = Some(vec!["-c".into(), "y".into()]);
        assert_ne!(container_hash(c), container_hash(&c2));
    }

    fn obs_c(state: CState, exit: i32, attempt: u32) -> ContainerObs {
        ContainerObs {
            id: format!("id{attempt}"),
            sandbox_id: "sb".into(),
            name: "c".into(),
            attempt,
            hash: String::new(),
            state,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            started_at: 1_700_000_000_000_000_000,
            finished_at: 0,
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
        }
    }

    fn with(policy: &str, cs: Vec<ContainerObs>) -> k8s::PodStatus {
        let mut p = web();
        p.spec.as_mut().unwrap().restart_policy = Some(policy.into());
        let obs = Observation {
            sandbox: Some(SandboxObs {
                id: "sb".into(),
                ready: true,
                attempt: 0,
                ip: "10.88.0.5".into(),
                created_at: 0,
            }),
            stale: vec![],
            containers: cs,
        };
        pod_status(&ctx(), &p, &obs, &StatusInputs::default())
    }

    #[test]
    fn phases() {
        assert_eq!(with("Always", vec![]).phase.as_deref(), Some("Pending"));
        let r = with("Always", vec![obs_c(CState::Running, 0, 0)]);
        assert_eq!(r.phase.as_deref(), Some("Running"));
        assert_eq!(r.pod_ip.as_deref(), Some("10.88.0.5"));
        let conds = r.conditions.unwrap();
        assert!(conds.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert_eq!(
            with("Never", vec![obs_c(CState::Exited, 0, 0)]).phase.as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            with("Never", vec![obs_c(CState::Exited, 3, 0)]).phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(
            with("OnFailure", vec![obs_c(CState::Exited, 0, 0)])
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            with("OnFailure", vec![obs_c(CState::Exited, 1, 0)])
                .phase
                .as_deref(),
            Some("Running")
        );
        let s = with(
            "Always",
            vec![obs_c(CState::Running, 0, 2), obs_c(CState::Exited, 1, 1)],
        );
        let cs = &s.container_statuses.unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(cs.container_id.as_deref(), Some("containerd://id2"));
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }
}
