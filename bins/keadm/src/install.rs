//! What `init` and `join` install and `reset` removes: the directory layout, the install record, and
//! how a daemon is run (systemd unit, background process with a PID file, or foreground).
//!
//! Every file and directory keadm creates is written to an install record
//! (`<state-dir>/keadm-<role>.json`) as it is created; `reset` removes exactly what the record lists,
//! so it never deletes something keadm did not create (a pre-existing `/etc/kubeedge`, say) and
//! leaves nothing of ours behind.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Where keadm puts things; every directory can be moved (tests and unprivileged trials do).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Layout {
    /// Configuration and certificates: `<dir>/config`, `<dir>/ca`, `<dir>/certs`.
    #[arg(long = "config-dir", default_value = "/etc/kubeedge")]
    pub(crate) config_dir: PathBuf,
    /// Databases, PID files and keadm's install records.
    #[arg(long = "state-dir", default_value = "/var/lib/kubeedge")]
    pub(crate) state_dir: PathBuf,
    /// Daemon logs (`cloudcore.log`, `edgecore.log`).
    #[arg(long = "log-dir", default_value = "/var/log/kubeedge")]
    pub(crate) log_dir: PathBuf,
}

impl Layout {
    pub(crate) fn ca_dir(&self) -> PathBuf {
        self.config_dir.join("ca")
    }
    pub(crate) fn certs_dir(&self) -> PathBuf {
        self.config_dir.join("certs")
    }
    pub(crate) fn config_file(&self, role: Role) -> PathBuf {
        self.config_dir
            .join("config")
            .join(format!("{}.yaml", role.daemon()))
    }
    pub(crate) fn pid_file(&self, role: Role) -> PathBuf {
        self.state_dir.join(format!("{}.pid", role.daemon()))
    }
    pub(crate) fn log_file(&self, role: Role) -> PathBuf {
        self.log_dir.join(format!("{}.log", role.daemon()))
    }
    pub(crate) fn record_file(&self, role: Role) -> PathBuf {
        self.state_dir.join(format!("keadm-{}.json", role.name()))
    }
}

/// Which side of KubeEdge an installation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Cloud,
    Edge,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::Edge => "edge",
        }
    }
    pub(crate) fn daemon(self) -> &'static str {
        match self {
            Self::Cloud => "cloudcore",
            Self::Edge => "edgecore",
        }
    }
}

/// How the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RunMode {
    /// A systemd unit where systemd runs, else `background`.
    Auto,
    /// `/etc/systemd/system/<daemon>.service`, enabled and started.
    Systemd,
    /// A detached process with a PID file and a log file.
    Background,
    /// In keadm's place: keadm execs the daemon (logs on stderr).
    Foreground,
}

impl RunMode {
    pub(crate) fn resolve(self) -> Self {
        match self {
            Self::Auto if systemd_running() => Self::Systemd,
            Self::Auto => Self::Background,
            m => m,
        }
    }
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// How and from where a daemon runs, and where its files go (flags shared by `init` and `join`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RunArgs {
    /// How the daemon runs.
    #[arg(long, value_enum, default_value_t = RunMode::Auto)]
    pub(crate) mode: RunMode,
    /// Shorthand for `--mode foreground`.
    #[arg(long)]
    pub(crate) foreground: bool,
    /// The daemon binary (default: next to keadm, else on PATH).
    #[arg(long)]
    pub(crate) binary: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) layout: Layout,
}

impl RunArgs {
    pub(crate) fn mode(&self) -> RunMode {
        if self.foreground {
            RunMode::Foreground
        } else {
            self.mode.resolve()
        }
    }
}

/// Polls `ready` every 200 ms for up to a minute while the recorded daemon runs; on failure, says
/// whether it exited or is still not ready, with the end of its log.
pub(crate) async fn wait_ready(
    rec: &Record,
    not_ready: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if !is_running(rec) {
            break;
        }
        if ready() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = if is_running(rec) {
        format!("runs but {not_ready} within 60 s")
    } else {
        "exited".to_owned()
    };
    bail!(
        "{} {state} (log {}):\n{}",
        rec.role.daemon(),
        rec.log_file.display(),
        log_tail(&rec.log_file, 20)
    )
}

