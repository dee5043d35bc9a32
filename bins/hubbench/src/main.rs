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
//! **HA mode** (`--ha --kubeconfig <admin kubeconfig>`): two cloudcores with `modules.cloudhub.ha`
//! on, sharing one CA and a fresh Lease namespace; each simulated node lists both (its own first,
//! half the nodes on each) and moves to the other at once when its link drops. Prints the RSS per
//! node of the pair, p50/p99 latency with both up, then kills one with SIGKILL and prints the time
//! until the survivor serves every node (its `cloudhub_connected_nodes`, counted after each
//! node's Lease write), its RSS per node, the Lease takeovers and the latency afterwards. Deletes
//! the namespace (and with it the Leases) at the end.
//!
//! The bench raises its soft open-file limit to the hard limit (cloudcore inherits it); one
//! descriptor per node is needed on each side.

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
    /// HA mode (needs --kubeconfig): two cloudcores share the nodes; one is killed mid-run.
    #[arg(long, requires = "kubeconfig")]
    ha: bool,
    /// HA mode: the cloudcores' `modules.cloudhub.ha.leaseQPS` (bounds the re-home rate).
    #[arg(long, default_value_t = 500)]
    lease_qps: u32,
}

/// One cloudcore of an HA pair.
struct HaSide {
    identity: String,
    namespace: String,
}

/// `<ns>/pod/<name>` → when it first reached a simulated edge (controller mode).
type Arrivals = Arc<std::sync::Mutex<HashMap<String, Instant>>>;

struct Cloud {
    proc: Proc,
    ws: String,
    sock: PathBuf,
    metrics: String,
}

fn start_cloud(args: &Args, dir: &Path, ca: &ke_pki::Ca, ha: Option<&HaSide>) -> anyhow::Result<Cloud> {
    std::fs::create_dir_all(dir)?;
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
    tlsCAKeyFile: {dir}/ca/rootCA.key
    tlsCertFile: {dir}/certs/server.crt
    tlsPrivateKeyFile: {dir}/certs/server.key
    queueStore: {queue}
{ha}    unixsocket:
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
        controllers = args.kubeconfig.is_some() && ha.is_none(),
        // HA keeps delivery state in ObjectSync, not in a local queue store.
        queue = if ha.is_some() {
            String::from("\"\"")
        } else {
            format!("{}/cloudhub-queue.db", dir.display())
        },
        ha = ha
            .map(|h| {
                format!(
                    "    ha:\n      enable: true\n      identity: {}\n      namespace: {}\n      leaseDurationSeconds: 15\n      leaseQPS: {}\n",
                    h.identity, h.namespace, args.lease_qps
                )
            })
            .unwrap_or_default(),
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
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
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

/// Connection attempts of the simulated nodes, and how many of them failed (HA progress lines).
static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
static FAILED_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
/// Why attempts failed (the error with the node's name taken out) → how often.
static FAILURES: std::sync::Mutex<Option<HashMap<String, usize>>> = std::sync::Mutex::new(None);

fn tally_failure(node: &str, e: &anyhow::Error) {
    let why = format!("{e:#}").replace(node, "<node>");
    if let Ok(mut f) = FAILURES.lock() {
        *f.get_or_insert_with(HashMap::new).entry(why).or_default() += 1;
    }
}

/// The failure tally, most frequent first.
fn failure_tally() -> Vec<(usize, String)> {
    let mut v: Vec<(usize, String)> = FAILURES
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, n)| (n, k))
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v
}

/// One simulated node: connects to the first of `servers`, keeps its heartbeat and acks what it
/// receives. With several servers it moves to the next one at once when a connection fails or
/// drops (a pause only after the whole list failed); with one it returns the error.
async fn simulated_edge(
    servers: Vec<String>,
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
    let mut failures = 0;
    for server in servers.iter().cycle() {
        ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        let Err(e) = session(server, &hello, &tls, heartbeat, &received, &arrivals).await else {
            continue;
        };
        FAILED_ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        tally_failure(&node, &e);
        if servers.len() == 1 {
            return Err(e);
        }
        failures += 1;
        if failures % servers.len() == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// One session of a simulated node with `server`; ends only with the error that ended it.
async fn session(
    server: &str,
    hello: &EdgeHello,
    tls: &Arc<rustls::ClientConfig>,
    heartbeat: Duration,
    received: &AtomicUsize,
    arrivals: &Arrivals,
) -> anyhow::Result<()> {
    let (mut tx, mut rx) =
        ke_transport::ws::connect(server, hello, tls.clone(), &LinkLimits::default()).await?;
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
                None => bail!("{}: {server} closed the link", hello.node_id),
            },
        }
    }
}

