//! hubbench: N simulated edge nodes against one real `cloudcore` process.
//!
//! It makes a CA, a server certificate and one node certificate per simulated node (in memory,
//! except what cloudcore reads), writes a cloudcore.yaml, starts cloudcore, connects the nodes over
//! TLS WebSocket (each keeps its heartbeat and acks what it receives), then injects acked-delivery
//! messages through cloudcore's unix socket at a fixed rate. A unix-socket request returns when the
//! edge's ack reaches cloudcore, so its round trip is the cloud → edge → ack latency.
//!
//! Prints: nodes connected, cloudcore RSS (total, and per node above the idle baseline), and
//! p50/p90/p99/max latency, next to the targets of the messaging-core issue.
//!
//! **Controller mode** (`--kubeconfig <admin kubeconfig>`): cloudcore's edgecontroller runs against
//! that API server (e.g. `hack/local-k8s.sh up`); hubbench creates one edge Node per simulated node,
//! connects the nodes, then creates `--pods` pods spread over them (32 requests in flight) and
//! times each from the start of its API create to its arrival (and ack) at the simulated edge.
//! Prints objects/s (pods / first write → last ack) and p50/p99 write → ack latency; deletes the
//! namespace and nodes it made afterwards.
//!
//! `ulimit -n` must allow two descriptors per node (cloudcore is started with a raised soft limit
//! when the hard limit allows).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ke_benchkit::{Proc, free_port, metric, pct, rss, sibling_bin};
use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_transport::{EdgeHello, LinkLimits};

#[derive(Debug, Parser)]
#[command(about = "cloudhub load test against a real cloudcore")]
struct Args {
    /// Simulated edge nodes.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Injected messages per second during the latency phase.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the latency phase, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent TLS handshakes while connecting.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Heartbeat of the simulated edges, seconds.
    #[arg(long, default_value_t = 15)]
    heartbeat: u64,
    /// cloudcore binary (default: next to this binary).
    #[arg(long)]
    cloudcore: Option<PathBuf>,
    /// Work directory (default: a fresh temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Controller mode: an admin kubeconfig of the API server cloudcore's edgecontroller watches.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Controller mode: pods to create across the nodes.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
}

/// `<ns>/pod/<name>` → when it first reached a simulated edge (controller mode).
type Arrivals = Arc<std::sync::Mutex<HashMap<String, Instant>>>;

struct Cloud {
    proc: Proc,
    ws: String,
    sock: PathBuf,
    metrics: String,
}

fn start_cloud(args: &Args, dir: &Path, ca: &ke_pki::Ca) -> anyhow::Result<Cloud> {
    let certs = dir.join("certs");
    ca.write_new(&dir.join("ca")).context("writing the CA")?;
    ca.issue_server("cloudcore", &["127.0.0.1".into()])?
        .write(&certs, "server")?;
    let port = free_port()?;
    let mport = free_port()?;
    let sock = dir.join("cloudhub.sock");
    let cfg = format!(
        "apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: 127.0.0.1:{mport}
kubeAPIConfig:
  kubeConfig: \"{kubeconfig}\"
modules:
  cloudhub:
    nodeLimit: {limit}
    keepaliveInterval: {ka}
    tlsCAFile: {dir}/ca/rootCA.crt
    tlsCertFile: {dir}/certs/server.crt
    tlsPrivateKeyFile: {dir}/certs/server.key
    queueStore: {dir}/cloudhub-queue.db
    unixsocket:
      enable: true
      address: unix://{sock}
    websocket:
      enable: true
      address: 127.0.0.1
      port: {port}
  edgecontroller:
    enable: {controllers}
  devicecontroller:
    enable: false
  synccontroller:
    enable: {controllers}
",
        kubeconfig = args
            .kubeconfig
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        controllers = args.kubeconfig.is_some(),
        limit = args.nodes + 10,
        ka = args.heartbeat * 2,
        dir = dir.display(),
        sock = sock.display(),
    );
    let cfg_path = dir.join("cloudcore.yaml");
    std::fs::write(&cfg_path, cfg)?;
    let bin = match &args.cloudcore {
        Some(p) => p.clone(),
        None => sibling_bin("cloudcore")?,
    };
    let log = std::fs::File::create(dir.join("cloudcore.log"))?;
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n $(ulimit -Hn) 2>/dev/null; exec \"$0\" --config \"$1\"")
        .arg(&bin)
        .arg(&cfg_path)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Cloud {
        proc: Proc::with_grace(child, Duration::from_secs(10)),
        ws: format!("127.0.0.1:{port}"),
        sock,
        metrics: format!("127.0.0.1:{mport}"),
    })
}