/// Runs `fut` on a single-threaded runtime (keadm's commands are sequential).
pub(crate) fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(fut: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(fut)
}

/// The install record: everything `reset` must undo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) role: Role,
    /// Daemon binary.
    pub(crate) binary: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) mode: RunMode,
    pub(crate) pid_file: PathBuf,
    pub(crate) log_file: PathBuf,
    /// systemd unit file, when installed as one.
    #[serde(default)]
    pub(crate) unit: Option<PathBuf>,
    /// Edge: the node's name (its pods are removed from the runtime on reset).
    #[serde(default)]
    pub(crate) node: Option<String>,
    /// Edge: CRI endpoint.
    #[serde(default)]
    pub(crate) runtime_endpoint: Option<String>,
    /// Cloud: the local control plane script `init --local` brought up (reset takes it down).
    #[serde(default)]
    pub(crate) local_control_plane: Option<PathBuf>,
    /// Files keadm created, in creation order.
    pub(crate) files: Vec<PathBuf>,
    /// Directories keadm created, in creation order (removed in reverse, and only when empty:
    /// anything left in them is not ours).
    pub(crate) dirs: Vec<PathBuf>,
    #[serde(skip)]
    path: PathBuf,
}

impl Record {
    pub(crate) fn new(layout: &Layout, role: Role, binary: PathBuf, mode: RunMode) -> Self {
        Self {
            role,
            binary,
            config: layout.config_file(role),
            mode,
            pid_file: layout.pid_file(role),
            log_file: layout.log_file(role),
            unit: None,
            node: None,
            runtime_endpoint: None,
            local_control_plane: None,
            files: Vec::new(),
            dirs: Vec::new(),
            path: layout.record_file(role),
        }
    }

    /// The record left by an earlier `init`/`join`, if any.
    pub(crate) fn load(layout: &Layout, role: Role) -> anyhow::Result<Option<Self>> {
        let path = layout.record_file(role);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut r: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a keadm install record", path.display()))?;
        r.path = path;
        Ok(Some(r))
    }

    /// Creates `dir` and its missing parents, recording each one created.
    pub(crate) fn mkdir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d {
            if p.as_os_str().is_empty() || p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        for p in missing.into_iter().rev() {
            fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
            self.dirs.push(p);
        }
        self.save()
    }

    /// Notes a file keadm (or a tool it ran) created, so reset removes it.
    pub(crate) fn track(&mut self, file: &Path) -> anyhow::Result<()> {
        if !self.files.iter().any(|f| f == file) {
            self.files.push(file.to_path_buf());
        }
        self.save()
    }

    /// Notes a file a daemon will create, unless it exists already (then it is not ours).
    pub(crate) fn track_new(&mut self, file: &Path) -> anyhow::Result<()> {
        if file.exists() {
            return Ok(());
        }
        self.track(file)
    }

    /// Notes a SQLite database a daemon will create, with its `-wal`, `-shm` and `-journal`
    /// companions (each unless it exists already).
    pub(crate) fn track_new_sqlite(&mut self, db: &Path) -> anyhow::Result<()> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut f = db.as_os_str().to_owned();
            f.push(suffix);
            self.track_new(Path::new(&f))?;
        }
        Ok(())
    }

    /// Writes `contents` to `file` (mode `mode`), creating and recording its directories.
    pub(crate) fn write(&mut self, file: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = file.parent() {
            self.mkdir(parent)?;
        }
        let tmp = file.with_extension("keadm-tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
        self.track(file)
    }

    pub(crate) fn save(&self) -> anyhow::Result<()> {
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = serde_json::to_vec_pretty(self)?;
        fs::write(&self.path, text).with_context(|| format!("writing {}", self.path.display()))
    }

    /// Removes everything recorded (the daemon must be stopped first). Returns what was removed.
    pub(crate) fn remove_files(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for f in self.files.iter().rev() {
            if fs::remove_file(f).is_ok() {
                removed.push(f.display().to_string());
            }
        }
        if fs::remove_file(&self.path).is_ok() {
            removed.push(self.path.display().to_string());
        }
        for d in self.dirs.iter().rev() {
            // Only if empty: anything left there is not ours.
            if fs::remove_dir(d).is_ok() {
                removed.push(format!("{}/", d.display()));
            }
        }
        removed
    }
}

