//! The harness the bench tools (`edgebench`, `footprintbench`, `hubbench`) share: a PKI, a plain
//! `cloudcore.yaml` and an `edgecore.yaml` in a scratch directory, daemons started from the binaries next to the
//! bench and stopped (SIGTERM, then SIGKILL) when dropped, and the figures read from `/proc` and
//! from a daemon's `/metrics`.
//!
//! Bench tools only; it consumes and emits no KubeEdge messages.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file, a port or a process could not be had.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The certificates could not be made or written.
    #[error("certificates: {0}")]
    Pki(#[from] ke_pki::ca::Error),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A started daemon: on drop it gets SIGTERM, and SIGKILL if it has not exited within the grace
/// period.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    grace: Duration,
    reaped: bool,
}

impl Proc {
    /// Takes charge of `child` with a grace period of 5 s.
    pub fn new(child: Child) -> Self {
        Self::with_grace(child, Duration::from_secs(5))
    }

    /// Takes charge of `child`, waiting up to `grace` after SIGTERM.
    pub fn with_grace(child: Child, grace: Duration) -> Self {
        Self {
            child,
            grace,
            reaped: false,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now (a crash, as far as its peers can tell), and reaps it.
    pub fn kill_now(&mut self) -> Result<()> {
        self.child.kill().map_err(io("killing the daemon"))?;
        self.child.wait().map_err(io("reaping the daemon"))?;
        self.reaped = true;
        Ok(())
    }
}

/// Raises this process's soft open-file limit to its hard limit; returns the new soft limit.
/// (A bench holding thousands of sockets needs it; the daemons it starts inherit it.)
pub fn raise_open_file_limit() -> Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim)
        .map_err(|e| io("raising the open-file limit")(std::io::Error::from(e)))?;
    Ok(lim.current.unwrap_or(u64::MAX))
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped {
            return; // its pid may be another process's by now
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace binary `name` built next to the running bench.
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    Ok(std::env::current_exe()
        .map_err(io("locating the bench binary"))?
        .with_file_name(name))
}

/// Starts `bin --config <config>` with `RUST_LOG=warn`, stdout and stderr to `log`.
pub fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Proc> {
    let out = std::fs::File::create(log).map_err(io(format!("creating {}", log.display())))?;
    let stdout = out.try_clone().map_err(io("duplicating the log handle"))?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(out)
        .spawn()
        .map_err(io(format!("starting {}", bin.display())))?;
    Ok(Proc::new(child))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// VmRSS and RssAnon of `pid` in kB (0 when unreadable).
pub fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// The body of `GET <path>` on `addr` (HTTP/1.1, one request per connection), `None` on any failure.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

/// The value of the first sample whose line starts with `name` on `addr`'s `/metrics`.
pub async fn metric(addr: &str, name: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .await?
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// The `p` quantile (0..=1) of `sorted` (nearest rank); zero when empty.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Makes a CA named `ca_name` in `<dir>/ca` and a cloudcore server certificate for 127.0.0.1 in
/// `<dir>/certs/server.{crt,key}`; returns the CA to issue more.
pub fn write_cloud_pki(dir: &Path, ca_name: &str) -> Result<ke_pki::Ca> {
    let ca = ke_pki::Ca::create(ca_name)?;
    ca.write_new(&dir.join("ca"))?;
    ca.issue_server("cloudcore", &["127.0.0.1".into()])?
        .write(&dir.join("certs"), "server")?;
    Ok(ca)
}

/// CloudHub's unix socket in the configuration [`write_cloudcore_config`] writes.
pub fn hub_socket(dir: &Path) -> PathBuf {
    dir.join("hub.sock")
}

/// Writes `<dir>/cloudcore.yaml` for a cloudcore without controllers: metrics on
/// 127.0.0.1:`metrics_port`, CloudHub's WebSocket on 127.0.0.1:`ws_port`, its unix socket at
/// [`hub_socket`], certificates from [`write_cloud_pki`]. Returns the file's path.
pub fn write_cloudcore_config(dir: &Path, ws_port: u16, metrics_port: u16) -> Result<PathBuf> {
    let d = dir.display();
    let sock = hub_socket(dir);
    let text = format!(
        "apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: 127.0.0.1:{metrics_port}
kubeAPIConfig:
  kubeConfig: \"\"
modules:
  cloudhub:
    tlsCAFile: {d}/ca/rootCA.crt
    tlsCertFile: {d}/certs/server.crt
    tlsPrivateKeyFile: {d}/certs/server.key
    queueStore: {d}/queue.db
    unixsocket:
      address: unix://{sock}
    websocket:
      address: 127.0.0.1
      port: {ws_port}
  edgecontroller:
    enable: false
  devicecontroller:
    enable: false
  synccontroller:
    enable: false
",
        sock = sock.display()
    );
    let path = dir.join("cloudcore.yaml");
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Writes `<dir>/edgecore.yaml` for node `node` (certificate `<dir>/certs/<node>.{crt,key}`):
/// metrics on 127.0.0.1:`metrics_port`, EdgeHub to the WebSocket at 127.0.0.1:`ws_port`, the
/// internal MQTT broker on 127.0.0.1:`mqtt_port`, the database at `<dir>/edge.db`, edgemesh off.
/// `edged` is extra YAML under `modules.edged`, one key a line, indented four spaces. Returns the
/// file's path.
pub fn write_edgecore_config(
    dir: &Path,
    node: &str,
    ws_port: u16,
    metrics_port: u16,
    mqtt_port: u16,
    edged: &str,
) -> Result<PathBuf> {
    let d = dir.display();
    let text = format!(
        "apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: 127.0.0.1:{metrics_port}
database:
  dataSource: {d}/edge.db
modules:
  edged:
{edged}    hostnameOverride: {node}
    nodeIP: 127.0.0.1
  edgehub:
    tlsCaFile: {d}/ca/rootCA.crt
    tlsCertFile: {d}/certs/{node}.crt
    tlsPrivateKeyFile: {d}/certs/{node}.key
    websocket:
      server: 127.0.0.1:{ws_port}
  eventbus:
    mqttMode: 0
    mqttServerInternal: tcp://127.0.0.1:{mqtt_port}
  edgemesh:
    enable: false
"
    );
    let path = dir.join("edgecore.yaml");
    std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}
