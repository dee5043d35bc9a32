//! A network namespace of the test's own, linked to the host by a veth pair, for tests that
//! need a link they can break: an edgecore inside the namespace, cloudcore on the host.
//!
//! ```text
//!   host (root namespace)                         namespace `ke-t<i>`
//!   ┌───────────────────────────┐   veth pair    ┌───────────────────────────┐
//!   │ ket<i>h  10.251.x.y+1/30  │◀──────────────▶│ ket<i>n  10.251.x.y+2/30  │
//!   │ cloudcore listens here     │                │ edgecore dials host_ip()   │
//!   └───────────────────────────┘                └───────────────────────────┘
//! ```
//!
//! # Use
//!
//! ```no_run
//! # fn f(log_dir: &std::path::Path, cfg: &str) {
//! use ke_testkit::netns::NetNs;
//! let Some(ns) = NetNs::create() else { return }; // None (printed why): not root / no `ip`
//! // cloudcore on the host binds `ns.host_ip()` (its server certificate needs that IP as a SAN,
//! // see `Pki::generate_with_sans`); edgecore's `edgehub.websocket.server` is `<host_ip>:<port>`.
//! let edge = ns.daemon("edge-1", &ke_testkit::bin("edgecore"), &["--config", cfg], log_dir);
//! ns.cut(); // the link goes down: packets are dropped both ways, no RST, no FIN
//! ns.restore(); // the link is back, same addresses
//! drop(edge); // or let it go with `ns`
//! // dropping `ns` SIGKILLs whatever still runs inside, deletes the veth pair and the namespace
//! # }
//! ```
//!
//! * **Names and addresses are unique per instance**, across test processes: instance `i` owns
//!   the interfaces `ket<i>h` / `ket<i>n`, the namespace `ke-t<i>` and the /30 `10.251.0.0 +
//!   4·i` (host side `.1`, namespace side `.2` of the /30). The veth pair is created first and its
//!   name claims the index atomically (the kernel refuses a second `ket<i>h`); a taken index is
//!   skipped. Up to 16384 instances at once.
//! * **Processes inside**: [`NetNs::daemon`] starts a [`Daemon`] through `ip netns exec`, which
//!   `exec`s the binary (no intermediate process), so the daemon's PID, SIGTERM on drop and its
//!   log file behave as with [`Daemon::start`]. [`NetNs::command`] gives a plain [`Command`] for
//!   one-off tools (e.g. `ping`). The namespace's loopback is up, so a daemon inside can still
//!   bind `127.0.0.1` for its own ports (they are not reachable from the host, though).
//! * **Files are shared**: only the network is namespaced; a test reads the edge's SQLite or
//!   logs directly.
//! * **Cleanup** ([`Drop`]): every PID in the namespace (`ip netns pids`) gets SIGKILL, then the
//!   veth pair (deleting one end deletes both) and the namespace are removed. Nothing is touched
//!   outside the names above: no iptables, no routes beyond the /30, no sysctls.
//! * Needs root (CAP_NET_ADMIN) and iproute2; [`NetNs::create`] returns `None` otherwise, so a
//!   test can skip the way `LocalK8s::shared` callers do.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Daemon;

/// Number of /30 blocks in 10.251.0.0/16.
const SLOTS: u32 = 1 << 14;

