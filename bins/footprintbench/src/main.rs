//! footprintbench: edgecore's footprint with edged running pods, measured on the real binaries.
//!
//! Starts a `cloudcore` (no API server, edgecontroller off) and an `edgecore` with edged on
//! containerd (plus edgehub, metaManager, eventbus with its internal broker, twin) from the
//! binaries next to this one. Then it feeds pods the way the cloud does, as `insert` messages
//! through cloudcore's unix socket, from 0 to `--max` pods in steps of `--step`. At each step it
//! waits until every pod is `Running` on edged's read-only endpoint (`127.0.0.1:10255/pods`),
//! then records edgecore's RSS and RssAnon (`/proc/<pid>/status`) and its %CPU from the
//! utime + stime of `/proc/<pid>/stat`, both during the ramp and over a quiet interval after it.
//! Prints the table next to the targets, and the pod start latency (insert accepted by
//! cloudcore → first seen `Running`) p50/p99 over all pods.
//!
//! Cleans up every pod at the end: sends the deletes, waits until the sandboxes are stopped,
//! then removes whatever is left with the label `kubeedge.io/node=<node>` by id (also when the
//! run fails). Needs the containerd of `hack/setup-containerd.sh` and port 10255 free.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ke_benchkit::{
    free_port, http_get, hub_socket, metric, pct, rss, sibling_bin, spawn, write_cloud_pki,
    write_cloudcore_config, write_edgecore_config,
};
use ke_core::Message;
use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(about = "edgecore RSS/%CPU from 0 to 100 pods, and pod start latency, on real processes")]
struct Args {
    /// Pods at the last step.
    #[arg(long, default_value_t = 100)]
    max: usize,
    /// Pods added per step.
    #[arg(long, default_value_t = 5)]
    step: usize,
    /// Seconds of quiet measurement after each step (the steady %CPU).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Seconds to let edgecore settle before the idle row.
    #[arg(long, default_value_t = 5)]
    settle: u64,
    /// Seconds a step may take to get all its pods Running.
    #[arg(long, default_value_t = 180)]
    step_timeout: u64,
    /// Container command of each pod.
    #[arg(long, default_value = "sleep 3600")]
    command: String,
    /// The edgecore binary measured (default: next to this bench; `hack/bench-footprint.sh` passes
    /// the size-optimised `target/edge/edgecore`).
    #[arg(long)]
    edgecore: Option<PathBuf>,
}

const NODE: &str = "footprint-bench";
const LABEL_NODE: &str = "kubeedge.io/node";
const IMAGE: &str = "docker.io/kubeedge/busybox:test";
const PAUSE: &str = "docker.io/kubeedge/pause:3.6";
const READ_ONLY: &str = "127.0.0.1:10255";

/// utime + stime in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A CPU sample: ticks and when they were read.
struct Cpu(u64, Instant);

impl Cpu {
    fn now(pid: u32) -> Self {
        Self(cpu_ticks(pid), Instant::now())
    }

    /// %CPU (of one core) since `self`.
    fn pct_since(&self, pid: u32, tck: f64) -> f64 {
        let secs = self.1.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        cpu_ticks(pid).saturating_sub(self.0) as f64 / tck / secs * 100.0
    }
}

/// Names of the pods edged reports `Running` on its read-only endpoint.
async fn running_pods() -> Vec<String> {
    let Some(body) = http_get(READ_ONLY, "/pods").await else {
        return Vec::new();
    };
    let Ok(list) = serde_json::from_str::<Value>(&body) else {
        return Vec::new();
    };
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
                .filter_map(|p| p.pointer("/metadata/name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn pod_name(i: usize) -> String {
    format!("fp-{i:03}")
}

fn pod_json(i: usize, command: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(i), "namespace": "default",
            "uid": format!("f00d0000-0000-4000-8000-{i:012}"), "resourceVersion": "1"},
        "spec": {"nodeName": NODE, "restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": IMAGE, "command": command}]}})
}

fn pod_message(op: &str, i: usize, command: &[&str]) -> Message {
    Message::new(
        "edgecontroller",
        "resource",
        op,
        format!("node/{NODE}/default/pod/{}", pod_name(i)),
        pod_json(i, command),
    )
    .with_resource_version("1")
}

