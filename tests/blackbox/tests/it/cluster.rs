//! A cloudcore and edgecores on loopback, configured the way a user configures them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ke_testkit::netns::NetNs;
use ke_testkit::{Daemon, Pki, bin, eventually, free_tcp_port, free_udp_port};

pub(crate) struct Cloud {
    pub(crate) daemon: Daemon,
    pub(crate) ws: String,
    pub(crate) quic: String,
    pub(crate) sock: PathBuf,
    pub(crate) metrics: String,
    pub(crate) config: PathBuf,
}

pub(crate) struct Edge {
    /// Kept so the process lives as long as the handle (stopped on drop).
    #[allow(dead_code)]
    pub(crate) daemon: Daemon,
    pub(crate) metrics: String,
    /// The edge's SQLite database.
    pub(crate) db: PathBuf,
}

impl Edge {
    /// The `meta` row for `key` (read through a separate connection, as another process would).
    pub(crate) fn meta(&self, key: &str) -> Option<(String, String)> {
        let db = ke_store::rusqlite::Connection::open(&self.db).ok()?;
        db.query_row("SELECT type, value FROM meta WHERE key = ?1", [key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ok()
    }
}

impl Cloud {
    /// Starts cloudcore again on the same configuration (same ports, same queue store).
    pub(crate) fn restart(&mut self, dir: &Path) {
        self.daemon.stop();
        self.daemon = Daemon::start(
            "cloudcore",
            &bin("cloudcore"),
            &["--config", self.config.to_str().unwrap()],
            dir,
        );
    }
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pki: Pki,
}

impl Cluster {
    pub(crate) fn new(nodes: &[&str]) -> Self {
        Self::new_with_sans(nodes, &[])
    }

    /// Like [`new`](Self::new), cloudcore's certificate also valid for `sans`.
    pub(crate) fn new_with_sans(nodes: &[&str], sans: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate_with_sans(dir.path(), nodes, sans);
        Self { dir, pki }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn cloud_config(&self, extra_cloudhub: &str) -> Cloud {
        self.cloud_with(extra_cloudhub, None)
    }

    /// A cloudcore whose edgecontroller talks to the API server of `kubeconfig` (`None`: no
    /// Kubernetes, cloudhub alone).
    pub(crate) fn cloud_with(&self, extra_cloudhub: &str, kubeconfig: Option<&Path>) -> Cloud {
        self.cloud_on("127.0.0.1", extra_cloudhub, kubeconfig)
    }

    /// Like [`cloud_with`](Self::cloud_with), cloudhub listening on `addr` (e.g. a
    /// [`NetNs::host_ip`]); metrics and the unix socket stay local.
    pub(crate) fn cloud_on(&self, addr: &str, extra_cloudhub: &str, kubeconfig: Option<&Path>) -> Cloud {
        let kubeconfig = kubeconfig.map(|p| p.display().to_string()).unwrap_or_default();
        let (ws, quic, m) = (free_tcp_port(), free_udp_port(), free_tcp_port());
        let sock = self.path().join("cloudhub.sock");
        let cfg = format!(
            "apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: 127.0.0.1:{m}
kubeAPIConfig:
  kubeConfig: \"{kubeconfig}\"
modules:
  cloudhub:
    keepaliveInterval: 30
    nodeLimit: 10
    tlsCAFile: {ca}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    queueStore: {queue}
{extra_cloudhub}
    quic:
      enable: true
      address: {addr}
      port: {quic}
    unixsocket:
      enable: true
      address: unix://{sock}
    websocket:
      enable: true
      address: {addr}
      port: {ws}
",
            ca = self.pki.ca().display(),
            crt = self.pki.cert("server").display(),
            key = self.pki.key("server").display(),
            sock = sock.display(),
            queue = self.path().join("cloudhub-queue.db").display(),
        );
        let config = self.path().join("cloudcore.yaml");
        std::fs::write(&config, cfg).unwrap();
        let daemon = Daemon::start(
            "cloudcore",
            &bin("cloudcore"),
            &["--config", config.to_str().unwrap()],
            self.path(),
        );
        Cloud {
            daemon,
            ws: format!("{addr}:{ws}"),
            quic: format!("{addr}:{quic}"),
            sock,
            metrics: format!("127.0.0.1:{m}"),
            config,
        }
    }

    pub(crate) fn edge(&self, node: &str, cloud: &Cloud, quic: bool) -> Edge {
        self.edge_with(node, cloud, quic, "  eventbus:\n    enable: false\n")
    }

    /// Like [`edge`](Self::edge) with the given `eventbus:` section (indented under `modules:`).
    pub(crate) fn edge_with(&self, node: &str, cloud: &Cloud, quic: bool, eventbus: &str) -> Edge {
        self.edge_full(node, cloud, quic, eventbus, false)
    }

    /// Like [`edge_with`](Self::edge_with), with the device twin on or off.
    pub(crate) fn edge_full(
        &self,
        node: &str,
        cloud: &Cloud,
        quic: bool,
        eventbus: &str,
        twin: bool,
    ) -> Edge {
        self.edge_at(node, &cloud.ws, &cloud.quic, quic, eventbus, twin)
    }

    /// An edgecore dialling the given cloudhub addresses (a real cloudcore or a test-side hub).
    pub(crate) fn edge_at(
        &self,
        node: &str,
        ws: &str,
        quic_server: &str,
        quic: bool,
        eventbus: &str,
        twin: bool,
    ) -> Edge {
        let edged =
            format!("  edged:\n    enable: false\n    hostnameOverride: {node}\n    nodeIP: 127.0.0.1\n");
        self.edge_custom(node, ws, quic_server, quic, eventbus, twin, &edged)
    }

    /// An edgecore (edged, eventbus and twin off) inside `ns`, dialling `cloud` over WebSocket.
    pub(crate) fn edge_in(&self, ns: &NetNs, node: &str, cloud: &Cloud) -> Edge {
        self.edge_in_servers(ns, node, &cloud.ws)
    }

    /// Like [`edge_in`](Self::edge_in), dialling `servers` (`host:port`, comma-separated: the
    /// edge fails over between them).
    pub(crate) fn edge_in_servers(&self, ns: &NetNs, node: &str, servers: &str) -> Edge {
        let edged = format!(
            "  edged:\n    enable: false\n    hostnameOverride: {node}\n    nodeIP: {}\n",
            ns.ns_ip()
        );
        let eventbus = "  eventbus:\n    enable: false\n";
        self.edge_start(
            Some(ns),
            node,
            servers,
            "127.0.0.1:1",
            false,
            eventbus,
            false,
            &edged,
        )
    }

    /// The general form: `edged` is the whole `edged:` section (indented under `modules:`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn edge_custom(
        &self,
        node: &str,
        ws: &str,
        quic_server: &str,
        quic: bool,
        eventbus: &str,
        twin: bool,
        edged: &str,
    ) -> Edge {
        self.edge_start(None, node, ws, quic_server, quic, eventbus, twin, edged)
    }

    /// [`edge_custom`](Self::edge_custom), inside `netns` when given.
    #[allow(clippy::too_many_arguments)]
    fn edge_start(
        &self,
        netns: Option<&NetNs>,
        node: &str,
        ws: &str,
        quic_server: &str,
        quic: bool,
        eventbus: &str,
        twin: bool,
        edged: &str,
    ) -> Edge {
        let m = free_tcp_port();
        let db = self.path().join(format!("{node}.db"));
        let cfg = format!(
            "apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: 127.0.0.1:{m}
database:
  dataSource: {db}
modules:
{edged}  edgehub:
    heartbeat: 2
    tlsCaFile: {ca}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    websocket:
      enable: {ws_on}
      server: {ws}
    quic:
      enable: {quic}
      server: {q}
{eventbus}  devicetwin:
    enable: {twin}
  edgemesh:
    enable: false
",
            db = db.display(),
            ca = self.pki.ca().display(),
            crt = self.pki.cert(node).display(),
            key = self.pki.key(node).display(),
            ws_on = !quic,
            q = quic_server,
        );
        let config = self.path().join(format!("edgecore-{node}.yaml"));
        std::fs::write(&config, cfg).unwrap();
        let args = ["--config", config.to_str().unwrap()];
        let daemon = match netns {
            Some(ns) => ns.daemon(node, &bin("edgecore"), &args, self.path()),
            None => Daemon::start(node, &bin("edgecore"), &args, self.path()),
        };
        Edge {
            daemon,
            metrics: format!("127.0.0.1:{m}"),
            db,
        }
    }
}

/// Reads one sample from a daemon's /metrics (sums all label sets of the family).
pub(crate) async fn metric(addr: &str, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let vals: Vec<f64> = out
        .lines()
        .filter(|l| {
            // Counters are exposed with a `_total` suffix.
            let rest = l
                .strip_prefix(name)
                .map(|r| r.strip_prefix("_total").unwrap_or(r));
            rest.is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    if vals.is_empty() {
        None
    } else {
        Some(vals.iter().sum())
    }
}

/// One sample of a labelled series, e.g. `controller_api_requests_total{controller="x",verb="list"}`
/// (0 when the series is not there yet).
pub(crate) async fn metric_series(addr: &str, series: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub(crate) async fn wait_metric(addr: &str, name: &str, pred: impl Fn(f64) -> bool, what: &str) -> f64 {
    eventually(Duration::from_secs(30), what, || async {
        metric(addr, name).await.filter(|v| pred(*v))
    })
    .await
}
