//! The reliability suite: long-running fault scenarios against the real binaries, the real local
//! Kubernetes control plane and the containerd that `hack/test.sh` sets up. Each scenario prints
//! its counts on lines starting with `reliability <scenario>:`.
//!
//! By default each runs in a short form (part of the normal test run). `hack/reliability.sh` runs
//! the full forms (`KE_RELIABILITY_FULL=1`); every size can also be set on its own:
//!
//! | scenario     | variable                  | short | full  |
//! |--------------|---------------------------|-------|-------|
//! | soak         | `KE_SOAK_SECS`            | 90    | 1800  |
//! |              | `KE_SOAK_PODS`            | 5     | 50    |
//! |              | `KE_SOAK_DEVICES`         | 4     | 20    |
//! |              | `KE_SOAK_TWIN_RATE` (/s)  | 10    | 10    |
//! |              | `KE_SOAK_FLAP_SECS`       | 20    | 60    |
//! |              | `KE_SOAK_CM_SECS`         | 5     | 10    |
//! |              | `KE_SOAK_SAMPLE_SECS`     | 10    | 60    |
//! |              | `KE_SOAK_WARMUP_SECS`     | 30    | 300   |
//! | crash loop   | `KE_CRASH_ROUNDS`         | 3     | 100   |
//! | cloud crash  | `KE_CLOUD_CRASH_ROUNDS`   | 1     | 20    |
//! |              | `KE_CLOUD_CRASH_OBJECTS`  | 200   | 1000  |
//!
//! `KE_RELIABILITY_SEED` fixes the random kill moments (the seed used is printed).
//!
//! Memory and fd figures are printed next to their goals, not asserted (they are measurements);
//! what is asserted is behaviour: nothing acknowledged is lost, nothing is duplicated, every edge
//! converges, the database is intact.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use ke_testkit::k8s::LocalK8s;
use ke_testkit::{Daemon, bin, eventually, free_tcp_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::cluster::{Cluster, Edge, wait_metric};
use crate::edged_k8s::Cleanup;
use crate::netsplit;

/// A size: the variable when set, else the full or the short default.
fn size(var: &str, short: u64, full: u64) -> u64 {
    if let Some(v) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        return v;
    }
    if std::env::var("KE_RELIABILITY_FULL").as_deref() == Ok("1") {
        full
    } else {
        short
    }
}

/// xorshift64*: random kill moments without a dependency; the seed is printed so a run can be
/// repeated.
struct Rng(u64);

