//! cloudcore HA (`modules.cloudhub.ha`) against the real local control plane: two cloudcores,
//! three edgecores in network namespaces of their own, each edge listing both cloudcores; and one
//! edgecore whose edged runs its pods on containerd, to count pod starts across a failover.
//!
//! Each test uses a namespace of its own for the Leases and the CA Secret (as a fresh cluster
//! would have), and the admin kubeconfig (cloudcore's RBAC Role covers namespace `kubeedge`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use ke_testkit::k8s::LocalK8s;
use ke_testkit::netns::NetNs;
use ke_testkit::{Daemon, Pki, bin, eventually, free_tcp_port};
use serde_json::Value;

use crate::cluster::{Cluster, metric, wait_metric};
use crate::netsplit::{api_state, apply_all, configmap, converge, edge_state, force_delete_pods, pod};

struct HaCloud {
    daemon: Daemon,
    port: u16,
    metrics: String,
}

/// A cloudcore in HA mode with its files under `dir` (CA and server certificate as given: when
/// the paths do not exist, cloudcore takes the CA from the Secret or creates it).
fn ha_cloud(dir: &Path, identity: &str, ha_ns: &str, k8s: &LocalK8s, tls: [PathBuf; 4]) -> HaCloud {
    std::fs::create_dir_all(dir).unwrap();
    let (port, m) = (free_tcp_port(), free_tcp_port());
    let [ca, ca_key, crt, key] = tls.map(|p| p.display().to_string());
    let cfg = format!(
        "apiVersion: cloudcore.config.kubeedge.io/v1alpha1
kind: CloudCore
metricsAddress: 127.0.0.1:{m}
kubeAPIConfig:
  kubeConfig: {kubeconfig}
modules:
  cloudhub:
    keepaliveInterval: 30
    nodeLimit: 10
    tlsCAFile: {ca}
    tlsCAKeyFile: {ca_key}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    queueStore: \"\"
    ha:
      enable: true
      identity: {identity}
      namespace: {ha_ns}
      leaseDurationSeconds: 6
      advertiseAddress: [127.0.0.1]
    quic:
      enable: false
    unixsocket:
      enable: false
    websocket:
      enable: true
      address: 0.0.0.0
      port: {port}
",
        kubeconfig = k8s.admin_kubeconfig.display(),
    );
    let config = dir.join("cloudcore.yaml");
    std::fs::write(&config, cfg).unwrap();
    let daemon = Daemon::start(
        &format!("cloudcore-{identity}"),
        &bin("cloudcore"),
        &["--config", config.to_str().unwrap()],
        dir,
    );
    HaCloud {
        daemon,
        port,
        metrics: format!("127.0.0.1:{m}"),
    }
}

/// Cloudcores `a` and `b` in HA mode with `c`'s CA and server certificate, Leases in `ha_ns`,
/// once both serve metrics.
async fn ha_pair(c: &Cluster, ha_ns: &str, k8s: &LocalK8s) -> (HaCloud, HaCloud) {
    let tls = || {
        [
            c.pki.ca(),
            c.pki.dir.join("ca/rootCA.key"),
            c.pki.cert("server"),
            c.pki.key("server"),
        ]
    };
    let a = ha_cloud(&c.path().join("a"), "a", ha_ns, k8s, tls());
    let b = ha_cloud(&c.path().join("b"), "b", ha_ns, k8s, tls());
    for cloud in [&a, &b] {
        eventually(Duration::from_secs(60), "cloudcore metrics up", || {
            let addr = cloud.metrics.clone();
            async move { metric(&addr, "cloudhub_connected_nodes").await }
        })
        .await;
    }
    (a, b)
}