/// Undoes a first `init`/`join` that fails half-way: on drop, unless disarmed, every file and
/// directory the (new) install record lists is removed again, so a failed run leaves no trace. A
/// run over an earlier installation is not rolled back (its CA, say, is still in use).
pub(crate) struct Rollback {
    layout: Layout,
    role: Role,
    armed: bool,
}

impl Rollback {
    /// Armed only if no install record exists yet.
    pub(crate) fn new(layout: &Layout, role: Role) -> Self {
        Self {
            layout: layout.clone(),
            role,
            armed: !layout.record_file(role).exists(),
        }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(Some(rec)) = Record::load(&self.layout, self.role)
            && !is_running(&rec)
        {
            let removed = rec.remove_files();
            if !removed.is_empty() {
                eprintln!("keadm: rolled back what this run created: {}", removed.join(", "));
            }
        }
    }
}

/// The daemon binary: `--binary`, else next to keadm, else on `PATH`.
pub(crate) fn find_binary(explicit: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(fs::canonicalize(p)?);
        }
        bail!("{} does not exist", p.display());
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("cannot find the {name} binary next to keadm or on PATH (pass --binary)")
}

/// A PID whose process runs `binary` (by `/proc/<pid>/exe`), or `None`.
fn live_pid(pid: u32, binary: &Path) -> bool {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok();
    let want = fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
    exe.is_some_and(|e| e == want)
}

/// The PID recorded in `pid_file`, if that process still runs `binary`.
pub(crate) fn running_pid(pid_file: &Path, binary: &Path) -> Option<u32> {
    let pid = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    live_pid(pid, binary).then_some(pid)
}

/// Processes running `binary` with `config` on their command line (ours, however started).
pub(crate) fn pids_running(binary: &Path, config: &Path) -> Vec<u32> {
    let want_cfg = config.as_os_str().as_encoded_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| live_pid(pid, binary))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == want_cfg))
        })
        .collect()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, wait up to `grace`, then SIGKILL. True if the process is gone.