impl Rng {
    fn from_env(scenario: &str) -> Self {
        let seed = std::env::var("KE_RELIABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        println!("reliability {scenario}: seed {seed} (KE_RELIABILITY_SEED)");
        Self(seed)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(lo + r % (hi - lo).max(1))
    }
}

// --- a link that can be cut ---------------------------------------------------------------------

/// A TCP relay between edgecore and cloudhub. [`cut`](Self::cut) drops every relayed connection
/// and refuses new ones until [`restore`](Self::restore): the link flaps the way a real one does
/// (the edge sees its connection die and redials), with no iptables rule.
struct Relay {
    addr: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the edge sees a reset
                }
                let upstream = upstream.clone();
                let t = tokio::spawn(async move {
                    if let Ok(mut u) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut u).await;
                    }
                });
                let mut c = conns2.lock().unwrap();
                c.retain(|h| !h.is_finished());
                c.push(t.abort_handle());
            }
        });
        Self {
            addr,
            up,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

// --- process figures ----------------------------------------------------------------------------

/// (VmRSS in kB, open fds) of `pid`.
fn proc_stats(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    edge: (u64, usize),
    cloud: (u64, usize),
}

// --- a mapper: twin updates over MQTT, counting the edge's results ------------------------------

/// One MQTT connection serving several devices, as a mapper does: it publishes `twin/update`s
/// with increasing values and records, per device, the highest value the edge acknowledged with a
/// `twin/update/result`.
struct Mapper {
    client: AsyncClient,
    acked: Arc<Mutex<HashMap<String, u64>>>,
    results: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Mapper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mapper {
    async fn connect(port: u16, name: &str) -> Self {
        let mut o = MqttOptions::new(name, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(o, 1024);
        let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let results = Arc::new(AtomicU64::new(0));
        let (a2, r2, c2) = (acked.clone(), results.clone(), client.clone());
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    // (Re)connected: the session is clean, subscribe again.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c2
                            .subscribe("$hw/events/device/+/twin/update/result", QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(v) = serde_json::from_slice::<Value>(&p.payload) else {
                            continue;
                        };
                        let Some((dev, n)) = v["event_id"]
                            .as_str()
                            .and_then(|e| e.rsplit_once('#'))
                            .and_then(|(d, n)| Some((d.to_owned(), n.parse::<u64>().ok()?)))
                        else {
                            continue;
                        };
                        r2.fetch_add(1, Ordering::Relaxed);
                        let mut a = a2.lock().unwrap();
                        let e = a.entry(dev).or_default();
                        *e = (*e).max(n);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .expect("mapper subscribed");
        Self {
            client,
            acked,
            results,
            task,
        }
    }

    /// Publishes value `n` of device `dev`'s `temperature`.
    async fn update(&self, dev: &str, n: u64) -> bool {
        let p = format!(
            r#"{{"event_id":"{dev}#{n}","timestamp":0,"twin":{{"temperature":{{"actual":{{"value":"{n}"}},"metadata":{{"type":"Updated"}}}}}}}}"#
        );
        self.client
            .publish(
                format!("$hw/events/device/{dev}/twin/update"),
                QoS::AtLeastOnce,
                false,
                p.into_bytes(),
            )
            .await
            .is_ok()
    }

    fn acked(&self, dev: &str) -> u64 {
        self.acked.lock().unwrap().get(dev).copied().unwrap_or(0)
    }
}

/// Publishes updates round-robin over `devices` at `rate` per second until `stop`; returns the
/// last value sent per device.
fn twin_traffic(
    mapper: Arc<Mapper>,
    devices: Vec<String>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<HashMap<String, u64>> {
    tokio::spawn(async move {
        let mut last: HashMap<String, u64> = HashMap::new();
        let period = Duration::from_micros(1_000_000 / rate.max(1));
        let mut tick = tokio::time::interval(period);
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let dev = &devices[(n % devices.len() as u64) as usize];
            let v = n / devices.len() as u64 + 1;
            if mapper.update(dev, v).await {
                last.insert(dev.clone(), v);
            }
            n += 1;
        }
        last
    })
}

// --- Kubernetes objects -------------------------------------------------------------------------

fn edged_section(node: &str) -> String {
    format!(
        "  edged:\n    hostnameOverride: {node}\n    nodeIP: 127.0.0.1\n    runtimeType: remote\n    \
         remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock\n    \
         remoteImageEndpoint: unix:///run/containerd/containerd.sock\n    \
         podSandboxImage: docker.io/kubeedge/pause:3.6\n    imageGCHighThreshold: 100\n    nodeStatusUpdateFrequency: 5\n"
    )
}

/// A real pod for edged: busybox sleeping, mounting config map `cm` when given.
fn real_pod(ns: &str, node: &str, name: &str, cm: Option<&str>) -> String {
    let (vols, mounts) = match cm {
        Some(cm) => (
            format!("  volumes: [{{name: cfg, configMap: {{name: {cm}}}}}]\n"),
            "    volumeMounts: [{name: cfg, mountPath: /cfg}]\n".to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  nodeName: {node}\n  \
         automountServiceAccountToken: false\n  terminationGracePeriodSeconds: 0\n{vols}  containers:\n  - name: main\n    \
         image: docker.io/kubeedge/busybox:test\n    command: [sleep, '1000000']\n{mounts}"
    )
}

/// A device model with one `temperature` twin and `devices` devices bound to `node`.
fn devices_yaml(ns: &str, node: &str, devices: &[String]) -> String {
    let mut y = format!(
        "---\napiVersion: devices.kubeedge.io/v1alpha1\nkind: DeviceModel\nmetadata: {{name: sensor, namespace: {ns}}}\n\
         spec:\n  properties:\n  - name: temperature\n    type:\n      string: {{accessMode: ReadWrite, defaultValue: '0'}}\n"
    );
    for d in devices {
        y.push_str(&format!(
            "---\napiVersion: devices.kubeedge.io/v1alpha1\nkind: Device\nmetadata: {{name: {d}, namespace: {ns}}}\n\
             spec:\n  deviceModelRef: {{name: sensor}}\n  nodeSelector:\n    nodeSelectorTerms:\n    - matchExpressions:\n      \
             - {{key: '', operator: In, values: [{node}]}}\nstatus:\n  twins:\n  - propertyName: temperature\n    \
             desired: {{value: '0', metadata: {{type: string}}}}\n"
        ));
    }
    y
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// `name` → (uid, phase) of the pods in `ns`.
fn api_pods(k8s: &LocalK8s, ns: &str) -> BTreeMap<String, (String, String, String)> {
    let out = k8s.kubectl_ok(&["get", "pods", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let m = &p["metadata"];
            (
                m["name"].as_str().unwrap_or_default().to_owned(),
                (
                    m["uid"].as_str().unwrap_or_default().to_owned(),
                    m["resourceVersion"].as_str().unwrap_or_default().to_owned(),
                    p["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

/// The twin value of `dev`'s `temperature` in the edge's database.
fn edge_twin(edge: &Edge, dev: &str) -> Option<u64> {
    let db = ke_store::rusqlite::Connection::open(&edge.db).ok()?;
    let v: String = db
        .query_row(
            "SELECT actual FROM device_twin WHERE deviceid = ?1 AND name = 'temperature'",
            [dev],
            |r| r.get(0),
        )
        .ok()?;
    v.parse().ok()
}

fn edge_devices(edge: &Edge, prefix: &str) -> usize {
    let Ok(db) = ke_store::rusqlite::Connection::open(&edge.db) else {
        return 0;
    };
    db.query_row(
        "SELECT COUNT(*) FROM device WHERE id LIKE ?1",
        [format!("{prefix}%")],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
    .unwrap_or(0)
}

/// Per pod uid: (ready sandboxes, running containers by name) of `node` in containerd.
async fn cri_view(node: &str) -> HashMap<String, (usize, HashMap<String, Vec<String>>)> {
    let c = CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60)).unwrap();
    let sel = HashMap::from([("kubeedge.io/node".to_owned(), node.to_owned())]);
    let mut out: HashMap<String, (usize, HashMap<String, Vec<String>>)> = HashMap::new();
    for sb in c
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: sel.clone(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default()
    {
        if sb.state == api::PodSandboxState::SandboxReady as i32
            && let Some(m) = sb.metadata
        {
            out.entry(m.uid).or_default().0 += 1;
        }
    }
    for k in c
        .list_containers(Some(api::ContainerFilter {
            label_selector: sel,
            ..Default::default()
        }))
        .await
        .unwrap_or_default()
    {
        if k.state != api::ContainerState::ContainerRunning as i32 {
            continue;
        }
        let uid = k.labels.get("io.kubernetes.pod.uid").cloned().unwrap_or_default();
        let name = k.metadata.map(|m| m.name).unwrap_or_default();
        out.entry(uid).or_default().1.entry(name).or_default().push(k.id);
    }
    out
}

/// Running container ids of `node`.
async fn running_ids(node: &str) -> HashSet<String> {
    cri_view(node)
        .await
        .into_values()
        .flat_map(|(_, by_name)| by_name.into_values().flatten())
        .collect()
}

/// (sandboxes, containers) beyond one per pod / one per container name: duplicates.
fn duplicates(view: &HashMap<String, (usize, HashMap<String, Vec<String>>)>) -> (usize, usize) {
    let sandboxes = view.values().map(|(n, _)| n.saturating_sub(1)).sum();
    let containers = view
        .values()
        .flat_map(|(_, by_name)| by_name.values().map(|ids| ids.len().saturating_sub(1)))
        .sum();
    (sandboxes, containers)
}

fn edgecore_args(c: &Cluster, node: &str) -> String {
    c.path()
        .join(format!("edgecore-{node}.yaml"))
        .to_str()
        .unwrap()
        .to_owned()
}

// --- soak ---------------------------------------------------------------------------------------

/// Pods, devices and a config map on one edge whose link flaps, for a long time: nothing is lost,
/// no pod is re-created, and edgecore's and cloudcore's memory and fds are sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_pods_devices_config_and_a_flapping_link() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let secs = size("KE_SOAK_SECS", 90, 1800);
    let n_pods = size("KE_SOAK_PODS", 5, 50) as usize;
    let n_devices = size("KE_SOAK_DEVICES", 4, 20) as usize;
    let rate = size("KE_SOAK_TWIN_RATE", 10, 10);
    let flap_every = Duration::from_secs(size("KE_SOAK_FLAP_SECS", 20, 60));
    let cm_every = Duration::from_secs(size("KE_SOAK_CM_SECS", 5, 10));
    let sample_every = Duration::from_secs(size("KE_SOAK_SAMPLE_SECS", 10, 60));
    let warmup = Duration::from_secs(size("KE_SOAK_WARMUP_SECS", 30, 300));
    let down_for = Duration::from_secs(5).min(flap_every / 2);

    let id = std::process::id();
    let (node, ns) = (format!("soak-edge-{id}"), format!("soak-{id}"));
    let _cleanup = Cleanup(node.clone());
    let c = Cluster::new(&[&node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let relay = Arc::new(Relay::start(cloud.ws.clone()).await);
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let edge = c.edge_custom(
        &node,
        &relay.addr,
        &cloud.quic,
        false,
        &eventbus,
        true,
        &edged_section(&node),
    );
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;

    // --- the working set ---------------------------------------------------------------------
    let devices: Vec<String> = (0..n_devices).map(|i| format!("soak-dev-{i}")).collect();
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: soak-cm, namespace: {ns}}}\ndata: {{rev: '0'}}\n"
    ));
    yaml.push_str(&devices_yaml(&ns, &node, &devices));
    k8s.apply(&yaml);
    let pods: String = (0..n_pods)
        .map(|i| real_pod(&ns, &node, &format!("soak-{i}"), Some("soak-cm")))
        .collect();
    eventually(Duration::from_secs(60), "pods accepted", || {
        let ok = k8s.try_apply(&pods).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(60), "devices at the edge", || {
        let n = edge_devices(&edge, "soak-dev-");
        async move { (n == n_devices).then_some(()) }
    })
    .await;
    let k = k8s.clone();
    let ns2 = ns.clone();
    eventually(Duration::from_secs(240), "all pods Running", || {
        let p = api_pods(&k, &ns2);
        async move { (p.len() == n_pods && p.values().all(|(_, _, ph)| ph == "Running")).then_some(()) }
    })
    .await;
    let containers_at_start = eventually(Duration::from_secs(60), "one container per pod", || {
        let node = node.clone();
        async move {
            let ids = running_ids(&node).await;
            (ids.len() == n_pods).then_some(ids)
        }
    })
    .await;

    // --- traffic: twins, config map, flapping link, sampling ------------------------------------
    let mapper = Arc::new(Mapper::connect(port, &format!("soak-mapper-{id}")).await);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let twins = twin_traffic(mapper.clone(), devices.clone(), rate, stop.clone());
    let cm_updates = {
        let (k, ns, stop) = (k8s.clone(), ns.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rev = 0u64;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(cm_every).await;
                rev += 1;
                let y = format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: soak-cm, namespace: {ns}}}\ndata: {{rev: '{rev}'}}\n"
                );
                let k = k.clone();
                blocking(move || k.apply(&y)).await;
            }
            rev
        })
    };
    let flaps = {
        let (relay, stop) = (relay.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(flap_every - down_for).await;
                if stop.load(Ordering::SeqCst) {
                    return n;
                }
                relay.cut();
                tokio::time::sleep(down_for).await;
                relay.restore();
                n += 1;
            }
        })
    };
    let (edge_pid, cloud_pid) = (edge.daemon.pid(), cloud.daemon.pid());
    let mut samples = Vec::new();
    let end = started + Duration::from_secs(secs);
    loop {
        let (Some(e), Some(cl)) = (proc_stats(edge_pid), proc_stats(cloud_pid)) else {
            panic!("edgecore or cloudcore died during the soak");
        };
        samples.push(Sample {
            at: started.elapsed(),
            edge: e,
            cloud: cl,
        });
        if Instant::now() >= end {
            break;
        }
        tokio::time::sleep(sample_every.min(end.saturating_duration_since(Instant::now()))).await;
    }
    stop.store(true, Ordering::SeqCst);
    let last = twins.await.unwrap();
    let cm_revs = cm_updates.await.unwrap();
    let n_flaps = flaps.await.unwrap();
    relay.restore();
    let sent: u64 = last.values().sum();

    // --- convergence ---------------------------------------------------------------------------
    // Every update acknowledged by the edge (a result each)…
    let acked = eventually(Duration::from_secs(60), "a result for every twin update", || {
        let r = mapper.results.load(Ordering::Relaxed);
        async move { (r >= sent).then_some(r) }
    })
    .await;
    // …its last value on disk…
    for d in &devices {
        assert_eq!(
            edge_twin(&edge, d),
            last.get(d).copied(),
            "{d}: last twin value at the edge"
        );
    }
    // …and in the cloud's Device.
    let k = k8s.clone();
    let ns2 = ns.clone();
    let in_cloud = eventually(
        Duration::from_secs(120),
        "last twin values in the Devices",
        || {
            let o = k.kubectl(&["get", "devices", "-n", &ns2, "-o", "json"]);
            let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
            let at_last = v["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter(|d| {
                            let name = d["metadata"]["name"].as_str().unwrap_or_default();
                            let want = last.get(name).map(u64::to_string);
                            d["status"]["twins"][0]["reported"]["value"]
                                .as_str()
                                .map(str::to_owned)
                                == want
                        })
                        .count()
                })
                .unwrap_or(0);
            async move { (at_last == n_devices).then_some(at_last) }
        },
    )
    .await;
    // The config map's last version at the edge.
    let k = k8s.clone();
    let ns2 = ns.clone();
    eventually(
        Duration::from_secs(60),
        "the config map's last version at the edge",
        || {
            let api_rv = k.kubectl_ok(&[
                "get",
                "configmap",
                "soak-cm",
                "-n",
                &ns2,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ]);
            let at_edge = edge.meta(&format!("{ns2}/configmap/soak-cm")).and_then(|(_, v)| {
                serde_json::from_str::<Value>(&v).ok()?["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned)
            });
            async move { (at_edge.as_deref() == Some(api_rv.trim())).then_some(()) }
        },
    )
    .await;
    // The pods: all running, none re-created.
    let running = api_pods(&k8s, &ns)
        .values()
        .filter(|(_, _, ph)| ph == "Running")
        .count();
    let containers_now = running_ids(&node).await;
    let recreated = containers_now.difference(&containers_at_start).count();

    // --- figures --------------------------------------------------------------------------------
    println!(
        "reliability soak: {}s, {n_pods} pods, {n_devices} devices, {rate} twin updates/s, config map every {}s, \
         link cut for {}s every {}s ({n_flaps} flaps)",
        secs,
        cm_every.as_secs(),
        down_for.as_secs(),
        flap_every.as_secs()
    );
    println!(
        "reliability soak: twin updates sent {sent}, acknowledged by the edge {acked}, lost {} (goal 0); \
         last value in the cloud for {in_cloud}/{n_devices} devices",
        sent.saturating_sub(acked)
    );
    println!("reliability soak: config map updated {cm_revs} times, the edge holds the last version");
    println!("reliability soak: pods running {running}/{n_pods}, containers re-created {recreated} (goal 0)");
    println!("reliability soak: minute  edgecore RSS kB  fds  cloudcore RSS kB  fds");
    for s in &samples {
        println!(
            "reliability soak: {:>6.1}  {:>15}  {:>3}  {:>16}  {:>3}",
            s.at.as_secs_f64() / 60.0,
            s.edge.0,
            s.edge.1,
            s.cloud.0,
            s.cloud.1
        );
    }
    let base = samples
        .iter()
        .find(|s| s.at >= warmup)
        .or(samples.last())
        .copied();
    if let (Some(b), Some(l)) = (base, samples.last()) {
        for (who, first, last) in [("edgecore", b.edge, l.edge), ("cloudcore", b.cloud, l.cloud)] {
            println!(
                "reliability soak: {who} after warm-up ({:.1} min): RSS {} -> {} kB (growth {} kB, goal <= 1024), \
                 fds {} -> {} (goal flat)",
                b.at.as_secs_f64() / 60.0,
                first.0,
                last.0,
                last.0 as i64 - first.0 as i64,
                first.1,
                last.1
            );
        }
    }
    assert_eq!(acked, sent, "twin updates lost");
    assert_eq!(running, n_pods, "pods not running at the end");
    assert_eq!(
        recreated, 0,
        "containers re-created: {containers_now:?} vs {containers_at_start:?}"
    );

    drop(mapper);
    drop(edge);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
}

// --- crash loop ---------------------------------------------------------------------------------

/// `kill -9` edgecore at random moments during twin and pod traffic, many times. After each crash:
/// the database passes `PRAGMA integrity_check`; every twin update the edge acknowledged is on disk;
/// every object version the cloud recorded as acknowledged (ObjectSync) is in the database; after
/// the restart the edge converges and no pod has two sandboxes or a container twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_kill_9_edgecore_during_twin_and_pod_traffic() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let rounds = size("KE_CRASH_ROUNDS", 3, 100);
    let mut rng = Rng::from_env("crash loop");
    let id = std::process::id();
    let (node, ns) = (format!("crash-edge-{id}"), format!("crash-{id}"));
    let _cleanup = Cleanup(node.clone());
    let c = Cluster::new(&[&node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let mut edge = c.edge_custom(
        &node,
        &cloud.ws,
        &cloud.quic,
        false,
        &eventbus,
        true,
        &edged_section(&node),
    );
    let config = edgecore_args(&c, &node);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;

    let devices: Vec<String> = (0..2).map(|i| format!("crash-dev-{i}")).collect();
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ConfigMap\n\
         metadata: {{name: crash-cm, namespace: {ns}}}\ndata: {{rev: '0'}}\n{}",
        devices_yaml(&ns, &node, &devices)
    ));
    // Three pods live at any time: round r adds crash-<r+3> and deletes crash-<r>.
    let pods: String = (0..3)
        .map(|i| real_pod(&ns, &node, &format!("crash-{i}"), Some("crash-cm")))
        .collect();
    eventually(Duration::from_secs(60), "pods accepted", || {
        let ok = k8s.try_apply(&pods).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(60), "devices at the edge", || {
        let n = edge_devices(&edge, "crash-dev-");
        async move { (n == 2).then_some(()) }
    })
    .await;

    let (mut twins_checked, mut syncs_checked, mut max_dups) = (0u64, 0usize, (0usize, 0usize));
    let mut converge_times = Vec::new();
    for round in 0..rounds {
        let mapper = Arc::new(Mapper::connect(port, &format!("crash-mapper-{id}-{round}")).await);
        let stop = Arc::new(AtomicBool::new(false));
        let twins = twin_traffic(mapper.clone(), devices.clone(), 50, stop.clone());
        // Pod traffic: one pod in, one out, and the config map they mount changes.
        let (k, ns2, node2) = (k8s.clone(), ns.clone(), node.clone());
        let pod_traffic = tokio::task::spawn_blocking(move || {
            let y = format!(
                "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: crash-cm, namespace: {ns2}}}\ndata: {{rev: '{}'}}\n",
                real_pod(&ns2, &node2, &format!("crash-{}", round + 3), Some("crash-cm")),
                round + 1
            );
            let _ = k.try_apply(&y);
            let _ = k.kubectl(&[
                "delete",
                "pod",
                "-n",
                &ns2,
                &format!("crash-{round}"),
                "--wait=false",
            ]);
        });
        tokio::time::sleep(rng.millis(300, 4000)).await;
        edge.daemon.kill9();
        stop.store(true, Ordering::SeqCst);
        let _ = twins.await;
        pod_traffic.await.unwrap();

        // --- on disk, before anything runs again ----------------------------------------------
        let db = ke_store::rusqlite::Connection::open(&edge.db).unwrap();
        let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok", "round {round}: integrity_check");
        drop(db);
        for d in &devices {
            let acked = mapper.acked(d);
            let on_disk = edge_twin(&edge, d).unwrap_or(0);
            assert!(
                on_disk >= acked,
                "round {round}: {d}: the edge acknowledged value {acked} but has {on_disk} on disk"
            );
            twins_checked += 1;
        }
        drop(mapper);
        // What the cloud recorded as acknowledged (ObjectSync) is in the database, for every
        // object that still exists.
        let (k, ns2) = (k8s.clone(), ns.clone());
        let (syncs, live) = blocking(move || {
            let o = k.kubectl_ok(&["get", "objectsyncs", "-n", &ns2, "-o", "json"]);
            (serde_json::from_str::<Value>(&o).unwrap(), api_pods(&k, &ns2))
        })
        .await;
        let at_edge = netsplit::edge_state(&edge, &ns);
        for s in syncs["items"].as_array().into_iter().flatten() {
            if !s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("{node}."))
            {
                continue;
            }
            let (kind, name) = (
                s["spec"]["objectKind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase(),
                s["spec"]["objectName"].as_str().unwrap_or_default(),
            );
            let recorded: u64 = s["status"]["objectResourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            let exists = match kind.as_str() {
                "pod" | "pods" => live.contains_key(name),
                "configmap" | "configmaps" => true,
                _ => false,
            };
            if !exists {
                continue;
            }
            let key = format!("{ns}/{}/{name}", kind.trim_end_matches('s'));
            let have: u64 = at_edge.get(&key).and_then(|rv| rv.parse().ok()).unwrap_or(0);
            assert!(
                have >= recorded,
                "round {round}: {key}: the cloud recorded version {recorded} as acknowledged, the edge has {have}"
            );
            syncs_checked += 1;
        }

        // --- restart and converge ---------------------------------------------------------------
        let t = Instant::now();
        edge.daemon = Daemon::start(
            &format!("{node}-{round}"),
            &bin("edgecore"),
            &["--config", &config],
            c.path(),
        );
        let (k, ns2, node2) = (k8s.clone(), ns.clone(), node.clone());
        let dups = eventually(
            Duration::from_secs(180),
            &format!("round {round}: the edge converges"),
            || {
                let (k, ns2, node2) = (k.clone(), ns2.clone(), node2.clone());
                async move {
                    let pods = blocking(move || api_pods(&k, &ns2)).await;
                    let view = cri_view(&node2).await;
                    let dups = duplicates(&view);
                    let all_running = pods.values().all(|(uid, _, phase)| {
                        phase == "Running"
                            && view
                                .get(uid)
                                .is_some_and(|(sb, by_name)| *sb >= 1 && by_name.contains_key("main"))
                    });
                    let uids: HashSet<&String> = pods.values().map(|(uid, _, _)| uid).collect();
                    let no_strays = view.keys().all(|u| uids.contains(u));
                    (all_running && no_strays && pods.len() == 3).then_some(dups)
                }
            },
        )
        .await;
        converge_times.push(t.elapsed());
        max_dups = (max_dups.0.max(dups.0), max_dups.1.max(dups.1));
        assert_eq!(dups, (0, 0), "round {round}: duplicated (sandboxes, containers)");
    }
    converge_times.sort();
    println!(
        "reliability crash loop: {rounds} kill -9 of edgecore during twin (50/s) and pod traffic: integrity_check ok \
         {rounds}/{rounds}; {twins_checked} acknowledged twin values and {syncs_checked} acknowledged object versions \
         found on disk; duplicated sandboxes/containers {}/{}; converged after restart in median {:?}, max {:?}",
        max_dups.0,
        max_dups.1,
        converge_times
            .get(converge_times.len() / 2)
            .copied()
            .unwrap_or_default(),
        converge_times.last().copied().unwrap_or_default()
    );
    drop(edge);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
}

// --- cloud crash --------------------------------------------------------------------------------

/// `kill -9` cloudcore in the middle of a burst of object changes for two edges, many times:
/// every edge converges to exactly the API state each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_crash_kill_9_cloudcore_during_bursts() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let rounds = size("KE_CLOUD_CRASH_ROUNDS", 1, 20);
    let objects = size("KE_CLOUD_CRASH_OBJECTS", 200, 1000) as usize;
    let mut rng = Rng::from_env("cloud crash");
    let id = std::process::id();
    let nodes = [format!("cc-a-{id}"), format!("cc-b-{id}")];
    let c = Cluster::new(&[&nodes[0], &nodes[1]]);
    let mut cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let edges: Vec<Edge> = nodes.iter().map(|n| c.edge(n, &cloud, false)).collect();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "edges connected",
    )
    .await;
    let mut setup = String::new();
    for n in &nodes {
        setup.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  \
             name: {n}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
        ));
    }
    k8s.apply(&setup);
    // Per node: 4/5 pods (p<i> mounts cm-<i>), 1/5 config maps.
    let per_node = objects / nodes.len();
    let n_cms = per_node / 5;
    let n_pods = per_node - n_cms;
    let burst = move |rev: u32| -> String {
        let mut y = String::new();
        for n in &[format!("cc-a-{id}"), format!("cc-b-{id}")] {
            y.extend((0..n_cms).map(|i| netsplit::configmap(n, i, rev)));
            y.extend((0..n_pods).map(|i| netsplit::pod(n, n, i, rev)));
        }
        y
    };
    eventually(Duration::from_secs(60), "namespaces ready", || {
        let ok = k8s.try_apply(&netsplit::pod(&nodes[0], &nodes[0], 0, 0)).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let mut times = Vec::new();
    for round in 0..rounds as u32 {
        let (k, y) = (k8s.clone(), burst(round));
        let apply = tokio::task::spawn_blocking(move || k.apply(&y));
        tokio::time::sleep(rng.millis(500, 8000)).await;
        cloud.daemon.kill9();
        let t = Instant::now();
        tokio::time::sleep(rng.millis(0, 2000)).await;
        cloud.restart(c.path());
        apply.await.unwrap();
        for (n, e) in nodes.iter().zip(&edges) {
            netsplit::converge(&k8s, e, n, &format!("round {round}: {n}")).await;
        }
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "reliability cloud crash: {rounds} kill -9 of cloudcore during bursts of {} object changes for 2 edges: \
         both edges converged every time; crash to convergence median {:?}, max {:?}",
        per_node * nodes.len(),
        times.get(times.len() / 2).copied().unwrap_or_default(),
        times.last().copied().unwrap_or_default()
    );
    drop(edges);
    for n in &nodes {
        let _ = k8s.kubectl(&["delete", "node", n, "--wait=false"]);
        let _ = k8s.kubectl(&["delete", "namespace", n, "--wait=false"]);
    }
}

#[test]
fn sizes_follow_the_environment() {
    let full = std::env::var("KE_RELIABILITY_FULL").as_deref() == Ok("1");
    assert_eq!(
        size("KE_RELIABILITY_TEST_UNSET_VARIABLE", 3, 100),
        if full { 100 } else { 3 }
    );
    let mut r = Rng(7);
    let draws: HashSet<u128> = (0..100)
        .map(|_| {
            let d = r.millis(300, 400);
            assert!((300..400).contains(&(d.as_millis() as u64)), "{d:?}");
            d.as_millis()
        })
        .collect();
    assert!(draws.len() > 50, "not random: {draws:?}");
}
