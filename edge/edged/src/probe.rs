//! Container probes (`shared/spec/edged.md` §6): the per-container bookkeeping the worker's
//! state machine keeps ([`Track`]) and the probe runner ([`run`]): `exec` through CRI
//! `ExecSync` (v1.2's exec probe always passed), `httpGet` (HTTP only), `tcpSocket`.

use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ke_cri::CriClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub(crate) const ALL: [Self; 3] = [Self::Startup, Self::Liveness, Self::Readiness];

    /// The container's probe of this kind.
    pub(crate) fn of(self, c: &k8s::Container) -> Option<&k8s::Probe> {
        match self {
            Self::Liveness => c.liveness_probe.as_ref(),
            Self::Readiness => c.readiness_probe.as_ref(),
            Self::Startup => c.startup_probe.as_ref(),
        }
    }

    /// The result before the first probe (kubelet: liveness passes, the others do not).
    fn initial(self) -> bool {
        self == Self::Liveness
    }
}

fn secs(v: Option<i32>, default: i32, min: i32) -> i32 {
    v.filter(|v| *v > 0).unwrap_or(default).max(min)
}

/// `periodSeconds` (default 10).
pub(crate) fn period(p: &k8s::Probe) -> Duration {
    Duration::from_secs(u64::try_from(secs(p.period_seconds, 10, 1)).unwrap_or(10))
}

/// `timeoutSeconds` (default 1).
pub(crate) fn timeout(p: &k8s::Probe) -> Duration {
    Duration::from_secs(u64::try_from(secs(p.timeout_seconds, 1, 1)).unwrap_or(1))
}

/// Probe state of one container instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Track {
    /// The container instance probed; a new instance starts a new track.
    pub(crate) container_id: String,
    pub(crate) result: bool,
    successes: i32,
    failures: i32,
    pub(crate) next_at: Instant,
    pub(crate) in_flight: bool,
}

impl Track {
    /// A new track for `container_id`, first probe after `initialDelaySeconds` counted from the
    /// container's start (`running_for` ago).
    pub(crate) fn new(
        kind: Kind,
        p: &k8s::Probe,
        container_id: &str,
        running_for: Duration,
        now: Instant,
    ) -> Self {
        let delay =
            Duration::from_secs(u64::try_from(p.initial_delay_seconds.unwrap_or(0).max(0)).unwrap_or(0));
        Self {
            container_id: container_id.to_owned(),
            result: kind.initial(),
            successes: 0,
            failures: 0,
            next_at: now + delay.saturating_sub(running_for),
            in_flight: false,
        }
    }

    /// Records one probe outcome; returns whether the result flipped.
    pub(crate) fn record(&mut self, p: &k8s::Probe, ok: bool) -> bool {
        self.in_flight = false;
        let before = self.result;
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= secs(p.success_threshold, 1, 1) {
                self.result = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= secs(p.failure_threshold, 3, 1) {
                self.result = false;
            }
        }
        before != self.result
    }
}

/// Where a probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) container_id: String,
    pub(crate) pod_ip: String,
    /// The container's named ports.
    pub(crate) ports: Vec<(String, i32)>,
}

fn port_of(port: &IntOrString, t: &Target) -> Option<u16> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => t.ports.iter().find(|(n, _)| n == name)?.1,
        },
    };
    u16::try_from(n).ok().filter(|p| *p > 0)
}

/// Runs the probe once: `Ok(())` passes, `Err(why)` fails.
pub(crate) async fn run(cri: &CriClient, p: &k8s::Probe, t: &Target) -> Result<(), String> {
    let limit = timeout(p);
    if let Some(exec) = &p.exec {
        let cmd: Vec<&str> = exec.command.iter().flatten().map(String::as_str).collect();
        if cmd.is_empty() {
            return Err("exec probe without a command".to_owned());
        }
        let r = cri
            .exec_sync(&t.container_id, &cmd, limit)
            .await
            .map_err(|e| e.to_string())?;
        return if r.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "exit code {}: {}",
                r.exit_code,
                String::from_utf8_lossy(&r.stdout).trim()
            ))
        };
    }
    if let Some(h) = &p.http_get {
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Err("HTTPS probes are not supported".to_owned());
        }
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        let port = port_of(&h.port, t).ok_or("httpGet probe: unknown port")?;
        let path = h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        let status = tokio::time::timeout(limit, http_status(&host, port, &path, h.http_headers.as_deref()))
            .await
            .map_err(|_| format!("httpGet {host}:{port}{path}: timeout"))?
            .map_err(|e| format!("httpGet {host}:{port}{path}: {e}"))?;
        return if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        };
    }
    if let Some(tcp) = &p.tcp_socket {
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        let port = port_of(&tcp.port, t).ok_or("tcpSocket probe: unknown port")?;
        return match tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port))).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: timeout")),
        };
    }
    Err("probe has no handler".to_owned())
}

async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    headers: Option<&[k8s::HTTPHeader]>,
) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.17\r\n");
    for h in headers.unwrap_or_default() {
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(v: serde_json::Value) -> k8s::Probe {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_flip_results() {
        let p = probe(
            serde_json::json!({"failureThreshold": 2, "successThreshold": 2, "initialDelaySeconds": 5}),
        );
        let now = Instant::now();
        let mut t = Track::new(Kind::Readiness, &p, "c", Duration::from_secs(1), now);
        assert_eq!(t.next_at, now + Duration::from_secs(4));
        assert!(!t.result);
        assert!(!t.record(&p, true));
        assert!(t.record(&p, true));
        assert!(!t.record(&p, false));
        assert!(t.record(&p, false));
        let l = Track::new(Kind::Liveness, &p, "c", Duration::from_secs(9), now);
        assert!(l.result);
        assert_eq!(l.next_at, now);
    }

    #[test]
    fn named_ports_resolve() {
        let t = Target {
            container_id: "c".into(),
            pod_ip: "10.0.0.1".into(),
            ports: vec![("http".into(), 8080)],
        };
        assert_eq!(port_of(&IntOrString::String("http".into()), &t), Some(8080));
        assert_eq!(port_of(&IntOrString::Int(81), &t), Some(81));
        assert_eq!(port_of(&IntOrString::String("nope".into()), &t), None);
    }
}
