//! edged: the node agent that runs this node's pods on a CRI runtime (containerd).
//!
//! Owns the pods' sandboxes and containers (found again by their labels, so an edgecore restart
//! adopts the running containers instead of duplicating them). Start at [`Edged`] (the module),
//! then `worker.rs` (the per-pod state machine `step` and its interpreter) and `pod.rs` (pure
//! Pod → CRI translation and the status rules).
//!
//! Beehive: module `edged`, group `edged`.
//!
//! | consumes (from metaManager) | action |
//! |---|---|
//! | `insert`/`update` `<ns>/pod/<name>` (Pod JSON) | start or update the pod's worker; a `deletionTimestamp` kills the pod and reports `Succeeded` |
//! | `delete` `<ns>/pod/<name>` | kill the pod, forget it |
//! | `response` `<ns>/pod` (array of Pods) | add pods not known yet |
//! | `insert`/`update` `<ns>/configmap/<name>`, `<ns>/secret/<name>` | refresh the volumes of running pods that mount it (the content itself is queried again from metaManager) |
//!
//! | emits (group `meta`, source `edged`) | when |
//! |---|---|
//! | `query` `<registerNodeNamespace>/pod` (sync, to metaManager) | once at start: the stored pods are the pods to run |
//! | `query` `<podNs>/configmap/<name>`, `<podNs>/secret/<name>` (sync, to metaManager) | when a container with such a volume or env source starts; when a mounted one changes and every [`EdgedOptions::volume_resync_period`] for running pods' volumes; image pull secrets when its image must be pulled |
//! | `update` `<ns>/podstatus/<name>` `{UID, Name, Status}` (sync, to metaManager) | whenever a pod's computed status changes |
//! | `insert` `<registerNodeNamespace>/nodestatus/<node>` (sync, **to `websocket`**) | every `nodeStatusUpdateFrequency` until the cloud answers `"OK"`: a `v1.Node` with only `status` |
//! | `update` `<registerNodeNamespace>/nodestatus/<node>` `{UID, Status, ExtendResources}` (sync, to metaManager) | every `nodeStatusUpdateFrequency` once registered |
//!
//! Node status (`node.rs`): capacity from `/proc/cpuinfo` and `/proc/meminfo` (allocatable memory
//! 100Mi less, 110 pods), `InternalIP` + `Hostname` addresses, all ten `nodeInfo` fields, phase
//! `Running` and `Ready` (`EdgeReady` when the CRI runtime answers `Version`, else `EdgeNotReady`).
//!
//! Read-only endpoint (`http.rs`, [`EdgedOptions::read_only_address`], v1.2's
//! `127.0.0.1:10255`): `/pods` (a `v1.PodList` of the pods edged runs, with status) and
//! `/healthz`.
//!
//! Each pod has one worker: `step(state, event) -> (state, effects)` is pure; the task around it
//! runs the effects (CRI calls, status reports) and feeds their results back as events. It relists
//! the pod every [`EdgedOptions::relist_period`]; containers restart per `restartPolicy` with
//! exponential back-off ([`EdgedOptions::backoff_base`] doubling to [`EdgedOptions::backoff_max`]).
//! At start edged removes sandboxes labelled with its node name whose pod metaManager no longer
//! holds.
//!
//! Supported so far: sandbox + containers with command, args, working dir, environment
//! (`env.rs`: values, `valueFrom` configMap/secret keys — queried from metaManager like the
//! volumes — pod fields and resource fields, `envFrom` with prefix, `$(VAR)` expansion in env
//! values, `command` and `args` as the kubelet does it), ports
//! with `hostPort`, `hostNetwork`/`hostPID`/`hostIPC`, restart policies, spec-change restarts,
//! liveness/readiness/startup probes (`exec`, `httpGet` over HTTP, `tcpSocket`; `probe.rs`): a
//! failed liveness or startup probe stops the container and the restart policy takes over,
//! readiness (and a pending startup probe) gates the container's `ready` and the pod's `Ready`.
//! volumes (`volume.rs`): `configMap` and `secret` (queried from metaManager — `query`
//! `<ns>/configmap/<name>` / `<ns>/secret/<name>` — when a container starts, written under
//! `<rootDirectory>/pods/<uid>/volumes/` and bind-mounted read-only), `downwardAPI` (pod
//! name/namespace/uid/labels/annotations and container resources with divisor, written and
//! mounted the same way), `emptyDir`, `hostPath`; item `mode` and `defaultMode` are honoured; the
//! pod directory goes with the pod. configMap/secret/downwardAPI volumes of running pods are kept
//! current as the kubelet keeps them: rewritten when a ConfigMap/Secret they read is inserted or
//! updated, when the pod's update arrives (labels/annotations), and every
//! [`EdgedOptions::volume_resync_period`] (1 min) otherwise; written atomically (a new
//! `..<timestamp>` directory, the `..data` symlink swapped by one `rename`, each key a symlink
//! through `..data`), so a reader sees the old set or the new one, never a mix; removed keys
//! disappear. `subPath` mounts are not updated (as the kubelet's).
//! Resources (`resources.rs`): cpu/memory requests and limits become the container's CRI
//! `LinuxContainerResources` (cpu shares, CFS quota/period, memory limit, `oom_score_adj`), the
//! pod's `qosClass` is computed by the kubelet rules and picks its cgroup
//! (`/kubepods/pod<uid>`, `/kubepods/burstable/pod<uid>`, `/kubepods/besteffort/pod<uid>`). A
//! container killed over its memory limit is reported `OOMKilled` (containerd's reason).
//! GC (`gc.rs`): dead containers beyond [`EdgedOptions::max_dead_containers_per_pod`] per pod
//! and container name and older than [`EdgedOptions::container_gc_min_age`] are removed every
//! [`EdgedOptions::container_gc_period`]; images no container uses (never the sandbox image) are
//! removed when the image filesystem passes [`EdgedOptions::image_gc_high_threshold`] %, down to
//! [`EdgedOptions::image_gc_low_threshold`] %.
//! Not yet: other volume types (CSI, projected), service environment variables, device-plugin
//! and GPU resources.
//!
//! Differences from v1.2:
//! * CRI v1 to a remote runtime only; `runtimeType: docker` (dockershim) is refused by edgecore.
//! * Pod statuses are sent when they change, not on a 10 s timer.
//! * Pod cgroups and log directories are removed with the pod.
//! * Exec probes run their command through CRI `ExecSync` (v1.2's always passed); probes run
//!   on the relist tick, so their period is at least [`EdgedOptions::relist_period`].
//! * `httpGet` probes with `scheme: HTTPS` fail (not supported yet).
//! * Image GC measures the image filesystem the runtime names in `ImageFsInfo` (v1.2: edgecore's
//!   working directory), as used / (used + available) like `df`.
//! * Image pull secrets (`pull_secrets.rs`, `kubernetes.io/dockerconfigjson` / `dockercfg`) are
//!   read from the pod's namespace (v1.2: the node's registration namespace) and passed to CRI
//!   `PullImage` as `AuthConfig`, only when the image is not present yet.
//! * The read-only address is configurable (`modules.edged.readOnlyAddress`).
#![warn(missing_docs)]

mod env;
mod error;
mod gc;
mod http;
mod module;
mod node;
mod options;
mod pod;
mod probe;
mod pull_secrets;
mod resources;
mod volume;
mod worker;

pub use env::Error as EnvError;
pub use error::{Error, Result};
pub use module::Edged;
pub use node::{KUBELET_VERSION, NODE_STATUS_UID};
pub use options::EdgedOptions;
pub use pod::{
    LABEL_CONTAINER_HASH, LABEL_CONTAINER_NAME, LABEL_NODE, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
};
pub use volume::Error as VolumeError;