fn by_node() -> HashMap<String, String> {
    HashMap::from([(LABEL_NODE.to_owned(), NODE.to_owned())])
}

async fn ready_sandboxes(c: &CriClient) -> usize {
    c.list_pod_sandboxes(Some(api::PodSandboxFilter {
        label_selector: by_node(),
        ..Default::default()
    }))
    .await
    .map(|v| {
        v.iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .count()
    })
    .unwrap_or(0)
}

/// Removes every container and sandbox labelled with this bench's node, by id. Returns how many
/// sandboxes it removed.
async fn remove_leftovers(c: &CriClient) -> usize {
    for k in c
        .list_containers(Some(api::ContainerFilter {
            label_selector: by_node(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default()
    {
        let _ = c.stop_container(&k.id, Duration::ZERO).await;
        let _ = c.remove_container(&k.id).await;
    }
    let sandboxes = c
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: by_node(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for sb in &sandboxes {
        let _ = c.stop_pod_sandbox(&sb.id).await;
        let _ = c.remove_pod_sandbox(&sb.id).await;
        if let Some(m) = &sb.metadata {
            ke_cri::remove_pod_cgroup(&format!("/kubepods/besteffort/pod{}", m.uid));
            let _ = std::fs::remove_dir_all(format!("/var/log/pods/{}_{}_{}", m.namespace, m.name, m.uid));
        }
    }
    sandboxes.len()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cri = CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60))?;
    cri.version()
        .await
        .context("containerd does not answer: run hack/setup-containerd.sh")?;
    for image in [IMAGE, PAUSE] {
        if cri.image_status(image).await?.is_none() {
            bail!("{image} is not in containerd: run hack/setup-containerd.sh");
        }
    }
    if std::net::TcpListener::bind(READ_ONLY).is_err() {
        bail!("{READ_ONLY} is taken (another edged?): edged's read-only endpoint needs it");
    }
    let stale = remove_leftovers(&cri).await;
    if stale > 0 {
        println!("removed {stale} sandboxes left by an earlier run");
    }
    let dir = std::env::temp_dir().join(format!("footprintbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let res = run(&args, &dir, &cri).await;
    // Whatever happened, nothing of this node stays in containerd.
    let left = remove_leftovers(&cri).await;
    if res.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("cleanup: {left} sandboxes removed by id after the deletes");
    res
}

fn write_configs(dir: &Path, ws: u16, cm: u16, em: u16, mq: u16) -> anyhow::Result<PathBuf> {
    let ca = write_cloud_pki(dir, "footprintbench CA")?;
    ca.issue_node(NODE)?.write(&dir.join("certs"), NODE)?;
    write_cloudcore_config(dir, ws, cm)?;
    let edged = format!(
        "    runtimeType: remote
    remoteRuntimeEndpoint: {CONTAINERD_ENDPOINT}
    remoteImageEndpoint: {CONTAINERD_ENDPOINT}
    podSandboxImage: {PAUSE}
    imageGCHighThreshold: 100
"
    );
    write_edgecore_config(dir, NODE, ws, em, mq, &edged)?;
    Ok(hub_socket(dir))
}

struct Row {
    pods: usize,
    rss: u64,
    anon: u64,
    ramp_cpu: Option<f64>,
    ramp: Option<Duration>,
    steady_cpu: f64,
}

async fn run(args: &Args, dir: &Path, cri: &CriClient) -> anyhow::Result<()> {
    if args.step == 0 {
        bail!("--step must be at least 1");
    }
    let (ws, cm, em, mq) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let sock = write_configs(dir, ws, cm, em, mq)?;
    let d = dir.display();
    let _cloud = spawn(
        &sibling_bin("cloudcore")?,
        &dir.join("cloudcore.yaml"),
        &dir.join("cloudcore.log"),
    )?;
    let edgecore = match &args.edgecore {
        Some(p) => p.clone(),
        None => sibling_bin("edgecore")?,
    };
    println!("edgecore: {}", edgecore.display());
    let edge = spawn(&edgecore, &dir.join("edgecore.yaml"), &dir.join("edgecore.log"))?;
    let pid = edge.pid();
    let tck = clk_tck();
    let t0 = Instant::now();
    while metric(&format!("127.0.0.1:{cm}"), "cloudhub_connected_nodes").await != Some(1.0)
        || http_get(READ_ONLY, "/healthz").await.is_none()
    {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("the edge did not connect or edged did not serve {READ_ONLY}; logs in {d}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;

    let command: Vec<&str> = args.command.split_whitespace().collect();
    let mut rows = Vec::new();
    let quiet = |pods, ramp_cpu, ramp| async move {
        let c = Cpu::now(pid);
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
        let steady_cpu = c.pct_since(pid, tck);
        let (rss, anon) = rss(pid);
        Row {
            pods,
            rss,
            anon,
            ramp_cpu,
            ramp,
            steady_cpu,
        }
    };
    rows.push(quiet(0, None, None).await);

    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut latency: HashMap<String, Duration> = HashMap::new();
    let mut n = 0;
    let outcome: anyhow::Result<()> = async {
        while n < args.max {
            let upto = (n + args.step).min(args.max);
            let c = Cpu::now(pid);
            let start = Instant::now();
            for i in n..upto {
                let reply = ke_transport::unix::request(&sock, &pod_message("insert", i, &command), 1 << 20)
                    .await
                    .with_context(|| format!("sending pod {i} to cloudcore"))?;
                if reply.content_str() != Some("OK") {
                    bail!("cloudcore refused pod {i}: {reply:?}");
                }
                sent.insert(pod_name(i), Instant::now());
            }
            n = upto;
            while latency.len() < n {
                if start.elapsed() > Duration::from_secs(args.step_timeout) {
                    bail!(
                        "only {} of {n} pods Running after {}s; logs in {d}",
                        latency.len(),
                        args.step_timeout
                    );
                }
                for name in running_pods().await {
                    if let Some(t) = sent.get(&name) {
                        latency.entry(name).or_insert_with(|| t.elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let ramp_cpu = c.pct_since(pid, tck);
            rows.push(quiet(n, Some(ramp_cpu), Some(start.elapsed())).await);
        }
        Ok(())
    }
    .await;

    print_table(&rows, &latency);

    // Delete every pod the cloud's way, then wait for edged to stop their sandboxes.
    for i in 0..n {
        let _ = ke_transport::unix::request(&sock, &pod_message("delete", i, &command), 1 << 20).await;
    }
    let t = Instant::now();
    while ready_sandboxes(cri).await > 0 && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "deletes: {} ready sandboxes left after {:.1}s",
        ready_sandboxes(cri).await,
        t.elapsed().as_secs_f64()
    );
    drop(edge);
    outcome
}

fn print_table(rows: &[Row], latency: &HashMap<String, Duration>) {
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!("edgecore (edgehub, metaManager, eventbus + internal broker, twin, edged on containerd)");
    println!(
        "{:>5} {:>9} {:>13} {:>10} {:>11} {:>12}",
        "pods", "RSS MB", "RssAnon MB", "ramp s", "ramp %CPU", "steady %CPU"
    );
    for r in rows {
        let ramp = r
            .ramp
            .map_or_else(|| "-".to_owned(), |d| format!("{:.1}", d.as_secs_f64()));
        let ramp_cpu = r.ramp_cpu.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}"));
        println!(
            "{:>5} {:>9.1} {:>13.1} {:>10} {:>11} {:>12.1}",
            r.pods,
            mb(r.rss),
            mb(r.anon),
            ramp,
            ramp_cpu,
            r.steady_cpu
        );
    }
    println!(
        "targets: RSS <= 12 MB idle, <= 20 MB at 100 pods (KubeEdge v1.2.1 idled at 57 MB with edged on)"
    );
    let mut l: Vec<Duration> = latency.values().copied().collect();
    l.sort();
    println!(
        "pod start latency (insert accepted by cloudcore -> Running on :10255/pods, {} pods, 50 ms polling): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        l.len(),
        pct(&l, 0.50).as_secs_f64() * 1000.0,
        pct(&l, 0.99).as_secs_f64() * 1000.0,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}