/// Sends `rate` acked messages per second for `seconds` through the unix sockets of `targets`
/// (message i goes to target i mod len; its config map is `cm-<first + i>`, at resourceVersion
/// first + i + 1, so phases starting at different `first` send new objects); returns the sorted
/// round trips and the errors.
async fn latency_phase(
    targets: &[(PathBuf, String)],
    rate: u64,
    seconds: u64,
    first: usize,
) -> (Vec<Duration>, usize) {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let Some((sock, node)) = targets.get(i % targets.len().max(1)).cloned() else {
            break;
        };
        let i = first + i;
        let msg = Message::new(
            module::EDGECONTROLLER,
            group::RESOURCE,
            op::UPDATE,
            format!("node/{node}/default/configmap/cm-{i}"),
            serde_json::json!({"kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}}),
        )
        .with_resource_version((i + 1).to_string());
        let (lat, errors) = (lat.clone(), errors.clone());
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
    (l, errors.load(Ordering::Relaxed))
}

fn print_latency(what: &str, l: &[Duration], errors: usize, rate: u64) {
    println!(
        "{what}: cloud->edge->ack latency over {} messages at {rate} msg/s: p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}  errors {errors}   (target p99 <= 20 ms at 1,000 msg/s)",
        l.len(),
        pct(l, 0.50),
        pct(l, 0.90),
        pct(l, 0.99),
        l.last().copied().unwrap_or_default(),
    );
}

async fn wait_listening(cloud: &Cloud, dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(&cloud.ws).await.is_err() {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "cloudcore did not listen on {} (see {}/cloudcore.log)",
                cloud.ws,
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}

/// One TLS client configuration per simulated node `bench-<i>`.
fn node_tls(ca: &ke_pki::Ca, nodes: usize) -> anyhow::Result<Vec<Arc<rustls::ClientConfig>>> {
    println!("issuing {nodes} node certificates…");
    let ca_pem = ca.cert_pem().as_bytes().to_vec();
    let mut tls = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let pair = ca.issue_node(&format!("bench-{i}"))?;
        let material =
            ke_pki::tls::TlsMaterial::from_pem(&ca_pem, pair.cert_pem.as_bytes(), pair.key_pem.as_bytes())?;
        tls.push(ke_pki::tls::client_config_from(material)?);
    }
    Ok(tls)
}

/// Starts the simulated nodes; node i gets `servers(i)`. Returns the count of nodes that gave up.
async fn connect_nodes(
    args: &Args,
    tls: Vec<Arc<rustls::ClientConfig>>,
    servers: impl Fn(usize) -> Vec<String>,
    received: &Arc<AtomicUsize>,
    arrivals: &Arrivals,
) -> anyhow::Result<Arc<AtomicUsize>> {
    let failed = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    for (i, tls) in tls.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await?;
        let (servers, received, failed) = (servers(i), received.clone(), failed.clone());
        let arrivals = arrivals.clone();
        let hb = Duration::from_secs(args.heartbeat);
        tokio::spawn(async move {
            let node = format!("bench-{i}");
            // Hold the permit only for the handshake: released once the first keepalive went out.
            let fut = simulated_edge(servers, node.clone(), tls, hb, received, arrivals);
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
    Ok(failed)
}

/// Sum of `cloudhub_connected_nodes` over `clouds` (a dead one counts 0).
async fn connected_on(clouds: &[&Cloud]) -> f64 {
    let mut n = 0.0;
    for c in clouds {
        n += metric(&c.metrics, "cloudhub_connected_nodes")
            .await
            .unwrap_or(0.0);
    }
    n
}

/// Polls until `clouds` serve `want` nodes (or `failed` + served reach it, or `limit` passes);
/// returns what they serve. With `progress`, prints a line every `progress`.
async fn wait_connected(
    clouds: &[&Cloud],
    want: usize,
    failed: &AtomicUsize,
    limit: Duration,
    progress: Option<Duration>,
) -> f64 {
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let mut connected = 0.0;
    let mut next_line = progress.map(|p| t0 + p);
    while Instant::now() < deadline {
        connected = connected_on(clouds).await;
        if connected as usize + failed.load(Ordering::Relaxed) >= want {
            break;
        }
        if let (Some(at), Some(p)) = (next_line, progress)
            && Instant::now() >= at
        {
            println!(
                "  +{:.0?}: {connected} of {want} served ({} connection attempts so far, {} failed)",
                t0.elapsed(),
                ATTEMPTS.load(Ordering::Relaxed),
                FAILED_ATTEMPTS.load(Ordering::Relaxed)
            );
            next_line = Some(at + p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    connected
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match ke_benchkit::raise_open_file_limit() {
        Ok(n) if (n as usize) < args.nodes + 100 => {
            eprintln!("warning: the open-file limit ({n}) is below the node count: some nodes will fail")
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: {e}"),
    }
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
    let r = if args.ha {
        ha::run(&args, &dir, &ca).await
    } else {
        single(&args, &dir, &ca).await
    };
    if args.workdir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    r
}

/// One cloudcore (plain or controller mode).
async fn single(args: &Args, dir: &Path, ca: &ke_pki::Ca) -> anyhow::Result<()> {
    let cloud = start_cloud(args, dir, ca, None)?;
    let pid = cloud.proc.pid();
    wait_listening(&cloud, dir).await?;
    let rss_idle = rss(pid).0;
    println!("cloudcore pid {pid}, idle RSS {} KB", rss_idle);
    let tls = node_tls(ca, args.nodes)?;

    println!("connecting {} nodes…", args.nodes);
    let kube = match &args.kubeconfig {
        Some(kc) => Some(controller::setup(kc, args.nodes).await?),
        None => None,
    };
    let arrivals: Arrivals = Arc::default();
    let received = Arc::new(AtomicUsize::new(0));
    let t_connect = Instant::now();
    let failed = connect_nodes(args, tls, |_| vec![cloud.ws.clone()], &received, &arrivals).await?;
    let limit = Duration::from_secs(60 + args.nodes as u64 / 50);
    let connected = wait_connected(&[&cloud], args.nodes, &failed, limit, None).await;
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
    let nodes = (connected as usize).max(1);
    let targets: Vec<(PathBuf, String)> = (0..nodes)
        .map(|i| (cloud.sock.clone(), format!("bench-{i}")))
        .collect();
    let (l, errors) = latency_phase(&targets, args.rate, args.seconds, 0).await;
    print_latency("one cloudcore", &l, errors, args.rate);
    println!(
        "edges received {} messages; cloudcore RSS now {} KB",
        received.load(Ordering::Relaxed),
        rss(pid).0
    );
    drop(cloud);
    Ok(())
}

/// HA mode: two cloudcores, one killed.
mod ha {
    use super::*;

    pub(crate) async fn run(args: &Args, dir: &Path, ca: &ke_pki::Ca) -> anyhow::Result<()> {
        let kc = args.kubeconfig.as_deref().context("--ha needs --kubeconfig")?;
        let client = controller::client(kc).await?;
        let ns = format!("hubbench-{}", std::process::id());
        controller::create_namespace(&client, &ns).await?;
        let r = measure(args, dir, ca, &ns).await;
        controller::delete_namespace(&client, &ns).await;
        r
    }

    async fn measure(args: &Args, dir: &Path, ca: &ke_pki::Ca, ns: &str) -> anyhow::Result<()> {
        let side = |id: &str| HaSide {
            identity: id.to_owned(),
            namespace: ns.to_owned(),
        };
        // One after the other: the first puts the CA into the Secret, the second finds it there.
        let mut a = start_cloud(args, &dir.join("a"), ca, Some(&side("bench-a")))?;
        wait_listening(&a, &dir.join("a")).await?;
        let b = start_cloud(args, &dir.join("b"), ca, Some(&side("bench-b")))?;
        wait_listening(&b, &dir.join("b")).await?;
        let (pa, pb) = (a.proc.pid(), b.proc.pid());
        let (idle_a, idle_b) = (rss(pa).0, rss(pb).0);
        println!(
            "cloudcores a (pid {pa}, idle RSS {idle_a} KB) and b (pid {pb}, idle RSS {idle_b} KB), Leases in namespace {ns}"
        );

        let n = args.nodes;
        let half = n / 2;
        let tls = node_tls(ca, n)?;
        println!("connecting {n} nodes, half to each cloudcore…");
        let (received, arrivals) = (Arc::new(AtomicUsize::new(0)), Arrivals::default());
        let t_connect = Instant::now();
        let (wa, wb) = (a.ws.clone(), b.ws.clone());
        let servers = move |i: usize| {
            if i < half {
                vec![wa.clone(), wb.clone()]
            } else {
                vec![wb.clone(), wa.clone()]
            }
        };
        let failed = connect_nodes(args, tls, servers, &received, &arrivals).await?;
        let limit = Duration::from_secs(60 + n as u64 / 20);
        let connected = wait_connected(&[&a, &b], n, &failed, limit, None).await;
        let on_a = connected_on(&[&a]).await;
        println!(
            "nodes connected: {connected} of {n} in {:.1?} (a {on_a}, b {}), each with its Lease written",
            t_connect.elapsed(),
            connected - on_a
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (ra, rb) = (rss(pa).0, rss(pb).0);
        let per_node = (ra.saturating_sub(idle_a) + rb.saturating_sub(idle_b)) as f64 / connected.max(1.0);
        println!(
            "both cloudcores: RSS a {ra} KB + b {rb} KB with {connected} nodes: {per_node:.1} KB per node above idle   (target <= 30 KB/node)"
        );

        let targets = |f: &dyn Fn(usize) -> PathBuf| -> Vec<(PathBuf, String)> {
            (0..n).map(|i| (f(i), format!("bench-{i}"))).collect()
        };
        let (sa, sb) = (a.sock.clone(), b.sock.clone());
        let before = targets(&|i| if i < half { sa.clone() } else { sb.clone() });
        println!(
            "latency phase with both up: {} msg/s for {} s…",
            args.rate, args.seconds
        );
        let (l, errors) = latency_phase(&before, args.rate, args.seconds, 0).await;
        print_latency("before failover", &l, errors, args.rate);

        let takeovers_before = metric(&b.metrics, "cloudhub_lease_takeovers")
            .await
            .unwrap_or(0.0);
        println!(
            "killing cloudcore a (SIGKILL) with {on_a} nodes (leaseQPS {}, leaseDurationSeconds 15)…",
            args.lease_qps
        );
        let t_kill = Instant::now();
        a.proc.kill_now()?;
        let served = wait_connected(
            &[&b],
            n,
            &failed,
            Duration::from_secs(300),
            Some(Duration::from_secs(2)),
        )
        .await;
        let rehome = t_kill.elapsed();
        let takeovers = metric(&b.metrics, "cloudhub_lease_takeovers")
            .await
            .unwrap_or(0.0)
            - takeovers_before;
        println!(
            "re-home: cloudcore b serves {served} of {n} nodes {rehome:.2?} after the kill ({takeovers} Lease takeovers, {on_a} nodes moved)   (target: 5,000 nodes re-homed <= 30 s)"
        );
        for (n, why) in failure_tally().into_iter().take(5) {
            println!("  {n} connection attempts ended with: {why}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rb = rss(pb).0;
        println!(
            "cloudcore b: RSS {rb} KB with {served} nodes: {:.1} KB per node above idle   (target <= 30 KB/node)",
            rb.saturating_sub(idle_b) as f64 / served.max(1.0)
        );
        let after = targets(&|_| sb.clone());
        println!(
            "latency phase after failover: {} msg/s for {} s…",
            args.rate, args.seconds
        );
        let (l, errors) = latency_phase(
            &after,
            args.rate,
            args.seconds,
            (args.rate * args.seconds) as usize,
        )
        .await;
        print_latency("after failover", &l, errors, args.rate);
        println!("edges received {} messages", received.load(Ordering::Relaxed));
        drop(b);
        if served < n as f64 {
            bail!("{} nodes never re-homed", n as f64 - served);
        }
        Ok(())
    }
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

    /// A client of the API server of `kubeconfig`.
    pub(crate) async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
        let kc =
            Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    pub(crate) async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(())
    }

    pub(crate) async fn delete_namespace(client: &kube::Client, name: &str) {
        if let Err(e) = Api::<Namespace>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await
        {
            eprintln!("deleting namespace {name}: {e}");
        }
    }

    /// Connects, creates the namespace and one edge Node per simulated node.
    pub(crate) async fn setup(kubeconfig: &Path, nodes: usize) -> anyhow::Result<Kube> {
        let run = std::process::id();
        let k = Kube {
            client: client(kubeconfig).await?,
            ns: format!("hubbench-{run}"),
            label: format!("hubbench={run}"),
        };
        let pp = PostParams::default();
        create_namespace(&k.client, &k.ns).await?;
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
        delete_namespace(&k.client, &k.ns).await;
        let dp = DeleteParams::default();
        let lp = ListParams::default().labels(&k.label);
        if let Err(e) = Api::<Node>::all(k.client.clone())
            .delete_collection(&dp, &lp)
            .await
        {
            eprintln!("deleting nodes {}: {e}", k.label);
        }
    }
}