async fn simulated_edge(
    server: String,
    node: String,
    tls: Arc<rustls::ClientConfig>,
    heartbeat: Duration,
    received: Arc<AtomicUsize>,
    arrivals: Arrivals,
) -> anyhow::Result<()> {
    let hello = EdgeHello {
        node_id: node.clone(),
        project_id: "bench".into(),
    };
    let (mut tx, mut rx) = ke_transport::ws::connect(&server, &hello, tls, &LinkLimits::default()).await?;
    tx.send(&Message::keepalive()).await?;
    let mut tick = tokio::time::interval(heartbeat);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => tx.send(&Message::keepalive()).await?,
            m = rx.recv_message() => match m? {
                Some(m) => {
                    received.fetch_add(1, Ordering::Relaxed);
                    let at = Instant::now();
                    if !m.header.resource_version.is_empty() {
                        tx.send(&m.ack()).await?;
                    }
                    if m.operation() == op::INSERT
                        && m.resource().contains("/pod/")
                        && let Ok(mut a) = arrivals.lock()
                    {
                        a.entry(m.resource().to_owned()).or_insert(at);
                    }
                }
                None => bail!("{node}: cloud closed the link"),
            },
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp;
    let dir = match &args.workdir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = std::env::temp_dir().join(format!("hubbench-{}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            tmp.clone()
        }
    };
    let ca = ke_pki::Ca::create("hubbench CA")?;
    let cloud = start_cloud(&args, &dir, &ca)?;
    let pid = cloud.proc.pid();
    // Wait for the listener.
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(&cloud.ws).await.is_err() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!(
                "cloudcore did not listen on {} (see {}/cloudcore.log)",
                cloud.ws,
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss(pid).0;
    println!("cloudcore pid {pid}, idle RSS {} KB", rss_idle);

    println!("issuing {} node certificates…", args.nodes);
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let mut tls = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let pair = ca.issue_node(&format!("bench-{i}"))?;
        let material =
            ke_pki::tls::TlsMaterial::from_pem(&ca_pem, pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())?;
        tls.push(ke_pki::tls::client_config_from(material)?);
    }

    println!("connecting {} nodes…", args.nodes);
    let kube = match &args.kubeconfig {
        Some(kc) => Some(controller::setup(kc, args.nodes).await?),
        None => None,
    };
    let arrivals: Arrivals = Arc::default();
    let received = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    let t_connect = Instant::now();
    for (i, tls) in tls.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let (server, received, failed) = (cloud.ws.clone(), received.clone(), failed.clone());
        let arrivals = arrivals.clone();
        let hb = Duration::from_secs(args.heartbeat);
        tokio::spawn(async move {
            let node = format!("bench-{i}");
            // Hold the permit only for the handshake: released once the first keepalive went out.
            let fut = simulated_edge(server, node.clone(), tls, hb, received, arrivals);
            drop(permit);
            if let Err(e) = fut.await {
                failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("{node}: {e:#}");
            }
        });
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut connected = 0.0;
    let deadline = Instant::now() + Duration::from_secs(60 + args.nodes as u64 / 50);
    while Instant::now() < deadline {
        connected = metric(&cloud.metrics, "cloudhub_connected_nodes")
            .await
            .unwrap_or(0.0);
        if connected as usize + failed.load(Ordering::Relaxed) >= args.nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "nodes connected: {connected} of {} in {:.1?}",
        args.nodes,
        t_connect.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded = rss(pid).0;
    let per_node = if connected > 0.0 {
        (rss_loaded.saturating_sub(rss_idle)) as f64 / connected
    } else {
        0.0
    };
    println!(
        "cloudcore RSS {rss_loaded} KB with {connected} nodes: {per_node:.1} KB per node above idle, {:.1} KB per node total   (target <= 30 KB/node at 10,000 nodes; KubeEdge v1.2.1: 131 KB/node at 3,000)",
        rss_loaded as f64 / connected.max(1.0)
    );

    if let Some(kube) = kube {
        let r = controller::run(&kube, args.nodes, args.pods, &arrivals).await;
        controller::cleanup(&kube).await;
        drop(cloud);
        return r;
    }

    println!(
        "latency phase: {} msg/s for {} s through the unix socket…",
        args.rate, args.seconds
    );
    let total = (args.rate * args.seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(total);
    let nodes = (connected as usize).max(1);
    for i in 0..total {
        ticker.tick().await;
        let node = format!("bench-{}", i % nodes);
        let msg = Message::new(
            module::EDGECONTROLLER,
            group::RESOURCE,
            op::UPDATE,
            format!("node/{node}/default/configmap/cm-{i}"),
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
        )
        .with_resource_version((i + 1).to_string());
        let (sock, lat, errors) = (cloud.sock.clone(), lat.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            match ke_transport::unix::request(&sock, &msg, 1 << 20).await {
                Ok(r) if r.operation() == op::RESPONSE => {
                    if let Ok(mut l) = lat.lock() {
                        l.push(t.elapsed());
                    }
                }
                Ok(r) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("error reply: {}", r.content_json_text());
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("unix request failed: {e}");
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort();
    println!(
        "cloud->edge->ack latency over {} messages at {} msg/s: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}  errors {}   (target p99 <= 20 ms at 1,000 msg/s)",
        l.len(),
        args.rate,
        pct(&l, 0.50),
        pct(&l, 0.90),
        pct(&l, 0.99),
        l.last().copied().unwrap_or_default(),
        errors.load(Ordering::Relaxed)
    );
    println!(
        "edges received {} messages; cloudcore RSS now {} KB",
        received.load(Ordering::Relaxed),
        rss(pid).0
    );
    drop(cloud);
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Controller mode: the API side (nodes, pods, cleanup).
mod controller {
    use super::*;
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
    use kube::Api;
    use kube::api::{DeleteParams, ListParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};

    /// The client and the names this run made.
    pub(crate) struct Kube {
        client: kube::Client,
        ns: String,
        label: String,
    }

    /// Connects, creates the namespace and one edge Node per simulated node.
    pub(crate) async fn setup(kubeconfig: &Path, nodes: usize) -> anyhow::Result<Kube> {
        let kc =
            Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(cfg)?;
        let run = std::process::id();
        let k = Kube {
            client,
            ns: format!("hubbench-{run}"),
            label: format!("hubbench={run}"),
        };
        let pp = PostParams::default();
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": k.ns}}))?;
        Api::<Namespace>::all(k.client.clone()).create(&pp, &ns).await?;
        println!("creating {nodes} edge nodes…");
        let api = Api::<Node>::all(k.client.clone());
        let results: Vec<_> = futures_util::stream::iter(0..nodes)
            .map(|i| {
                let (api, pp) = (api.clone(), pp.clone());
                async move {
                    let n: Node = serde_json::from_value(serde_json::json!({"metadata": {
                        "name": format!("bench-{i}"),
                        "labels": {"node-role.kubernetes.io/edge": "", "hubbench": run.to_string()}}}))?;
                    api.create(&pp, &n).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(k)
    }

    /// Creates `pods` pods over the nodes and waits until every one reached its edge.
    pub(crate) async fn run(k: &Kube, nodes: usize, pods: usize, arrivals: &Arrivals) -> anyhow::Result<()> {
        // Let the edgecontroller's node watcher see the nodes before their pods come.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("controller phase: {pods} pods over {nodes} nodes, 32 creates in flight…");
        let api = Api::<Pod>::namespaced(k.client.clone(), &k.ns);
        let t0 = Instant::now();
        let writes: Vec<anyhow::Result<(String, Instant)>> = futures_util::stream::iter(0..pods)
            .map(|i| {
                let api = api.clone();
                async move {
                    let name = format!("{}/pod/p{i}", k.ns);
                    let p: Pod = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("p{i}")},
                        "spec": {"nodeName": format!("bench-{}", i % nodes.max(1)),
                                 "automountServiceAccountToken": false,
                                 "containers": [{"name": "c", "image": "busybox"}]}}))?;
                    let t = Instant::now();
                    api.create(&PostParams::default(), &p).await?;
                    Ok((name, t))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let writes: HashMap<String, Instant> = writes.into_iter().collect::<anyhow::Result<_>>()?;
        let written = t0.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        let ours = |a: &HashMap<String, Instant>| -> HashMap<String, Instant> {
            a.iter()
                .filter(|(k, _)| writes.contains_key(*k))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        let mut arrivals_now = HashMap::new();
        while Instant::now() < deadline {
            arrivals_now = arrivals.lock().map(|a| ours(&a)).unwrap_or_default();
            if arrivals_now.len() >= pods {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let arrivals = arrivals_now;
        let mut lat: Vec<Duration> = writes
            .iter()
            .filter_map(|(n, t)| arrivals.get(n).map(|a| a.saturating_duration_since(*t)))
            .collect();
        lat.sort();
        let last = arrivals.values().max().copied().unwrap_or(t0);
        let span = last.saturating_duration_since(t0);
        println!(
            "API write -> edge ack: {} of {pods} pods in {span:.2?} (writes took {written:.2?}): {:.0} objects/s; \
             p50 {:.2?}  p99 {:.2?}  max {:.2?}",
            lat.len(),
            lat.len() as f64 / span.as_secs_f64().max(1e-9),
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
        );
        if lat.len() < pods {
            bail!("{} pods never reached their edge", pods - lat.len());
        }
        Ok(())
    }

    /// Deletes the pods (at once: no kubelet will confirm), the namespace and the nodes this run
    /// made.
    pub(crate) async fn cleanup(k: &Kube) {
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        let pods = Api::<Pod>::namespaced(k.client.clone(), &k.ns);
        if let Err(e) = pods.delete_collection(&now, &ListParams::default()).await {
            eprintln!("deleting pods in {}: {e}", k.ns);
        }
        let dp = DeleteParams::default();
        if let Err(e) = Api::<Namespace>::all(k.client.clone()).delete(&k.ns, &dp).await {
            eprintln!("deleting namespace {}: {e}", k.ns);
        }
        let lp = ListParams::default().labels(&k.label);
        if let Err(e) = Api::<Node>::all(k.client.clone())
            .delete_collection(&dp, &lp)
            .await
        {
            eprintln!("deleting nodes {}: {e}", k.label);
        }
    }
}
