//! The local Kubernetes control plane (`hack/local-k8s.sh`) for black-box tests.
//!
//! [`LocalK8s::shared`] brings one cluster up for every test that asks, across test processes
//! (cargo-nextest runs each test in its own process): a state dir of its own
//! (`$KE_STATE_DIR/test-shared`, build cache shared with `$KE_STATE_DIR/cache` through a
//! symlink), a lock file around `up`/`down`, and a users file listing the PIDs of the processes
//! holding it. The last holder to let go (dead PIDs are pruned) runs `down --wipe`.
//!
//! If the control plane cannot be built on this machine (no cached binaries and
//! `hack/local-k8s.sh build` fails), or `KE_SKIP_K8S=1`, [`LocalK8s::shared`] prints why and returns
//! `None`: the caller skips. A cluster that is built but does not come up is a test failure.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};

/// A running local control plane; `down` when the last holder (in any test process) drops it.
#[derive(Debug)]
pub struct LocalK8s {
    state: PathBuf,
    /// Admin kubeconfig (`KUBECONFIG`).
    pub admin_kubeconfig: PathBuf,
    /// cloudcore's least-privilege kubeconfig (`KE_CLOUDCORE_KUBECONFIG`).
    pub cloudcore_kubeconfig: PathBuf,
}

static SHARED: Mutex<Weak<LocalK8s>> = Mutex::new(Weak::new());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    repo_root().join("hack/local-k8s.sh")
}

fn base_state() -> PathBuf {
    std::env::var_os("KE_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/kubeedge-dev"))
}

/// An exclusive `flock` on a file (`File::lock`), released on drop when the fd closes.
struct Lock(#[allow(dead_code)] File);

impl Lock {
    fn take(path: &Path) -> Self {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        f.lock().unwrap();
        Self(f)
    }
}

fn run_script(state: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .env("KE_STATE_DIR", state)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Rewrites the users file with live PIDs, `add`ed or without `remove`; returns how many remain.
fn update_users(path: &Path, add: Option<u32>, remove: Option<u32>) -> usize {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    let mut pids: Vec<u32> = s
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|p| pid_alive(*p) && Some(*p) != remove)
        .collect();
    if let Some(p) = add.filter(|p| !pids.contains(p)) {
        pids.push(p);
    }
    f.set_len(0).unwrap();
    f.rewind().unwrap();
    for p in &pids {
        writeln!(f, "{p}").unwrap();
    }
    pids.len()
}

impl LocalK8s {
    /// The shared cluster, brought up if needed; `None` (after printing why) when it cannot be built.
    pub fn shared() -> Option<Arc<Self>> {
        let mut g = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = g.upgrade() {
            return Some(k);
        }
        if std::env::var("KE_SKIP_K8S").as_deref() == Ok("1") {
            eprintln!("SKIP: KE_SKIP_K8S=1: the local Kubernetes control plane is disabled");
            return None;
        }
        let base = base_state();
        let state = base.join("test-shared");
        std::fs::create_dir_all(base.join("cache")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let cache_link = state.join("cache");
        if !cache_link.exists() {
            let _ = std::os::unix::fs::symlink(base.join("cache"), &cache_link);
        }
        let _lock = Lock::take(&state.join(".test.lock"));
        if !base.join("cache/bin/kube-apiserver").exists() {
            let out = run_script(&base, &["build"]);
            if !out.status.success() {
                eprintln!(
                    "SKIP: the local Kubernetes control plane cannot be built here (`hack/local-k8s.sh build` failed):\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
        }
        update_users(&state.join(".test.users"), Some(std::process::id()), None);
        let out = run_script(&state, &["up"]);
        assert!(
            out.status.success(),
            "hack/local-k8s.sh up failed (state {}):\n{}{}",
            state.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = state.join("cluster");
        let k = Arc::new(Self {
            admin_kubeconfig: cluster.join("admin.kubeconfig"),
            cloudcore_kubeconfig: cluster.join("cloudcore.kubeconfig"),
            state,
        });
        *g = Arc::downgrade(&k);
        Some(k)
    }

    /// Runs kubectl (the one on `PATH`, else Debian's 1.20 through the script) as admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let on_path = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .output();
        match on_path {
            Ok(o) => o,
            Err(_) => {
                let mut a = vec!["kubectl"];
                a.extend_from_slice(args);
                run_script(&self.state, &a)
            }
        }
    }

    /// kubectl that must succeed; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl apply -f -` with `yaml`; panics on failure.
    pub fn apply(&self, yaml: &str) {
        if let Err(e) = self.try_apply(yaml) {
            panic!("{e}");
        }
    }

    /// `kubectl apply -f -` with `yaml`; the error is kubectl's output.
    pub fn try_apply(&self, yaml: &str) -> Result<(), String> {
        use std::process::Stdio;
        let mut child = Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl apply failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }
}

impl Drop for LocalK8s {
    fn drop(&mut self) {
        let _lock = Lock::take(&self.state.join(".test.lock"));
        let left = update_users(&self.state.join(".test.users"), None, Some(std::process::id()));
        if left == 0 {
            let out = run_script(&self.state, &["down", "--wipe"]);
            if !out.status.success() {
                eprintln!(
                    "hack/local-k8s.sh down failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
