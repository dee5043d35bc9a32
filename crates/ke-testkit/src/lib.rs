//! Dev-only helpers for black-box tests. Tests drive the real binaries (`cloudcore`, `edgecore`,
//! `keadm`) the way users and peers do; this crate starts them, cleans up after them (by PID) and
//! gives tests the pieces they need: free ports, certificates made by `keadm certgen`, fake peers
//! speaking the real link protocol, and [`eventually`] instead of fixed sleeps.
#![warn(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure here is a test failure

use std::future::Future;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod k8s;
pub mod netns;

use ke_core::Message;
use ke_transport::{EdgeHello, LinkLimits, LinkRx, LinkTx};

/// Path of a workspace binary built next to the running test (`target/<profile>/<name>`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A TCP port free on 127.0.0.1 right now, and never handed out before by this process.
pub fn free_tcp_port() -> u16 {
    unique_port(|| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// A UDP port free on 127.0.0.1 right now, and never handed out before by this process.
pub fn free_udp_port() -> u16 {
    unique_port(|| {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// The kernel may hand out a port it just gave back: a test asking for a cloudcore's and an
/// edgecore's metrics ports before either daemon binds got the same port twice (and the second
/// daemon could not listen). Ports already handed out are skipped.
fn unique_port(mut pick: impl FnMut() -> u16) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let p = pick();
        if !given.contains(&p) {
            given.push(p);
            return p;
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running daemon, stopped (SIGTERM, then SIGKILL) when dropped. Its stdout and stderr go to a
/// log file, printed by [`Daemon::dump`] (and on drop while panicking).
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `binary` with `args`, logging to `<log_dir>/<name>.log` (appended).
    pub fn start(name: &str, binary: &Path, args: &[&str], log_dir: &Path) -> Self {
        let mut c = Command::new(binary);
        c.args(args);
        Self::start_command(name, c, log_dir)
    }

    /// Starts a prepared `command` (e.g. [`netns::NetNs::command`]), logging to
    /// `<log_dir>/<name>.log` (appended); `RUST_LOG` defaults to `info`.
    pub fn start_command(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Prints the log to stderr (shown by the test harness on failure).
    pub fn dump(&self) {
        eprintln!(
            "----- {} log ({}) -----\n{}",
            self.name,
            self.log.display(),
            self.log()
        );
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status text.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "not running".into();
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = child.try_wait() {
                return st.to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().map(|s| s.to_string()).unwrap_or_default()
    }

    /// SIGKILL at once (crash simulation).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.stop();
    }
}

/// Certificates for a test cluster, made by the real `keadm certgen` under a temp dir:
/// `ca/rootCA.{crt,key}`, `certs/server.{crt,key}` for cloudcore, `certs/<node>.{crt,key}` per node.
#[derive(Debug)]
pub struct Pki {
    /// Root of the layout (`ca/` and `certs/` below it).
    pub dir: PathBuf,
}

impl Pki {
    /// Runs `keadm certgen` for the CA, a server cert for 127.0.0.1/localhost, and each node.
    pub fn generate(dir: &Path, nodes: &[&str]) -> Self {
        Self::generate_with_sans(dir, nodes, &[])
    }

    /// Like [`generate`](Self::generate), the server certificate also valid for `extra_sans`
    /// (e.g. a [`netns::NetNs::host_ip`] cloudcore listens on).
    pub fn generate_with_sans(dir: &Path, nodes: &[&str], extra_sans: &[&str]) -> Self {
        let keadm = bin("keadm");
        let run = |args: &[&str]| {
            let out = Command::new(&keadm).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "keadm {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let d = dir.to_str().unwrap();
        run(&["certgen", "ca", "--dir", d]);
        let mut server = vec![
            "certgen",
            "server",
            "--dir",
            d,
            "--name",
            "server",
            "--san",
            "127.0.0.1",
            "--san",
            "localhost",
        ];
        for san in extra_sans {
            server.extend(["--san", san]);
        }
        run(&server);
        for n in nodes {
            run(&["certgen", "node", n, "--dir", d]);
        }
        Self { dir: dir.to_owned() }
    }

    /// `ca/rootCA.crt`
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca/rootCA.crt")
    }

    /// `certs/<stem>.crt`
    pub fn cert(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("certs/{stem}.crt"))
    }

    /// `certs/<stem>.key`
    pub fn key(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("certs/{stem}.key"))
    }

    /// A client TLS config presenting `stem`'s certificate.
    pub fn client_tls(&self, stem: &str) -> Arc<rustls::ClientConfig> {
        ke_pki::tls::client_config(&self.ca(), &self.cert(stem), &self.key(stem)).unwrap()
    }
}

/// A fake edge speaking the real link protocol, for tests of cloudcore.
#[derive(Debug)]
pub struct FakeEdge {
    /// Sending half.
    pub tx: LinkTx,
    /// Receiving half.
    pub rx: LinkRx,
}

impl FakeEdge {
    /// Connects over WebSocket as `node` with `tls`.
    pub async fn ws(server: &str, node: &str, tls: Arc<rustls::ClientConfig>) -> ke_transport::Result<Self> {
        let hello = EdgeHello {
            node_id: node.into(),
            project_id: ke_core::names::res::DEFAULT_PROJECT_ID.into(),
        };
        let (tx, rx) = ke_transport::ws::connect(server, &hello, tls, &LinkLimits::default()).await?;
        Ok(Self { tx, rx })
    }

    /// Connects over QUIC as `node` with `tls`.
    pub async fn quic(
        server: &str,
        node: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> ke_transport::Result<Self> {
        let hello = EdgeHello {
            node_id: node.into(),
            project_id: ke_core::names::res::DEFAULT_PROJECT_ID.into(),
        };
        let (tx, rx) = ke_transport::quic::connect(
            server,
            &hello,
            &tls,
            &LinkLimits::default(),
            Duration::from_secs(5),
        )
        .await?;
        Ok(Self { tx, rx })
    }

    /// Next envelope within `timeout` (control frames skipped); `None` on timeout or close.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        tokio::time::timeout(timeout, self.rx.recv_message())
            .await
            .ok()?
            .ok()?
    }

    /// Sends an envelope.
    pub async fn send(&mut self, m: &Message) {
        self.tx.send(m).await.unwrap();
    }
}