pub(crate) fn stop_pid(pid: u32, binary: &Path, grace: Duration) -> bool {
    if !live_pid(pid, binary) {
        return true;
    }
    signal(pid, "-TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !live_pid(pid, binary) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(pid, "-KILL");
    for _ in 0..50 {
        if !live_pid(pid, binary) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Fails with a clear message if something else listens on `addr`.
pub(crate) fn check_port_free(addr: &str, what: &str) -> anyhow::Result<()> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("{what}: bad address {addr}"))?
        .collect();
    for a in resolved {
        if let Err(e) = TcpListener::bind(a) {
            bail!(
                "{what}: port {} on {} is in use ({e}); stop what holds it (`ss -ltnp 'sport = :{}'`) or pick another port",
                a.port(),
                a.ip(),
                a.port()
            );
        }
    }
    Ok(())
}

/// `GET <path>` over plain HTTP/1.0; the body, if the status is 200.
pub(crate) fn http_get(addr: &str, path: &str, timeout: Duration) -> Option<String> {
    let sa = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// How the started daemon is doing.
pub(crate) struct Started {
    pub(crate) pid: Option<u32>,
}

/// Starts the daemon as the record says (writing a systemd unit if that is the mode). Foreground
/// mode does not return on success.
pub(crate) fn start(rec: &mut Record) -> anyhow::Result<Started> {
    let daemon = rec.role.daemon();
    match rec.mode {
        RunMode::Foreground => {
            use std::os::unix::process::CommandExt;
            let err = Command::new(&rec.binary).arg("--config").arg(&rec.config).exec();
            bail!("cannot run {}: {err}", rec.binary.display())
        }
        RunMode::Systemd => {
            let unit = PathBuf::from(format!("/etc/systemd/system/{daemon}.service"));
            let text = format!(
                "# Written by keadm; `keadm reset` removes it.\n[Unit]\nDescription=KubeEdge-rs {daemon}\n\
                 After=network-online.target\n\n[Service]\nExecStart={} --config {}\nRestart=always\n\
                 RestartSec=5\nKillMode=process\n\n[Install]\nWantedBy=multi-user.target\n",
                rec.binary.display(),
                rec.config.display()
            );
            rec.write(&unit, text.as_bytes(), 0o644)?;
            rec.unit = Some(unit);
            rec.save()?;
            run(Command::new("systemctl").arg("daemon-reload"))?;
            run(Command::new("systemctl").args(["enable", "--now", daemon]))?;
            Ok(Started { pid: None })
        }
        RunMode::Background | RunMode::Auto => {
            if let Some(parent) = rec.log_file.parent().map(Path::to_path_buf) {
                rec.mkdir(&parent)?;
            }
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&rec.log_file)
                .with_context(|| format!("opening {}", rec.log_file.display()))?;
            let log2 = log.try_clone()?;
            let log_file = rec.log_file.clone();
            rec.track(&log_file)?;
            // setsid: the daemon outlives this shell and its terminal.
            let child = Command::new("setsid")
                .arg(&rec.binary)
                .arg("--config")
                .arg(&rec.config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .with_context(|| format!("starting {}", rec.binary.display()))?;
            // setsid(1) execs in place when it can (keadm is not a group leader), so the child's
            // PID is the daemon's. Wait until the exec happened, so the PID file is checkable.
            let pid = child.id();
            for _ in 0..50 {
                if live_pid(pid, &rec.binary) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let pid_file = rec.pid_file.clone();
            rec.write(&pid_file, format!("{pid}\n").as_bytes(), 0o644)?;
            Ok(Started { pid: Some(pid) })
        }
    }
}

/// Whether the recorded daemon runs.
pub(crate) fn is_running(rec: &Record) -> bool {
    if rec.mode == RunMode::Systemd {
        return Command::new("systemctl")
            .args(["is-active", "--quiet", rec.role.daemon()])
            .status()
            .is_ok_and(|s| s.success());
    }
    running_pid(&rec.pid_file, &rec.binary).is_some() || !pids_running(&rec.binary, &rec.config).is_empty()
}

/// Stops the recorded daemon (unit disabled and removed). Returns a line saying what was done.
pub(crate) fn stop(rec: &Record) -> anyhow::Result<Option<String>> {
    let daemon = rec.role.daemon();
    let mut stopped = Vec::new();
    if let Some(unit) = &rec.unit {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", daemon])
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_file(unit);
        let _ = Command::new("systemctl").arg("daemon-reload").status();
        stopped.push(format!("unit {daemon}.service"));
    }
    let mut pids = pids_running(&rec.binary, &rec.config);
    if let Some(p) = running_pid(&rec.pid_file, &rec.binary)
        && !pids.contains(&p)
    {
        pids.push(p);
    }
    for pid in pids {
        if !stop_pid(pid, &rec.binary, Duration::from_secs(15)) {
            bail!("{daemon} (pid {pid}) did not stop");
        }
        stopped.push(format!("pid {pid}"));
    }
    Ok((!stopped.is_empty()).then(|| format!("stopped {daemon} ({})", stopped.join(", "))))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

/// Progress lines: `[n/N] what`.
pub(crate) struct Progress {
    step: usize,
    total: usize,
    t0: Instant,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            step: 0,
            total,
            t0: Instant::now(),
        }
    }
    pub(crate) fn step(&mut self, what: &str) {
        self.step += 1;
        println!(
            "[{}/{}] {what} ({:.1}s)",
            self.step,
            self.total,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
