//! Typed `cloudcore.yaml` / `edgecore.yaml` of KubeEdge v1.2 (`*.config.kubeedge.io/v1alpha1`):
//! built-in defaults, strict loading, validation, and the `--minconfig` / `--defaultconfig`
//! printers.
//!
//! Start reading at [`CloudCoreConfig`] and [`EdgeCoreConfig`]; binaries use [`ConfigFlags`]
//! (flatten it into their clap parser, then call [`ConfigFlags::resolve`]).
//!
//! # Loading
//! Effective configuration = built-in defaults, then the file decoded on top: absent keys keep
//! their defaults, explicit `false`/`0` override (v1.2 semantics). Key names are v1.2's exactly,
//! odd ones included (`tlsCAFile` in cloudhub vs `tlsCaFile` in edgehub,
//! `queryPersistentColumeClaimWorkers`, `cniCacheDirs`, `mqttQOS`). `apiVersion`/`kind` are not
//! checked. A missing file fails with v1.2's wording
//! (`config: Required value: config file <path> not exist. ...`).
//!
//! Differences from v1.2's decoder (Go's JSON rules), on purpose:
//! * an **unknown or mistyped key is an error** naming the file, the dotted key path and the
//!   line/column ([`ParseError`]); v1.2 silently ignored unknown keys;
//! * key matching is case-sensitive; as aliases we accept v1.3's camelCase module names
//!   (`cloudHub`, `edgeHub`, `eventBus`, ...) and the other spelling of `tlsCAFile`/`tlsCaFile`,
//!   which v1.2's case-insensitive matching also accepted;
//! * a YAML null (`master:`) in a string field reads as `""`; in a number/bool field it is an error;
//! * `cgroupDriver` and `lbStrategy` are enums, so a bad value is a parse error with position.
//!
//! # Validation
//! [`CloudCoreConfig::validate`] / [`EdgeCoreConfig::validate`] check v1.2's rules (listen
//! addresses are IPs, ports in range, unix socket address starts with `unix://`,
//! `nodeUpdateFrequency > 0`, `nodeIP` non-empty, exactly one of edgehub websocket/quic,
//! `mqttMode` 0..2, ...) plus a few of ours (positive periods and worker counts, `mqttQOS` 0..2,
//! GC thresholds as percentages, `clusterDNS` IPs, `hostnameOverride` a DNS-1123 name, edgehub
//! server `host:port`, `metricsAddress` `IP:port` or empty). Disabled modules are skipped, as in
//! v1.2. File existence (TLS files, kubeconfig) is the separate `validate_files` step.
//!
//! # Printing
//! `default_yaml()` / `min_yaml()` reproduce v1.2's `--defaultconfig` / `--minconfig`: three
//! comment lines, a blank line, block YAML with keys sorted, a trailing blank line.
//!
//! # v1.2's devicecontroller/synccontroller bug
//! In v1.2.1 both controllers carried the JSON key `devicecontroller`, so Go ignored both: the
//! sections were neither printed nor read. We **do** read and print them, v1.3-style under
//! v1.2's lower-case module keys: `modules.devicecontroller.{enable, buffer.{deviceEvent,
//! deviceModelEvent, updateDeviceStatus}, context.{sendModule, receiveModule, responseModule},
//! load.updateDeviceStatusWorkers}` and `modules.synccontroller.enable`.
//!
//! # Extensions (printed by `default_yaml`, never by `min_yaml`)
//! * cloudcore `modules.cloudhub.allowLegacyEdgeCert: false` — accept stock v1.2 edges that
//!   present the shared `CN=kubeedge.io` certificate;
//! * cloudcore `modules.cloudhub.maxPendingPerNode: 1024` — bound of the per-node acked-delivery
//!   queue;
//! * cloudcore `modules.cloudhub.queueStore: /var/lib/kubeedge/cloudhub-queue.db` — where the
//!   acked-delivery queues are kept across cloudcore restarts (empty: memory only);
//! * cloudcore `metricsAddress: 127.0.0.1:10350`, edgecore `metricsAddress: 127.0.0.1:10351` —
//!   Prometheus `/metrics` listen address; empty disables it;
//! * edgecore `modules.edged.readOnlyAddress: 127.0.0.1:10255` — edged's read-only `/pods` +
//!   `/healthz` endpoint (fixed in v1.2); empty disables it.
//!
//! # v1.3 certificate-bootstrap keys (printed by `default_yaml`, never by `min_yaml`)
//! * cloudcore `modules.cloudhub.https: {enable: false, address: 0.0.0.0, port: 10002}` — the
//!   HTTPS endpoint where edges fetch the CA (`GET /ca.crt`) and a node certificate with a token
//!   (`GET /edge.crt`); with `enable: true` the address/port are validated and
//!   `modules.cloudhub.tlsCAKeyFile` (default `/etc/kubeedge/ca/rootCA.key`) must exist;
//! * edgecore `modules.edgehub.token: ""` and `modules.edgehub.httpServer:
//!   https://127.0.0.1:10002` — with a token, missing `tls*` files are not a `validate_files`
//!   error (edgecore fetches them), and `httpServer` must be `https://host[:port]`
//!   ([`EdgeHub::http_server_addr`]).
//!
//! # Host-dependent defaults
//! edgecore's `hostnameOverride` (OS hostname, lower-cased; fallback `default-edge-node`) and
//! `nodeIP` (hostname's IPv4, else the default-route interface's, else `127.0.0.1`): see
//! [`HostInfo`]. Use [`EdgeCoreConfig::with_host`] for deterministic defaults.
//!
//! # Durations
//! Periods stay integer fields as in v1.2 (seconds; `runtimeRequestTimeout` is **minutes**);
//! helper methods such as [`EdgeHub::heartbeat`] or [`Edged::runtime_request_timeout`] return
//! [`std::time::Duration`].
#![warn(missing_docs)]

pub mod cli;
pub mod cloudcore;
pub mod edgecore;
pub mod error;
pub mod host;
mod validate;
mod yaml;

use std::time::Duration;

pub use cli::{ConfigFlags, DaemonConfig, Startup};
pub use cloudcore::*;
pub use edgecore::*;
pub use error::{Error, FieldError, ParseError, Result, ValidationErrors};
pub use host::HostInfo;

/// Integer seconds as a duration; negative values read as zero.
pub(crate) fn secs(v: i32) -> Duration {
    Duration::from_secs(u64::try_from(v).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
