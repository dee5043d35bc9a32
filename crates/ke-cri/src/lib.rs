//! CRI v1 client: the container runtime (containerd) as edged sees it.
//!
//! Owns one gRPC channel (tonic over the runtime's unix socket) serving the CRI `RuntimeService`
//! and `ImageService`. No beehive messages: edged calls it. Start at [`CriClient`].
//!
//! * Every error names the CRI call it came from ([`Error::Call`], [`Error::Timeout`]), so a log
//!   line says e.g. `CRI RunPodSandbox failed (Unknown): …`.
//! * [`CriClient::ensure_image`] asks `ImageStatus` before `PullImage`: a pull of a locally
//!   imported tag still contacts its registry, which may be unreachable from an edge node.
//! * [`remove_pod_cgroup`] removes the pod-level cgroup runc leaves behind after
//!   `RemovePodSandbox`.
//! * The wire types are the generated CRI v1 bindings, re-exported as [`api`].
//!
//! Differences from v1.2: v1.2 spoke CRI `v1alpha2` (Kubernetes 1.17) through an embedded
//! dockershim by default; this speaks CRI `v1` to a remote runtime only (containerd ≥ 1.6,
//! CRI-O), and `ExecSync` is available (v1.2 never implemented exec probes).
#![warn(missing_docs)]

mod cgroup;
mod client;
mod error;

/// The CRI v1 protocol types (`runtime.v1`).
pub use k8s_cri::v1 as api;

pub use cgroup::remove_pod_cgroup;
pub use client::{CONTAINERD_ENDPOINT, CriClient, DEFAULT_REQUEST_TIMEOUT, socket_path};
pub use error::{Error, Result};