/// `holderIdentity` of every node Lease in `ha_ns`, by node.
fn node_lease_holders(k8s: &LocalK8s, ha_ns: &str) -> std::collections::BTreeMap<String, String> {
    let out = k8s.kubectl_ok(&[
        "get",
        "leases",
        "-n",
        ha_ns,
        "-l",
        "kubeedge.io/lease=node",
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["metadata"]["labels"]["kubeedge.io/node"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

async fn connected(addr: &str) -> f64 {
    metric(addr, "cloudhub_connected_nodes").await.unwrap_or(0.0)
}

const PER_NODE: usize = 50;
const T: Duration = Duration::from_secs(90);

// Multi-threaded: the re-home timer runs while the test thread blocks in kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_fail_over_to_the_other_cloudcore_and_converge() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let nets: Vec<NetNs> = (0..3).filter_map(|_| NetNs::create()).collect();
    if nets.len() < 3 {
        return;
    }
    let id = std::process::id();
    let ha_ns = format!("ha-{id}");
    let nodes: Vec<String> = (0..3).map(|i| format!("ha-edge-{id}-{i}")).collect();
    let nss: Vec<String> = (0..3).map(|i| format!("ha-{id}-{i}")).collect();
    let hosts: Vec<String> = nets.iter().map(|n| n.host_ip().to_string()).collect();
    let node_refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let c = Cluster::new_with_sans(&node_refs, &host_refs);
    let (mut a, b) = ha_pair(&c, &ha_ns, &k8s).await;

    let mut yaml = String::new();
    for (node, ns) in nodes.iter().zip(&nss) {
        yaml += &format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
        );
    }
    k8s.apply(&yaml);
    // Edges 0 and 1 try cloudcore a first, edge 2 tries b first.
    let edges: Vec<_> = (0..3)
        .map(|i| {
            let (first, second) = if i < 2 { (a.port, b.port) } else { (b.port, a.port) };
            let h = &hosts[i];
            c.edge_in_servers(&nets[i], &nodes[i], &format!("{h}:{first},{h}:{second}"))
        })
        .collect();
    eventually(
        Duration::from_secs(60),
        "edges connected (2 on a, 1 on b)",
        || {
            let (ma, mb) = (a.metrics.clone(), b.metrics.clone());
            async move { (connected(&ma).await == 2.0 && connected(&mb).await == 1.0).then_some(()) }
        },
    )
    .await;
    let holders = node_lease_holders(&k8s, &ha_ns);
    assert_eq!(
        holders.get(&nodes[0]).map(String::as_str),
        Some("a"),
        "{holders:?}"
    );
    assert_eq!(
        holders.get(&nodes[2]).map(String::as_str),
        Some("b"),
        "{holders:?}"
    );
    for (node, ns) in nodes.iter().zip(&nss) {
        eventually(Duration::from_secs(60), "namespace ready for pods", || {
            let ok = k8s.try_apply(&pod(ns, node, 0, 0)).is_ok();
            async move { ok.then_some(()) }
        })
        .await;
    }

    // --- the working set: 50 pods per node (the first mount cm-<i>) and 30 config maps ---------
    for (node, ns) in nodes.iter().zip(&nss) {
        apply_all(&k8s, (0..30).map(|i| configmap(ns, i, 0)));
        apply_all(&k8s, (0..PER_NODE).map(|i| pod(ns, node, i, 0)));
    }
    for (ns, edge) in nss.iter().zip(&edges) {
        converge(&k8s, edge, ns, "working set").await;
    }

    // --- 300 changes, cloudcore a killed -9 in the middle -------------------------------------
    for (node, ns) in nodes.iter().zip(&nss) {
        apply_all(&k8s, (30..55).map(|i| configmap(ns, i, 0))); // 25 creates
        apply_all(&k8s, (25..PER_NODE).map(|i| pod(ns, node, i, 1))); // 25 updates
    }
    let killed = Instant::now();
    a.daemon.kill9();
    let rehome = {
        let mb = b.metrics.clone();
        tokio::spawn(async move {
            wait_metric(
                &mb,
                "cloudhub_connected_nodes",
                |v| v == 3.0,
                "every edge on cloudcore b",
            )
            .await;
            killed.elapsed()
        })
    };
    for (node, ns) in nodes.iter().zip(&nss) {
        apply_all(&k8s, (PER_NODE..PER_NODE + 25).map(|i| pod(ns, node, i, 0))); // 25 creates
        force_delete_pods(&k8s, ns, 0..25); // 25 deletes
    }
    let rehomed = rehome.await.unwrap();
    for (ns, edge) in nss.iter().zip(&edges) {
        let state = converge(&k8s, edge, ns, "after the failover").await;
        assert_eq!(state, api_state(&k8s, ns));
        assert_eq!(edge_state(edge, ns).len(), state.len());
    }
    let converged = killed.elapsed();
    let holders = node_lease_holders(&k8s, &ha_ns);
    for n in &nodes {
        assert_eq!(holders.get(n).map(String::as_str), Some("b"), "{holders:?}");
    }
    let takeovers = metric(&b.metrics, "cloudhub_lease_takeovers_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(takeovers, 2.0, "cloudcore b took the two nodes of a over");
    eprintln!(
        "ha failover: 2 nodes re-homed on cloudcore b {:.1}s after kill -9 of a; 3 edges converged after {:.1}s (300 changes, {} objects per edge)",
        rehomed.as_secs_f64(),
        converged.as_secs_f64(),
        api_state(&k8s, &nss[0]).len()
    );

    drop(edges);
    let mut del = vec!["delete", "--wait=false", "node"];
    del.extend(node_refs.iter().copied());
    k8s.kubectl_ok(&del);
    // Deleted nodes leave no Lease behind.
    eventually(
        Duration::from_secs(30),
        "node Leases removed with their nodes",
        || {
            let left = node_lease_holders(&k8s, &ha_ns);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
    let mut del_ns = vec!["delete", "--wait=false", "namespace", ha_ns.as_str()];
    del_ns.extend(nss.iter().map(String::as_str));
    k8s.kubectl_ok(&del_ns);
}

/// Two cloudcores on a fresh cluster (a namespace with no CA Secret) and no CA files, started at
/// the same moment: exactly one CA results, both use it, and an edge with a certificate from it
/// is served by either.
#[tokio::test]
async fn cloudcores_started_together_share_one_ca() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let ha_ns = format!("ha-ca-{id}");
    let node = format!("ha-ca-edge-{id}");
    let dir = tempfile::tempdir().unwrap();
    let files = |who: &str| {
        let d = dir.path().join(who);
        [
            d.join("ca/rootCA.crt"),
            d.join("ca/rootCA.key"),
            d.join("certs/server.crt"),
            d.join("certs/server.key"),
        ]
    };
    let a = ha_cloud(&dir.path().join("a"), "a", &ha_ns, &k8s, files("a"));
    let b = ha_cloud(&dir.path().join("b"), "b", &ha_ns, &k8s, files("b"));
    for cloud in [&a, &b] {
        eventually(Duration::from_secs(60), "cloudcore serving", || {
            let up = cloud.daemon.log().contains("cloudhub started");
            async move { up.then_some(()) }
        })
        .await;
    }
    let ca_a = std::fs::read_to_string(&files("a")[0]).unwrap();
    let ca_b = std::fs::read_to_string(&files("b")[0]).unwrap();
    assert_eq!(ca_a, ca_b, "the two cloudcores use different CAs");
    let out = k8s.kubectl_ok(&[
        "get",
        "secret",
        "casecret",
        "-n",
        &ha_ns,
        "-o",
        "jsonpath={.data.cadata}",
    ]);
    let secret_ca = String::from_utf8(b64_decode(&out)).unwrap();
    assert_eq!(secret_ca, ca_a, "the Secret holds another CA than the files");
    let logs = format!("{}{}", a.daemon.log(), b.daemon.log());
    let shared: Vec<&str> = logs.lines().filter(|l| l.contains("HA: CA shared")).collect();
    assert_eq!(shared.len(), 2, "{logs}");
    assert_eq!(
        shared.iter().filter(|l| l.contains("Created")).count(),
        1,
        "exactly one cloudcore created the CA: {shared:?}"
    );
    assert_eq!(
        shared.iter().filter(|l| l.contains("FromSecret")).count(),
        1,
        "the other took it from the Secret: {shared:?}"
    );

    // An edge with a node certificate of that CA, pointed at a dead port first, then a, then b.
    // cloudcore a's directory has the layout of a test Pki (ca/rootCA.crt, certs/<node>.crt).
    let ca = ke_pki::Ca::load(&files("a")[0], &files("a")[1]).unwrap();
    let pki = Pki {
        dir: dir.path().join("a"),
    };
    ca.issue_node(&node)
        .unwrap()
        .write(&pki.dir.join("certs"), &node)
        .unwrap();
    let c = Cluster {
        dir: tempfile::tempdir().unwrap(),
        pki,
    };
    for (cloud, who) in [(&a, "a"), (&b, "b")] {
        let servers = format!("127.0.0.1:{},127.0.0.1:{}", free_tcp_port(), cloud.port);
        let no_mqtt = "  eventbus:\n    enable: false\n";
        let mut edge = c.edge_at(&node, &servers, "127.0.0.1:1", false, no_mqtt, false);
        wait_metric(
            &cloud.metrics,
            "cloudhub_connected_nodes",
            |v| v == 1.0,
            &format!("edge served by cloudcore {who}"),
        )
        .await;
        edge.daemon.stop();
    }
    k8s.kubectl_ok(&["delete", "--wait=false", "namespace", &ha_ns]);
}

fn b64_decode(s: &str) -> Vec<u8> {
    use std::process::Command;
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.trim().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    out.stdout
}

/// Pod uid → ids of its sandboxes, and pod uid → (container name, attempt, id) of its containers,
/// as containerd lists them for `node` (every state: a second start would show as a second entry).
async fn cri_starts(
    node: &str,
) -> (
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, Vec<(String, u32, String)>>,
) {
    let c = CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(30)).unwrap();
    let by_node = HashMap::from([("kubeedge.io/node".to_owned(), node.to_owned())]);
    let mut sandboxes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sb in c
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: by_node.clone(),
            ..Default::default()
        }))
        .await
        .unwrap()
    {
        let uid = sb.metadata.map(|m| m.uid).unwrap_or_default();
        sandboxes.entry(uid).or_default().push(sb.id);
    }
    let mut containers: BTreeMap<String, Vec<(String, u32, String)>> = BTreeMap::new();
    for k in c
        .list_containers(Some(api::ContainerFilter {
            label_selector: by_node,
            ..Default::default()
        }))
        .await
        .unwrap()
    {
        let uid = k.labels.get("io.kubernetes.pod.uid").cloned().unwrap_or_default();
        let (name, attempt) = k.metadata.map(|m| (m.name, m.attempt)).unwrap_or_default();
        containers.entry(uid).or_default().push((name, attempt, k.id));
    }
    (sandboxes, containers)
}