/// A network namespace with a veth link to the host; removed (with what runs in it) on drop.
#[derive(Debug)]
pub struct NetNs {
    index: u32,
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

/// Runs `ip <args>`; `Err` carries stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// Creates a namespace, a veth pair into it and its /30; `None` (reason printed) when this
    /// machine does not allow it (not root, no iproute2). Panics if setup fails half-way (after
    /// undoing what it did).
    pub fn create() -> Option<Self> {
        if let Err(e) = ip(&["netns", "list"]) {
            eprintln!("netns: skipped, {e}");
            return None;
        }
        // Start from a per-process point so parallel test processes rarely collide.
        let start = std::process::id().wrapping_mul(2_654_435_761) % SLOTS;
        for k in 0..SLOTS {
            let index = (start + k) % SLOTS;
            let host_if = format!("ket{index}h");
            let ns_if = format!("ket{index}n");
            // The claim: fails when another instance (or a leftover) holds this index.
            match ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]) {
                Ok(()) => {}
                Err(e) if e.contains("File exists") => continue,
                Err(e) => {
                    eprintln!("netns: skipped, {e}");
                    return None;
                }
            }
            let base = u32::from(Ipv4Addr::new(10, 251, 0, 0)) + 4 * index;
            let ns = Self {
                index,
                name: format!("ke-t{index}"),
                host_if,
                ns_if,
                host_ip: Ipv4Addr::from(base + 1),
                ns_ip: Ipv4Addr::from(base + 2),
            };
            if let Err(e) = ns.setup() {
                let leftover_ns = e.contains("netns add");
                drop(ns); // undoes the veth pair (and the namespace, if made)
                if leftover_ns {
                    continue; // a namespace of that name is left over from a crashed run
                }
                panic!("netns setup failed: {e}");
            }
            return Some(ns);
        }
        panic!("netns: all {SLOTS} slots taken");
    }

    fn setup(&self) -> Result<(), String> {
        let (name, host_if, ns_if) = (&self.name, &self.host_if, &self.ns_if);
        ip(&["netns", "add", name])?;
        ip(&["link", "set", ns_if, "netns", name])?;
        ip(&["addr", "add", &format!("{}/30", self.host_ip), "dev", host_if])?;
        ip(&["link", "set", host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/30", self.ns_ip), "dev", ns_if])?;
        inside(&["link", "set", ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])
    }

    /// The namespace's name (for `ip netns exec <name> …`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This instance's index (unique among live instances on the machine).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The host end's address: what a server on the host binds for peers inside to reach it.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace end's address: what processes inside are seen as from the host.
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The host-side interface name (`ket<i>h`).
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> <program>`); add
    /// arguments with [`Command::arg`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Starts `binary args` inside the namespace as a [`Daemon`] logging to
    /// `<log_dir>/<name>.log`; its PID is the binary's own (`ip netns exec` execs it).
    pub fn daemon(&self, name: &str, binary: &Path, args: &[&str], log_dir: &Path) -> Daemon {
        let mut c = self.command(binary);
        c.args(args);
        Daemon::start_command(name, c, log_dir)
    }

    /// Breaks the link: the host end goes down, so both ends lose carrier and every packet is
    /// dropped silently (as when a cable is pulled: no RST, no FIN).
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]).unwrap_or_else(|e| panic!("netns cut: {e}"));
    }

    /// Brings the link back after [`cut`](Self::cut) (same addresses).
    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]).unwrap_or_else(|e| panic!("netns restore: {e}"));
    }

    /// PIDs of the processes running inside.
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let start = Instant::now();
        loop {
            let pids = self.pids();
            if pids.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            for p in pids {
                let _ = Command::new("kill").args(["-KILL", &p.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Deleting one end of a veth pair deletes the other (wherever it is).
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_namespaces_ping_cut_restore_and_clean_up() {
        let Some(a) = NetNs::create() else { return };
        let b = NetNs::create().unwrap();
        assert_ne!(a.name(), b.name());
        assert_ne!(a.host_ip(), b.host_ip());
        // A TCP listener on each host end; "reachable" = a connect from inside succeeds in 2 s.
        let la = std::net::TcpListener::bind((a.host_ip(), 0)).unwrap();
        let lb = std::net::TcpListener::bind((b.host_ip(), 0)).unwrap();
        let ping = |ns: &NetNs| {
            let l = if ns.name() == a.name() { &la } else { &lb };
            let addr = l.local_addr().unwrap();
            let script = format!("exec 3<>/dev/tcp/{}/{}", addr.ip(), addr.port());
            let mut c = ns.command("timeout");
            c.args(["2", "bash", "-c", &script]);
            c.stderr(Stdio::null()).status().unwrap().success()
        };
        assert!(ping(&a), "host reachable from inside");
        a.cut();
        assert!(!ping(&a), "cut link drops packets");
        assert!(ping(&b), "other instance unaffected");
        a.restore();
        assert!(ping(&a), "restored");

        // A process inside is killed and everything removed on drop.
        let log = tempfile::tempdir().unwrap();
        let mut d = a.daemon("sleeper", Path::new("/bin/sleep"), &["600"], log.path());
        let pid = d.pid();
        // `ip netns exec` enters the namespace after the spawn returns: wait until it has.
        let start = std::time::Instant::now();
        let mut inside = a.pids();
        while inside.is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            inside = a.pids();
        }
        assert_eq!(inside, vec![pid], "the daemon's PID is the binary's own");
        let (name, host_if) = (a.name().to_owned(), a.host_if().to_owned());
        drop((la, lb));
        drop(a);
        assert!(!d.running());
        let netns = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert!(!netns.split_whitespace().any(|n| n == name), "{netns}");
        assert!(ip(&["link", "show", &host_if]).is_err());
    }
}