/// Pod name → (uid, phase, restart count) in `ns`.
fn api_pods(k8s: &LocalK8s, ns: &str) -> BTreeMap<String, (String, String, i64)> {
    let out = k8s.kubectl_ok(&["get", "pods", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let restarts = p["status"]["containerStatuses"]
                .as_array()
                .map(|cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum())
                .unwrap_or(0);
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                (
                    p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                    p["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                    restarts,
                ),
            )
        })
        .collect()
}

fn sleeper(ns: &str, node: &str, name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/kubeedge/busybox:test
    command: [sleep, '3600']
"
    )
}

/// A real edged on containerd, its cloudcore killed -9 while its pods change: after the edge moved
/// to the other cloudcore every pod runs, and none was started twice — one sandbox and one
/// container (attempt 0) per pod in containerd, the same ones as before the failover, and no
/// restart in the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_starts_no_pod_twice_on_containerd() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, ns, ha_ns) = (
        format!("ha-edged-{id}"),
        format!("ha-pods-{id}"),
        format!("ha-e-{id}"),
    );
    let _cleanup = crate::edged_k8s::Cleanup(node.clone());
    let c = Cluster::new(&[&node]);
    let (mut a, b) = ha_pair(&c, &ha_ns, &k8s).await;
    let edged = crate::edged_k8s::containerd_edged(&node);
    let servers = format!("127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
    let no_bus = "  eventbus:\n    enable: false\n";
    let edge = c.edge_custom(&node, &servers, "", false, no_bus, false, &edged);
    wait_metric(
        &a.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "the edge on cloudcore a",
    )
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    let first: Vec<String> = (0..4).map(|i| format!("p{i}")).collect();
    for name in &first {
        eventually(T, "pod accepted", || {
            let ok = k8s.try_apply(&sleeper(&ns, &node, name)).is_ok();
            async move { ok.then_some(()) }
        })
        .await;
    }
    let running = |want: Vec<String>| {
        let (k8s, ns) = (&k8s, ns.clone());
        async move {
            eventually(T, "every pod Running in the API", || {
                let pods = api_pods(k8s, &ns);
                let names: Vec<&String> = pods.keys().collect();
                let ok = names.len() == want.len()
                    && want
                        .iter()
                        .all(|w| pods.get(w).is_some_and(|(_, phase, _)| phase == "Running"));
                async move { ok.then_some(pods) }
            })
            .await
        }
    };
    let before_pods = running(first.clone()).await;
    let (before_sb, before_ct) = cri_starts(&node).await;
    for (uid, _, _) in before_pods.values() {
        assert_eq!(before_sb.get(uid).map(Vec::len), Some(1), "{before_sb:?}");
        assert_eq!(before_ct.get(uid).map(Vec::len), Some(1), "{before_ct:?}");
    }

    // Cloudcore a dies while the pods change: 2 relabelled, 1 deleted, 2 created.
    a.daemon.kill9();
    let killed = Instant::now();
    k8s.kubectl_ok(&["label", "pod", "-n", &ns, "p0", "p1", "moved=yes"]);
    k8s.kubectl_ok(&["delete", "pod", "-n", &ns, "p3", "--grace-period=0", "--force"]);
    for name in ["p4", "p5"] {
        k8s.apply(&sleeper(&ns, &node, name));
    }
    wait_metric(
        &b.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "the edge on cloudcore b",
    )
    .await;
    let rehomed = killed.elapsed();
    let after: Vec<String> = ["p0", "p1", "p2", "p4", "p5"].map(String::from).to_vec();
    let after_pods = running(after.clone()).await;
    // The deleted pod's sandbox goes; give edged the time to remove it.
    let gone = before_pods["p3"].0.clone();
    let (sb, ct) = eventually(T, "the deleted pod's sandbox removed", || {
        let gone = gone.clone();
        let node = node.clone();
        async move {
            let (sb, ct) = cri_starts(&node).await;
            (!sb.contains_key(&gone)).then_some((sb, ct))
        }
    })
    .await;
    for (name, (uid, _, restarts)) in &after_pods {
        assert_eq!(*restarts, 0, "{name} restarted: {after_pods:?}");
        assert_eq!(sb.get(uid).map(Vec::len), Some(1), "{name}: sandboxes {sb:?}");
        let cts = ct.get(uid).cloned().unwrap_or_default();
        assert_eq!(cts.len(), 1, "{name}: containers {cts:?}");
        assert_eq!(cts[0].1, 0, "{name}: container attempt {cts:?}");
        if let Some((old_uid, _, _)) = before_pods.get(name) {
            assert_eq!(old_uid, uid, "{name} was recreated");
            assert_eq!(sb[uid], before_sb[uid], "{name}: a new sandbox");
            assert_eq!(ct[uid][0].2, before_ct[uid][0].2, "{name}: a new container");
        }
    }
    let labels = k8s.kubectl_ok(&[
        "get",
        "pod",
        "-n",
        &ns,
        "p0",
        "-o",
        "jsonpath={.metadata.labels.moved}",
    ]);
    assert_eq!(labels, "yes");
    eprintln!(
        "ha failover with edged on containerd: edge re-homed {:.1}s after kill -9; 5 pods Running, each started once",
        rehomed.as_secs_f64()
    );
    drop(edge);
    k8s.kubectl_ok(&["delete", "pod", "-n", &ns, "--all", "--grace-period=0", "--force"]);
    k8s.kubectl_ok(&["delete", "--wait=false", "node", &node]);
    k8s.kubectl_ok(&["delete", "--wait=false", "namespace", &ns, &ha_ns]);
}
