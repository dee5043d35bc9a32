//! edged driven through a real Beehive with the real metaManager on a real SQLite store, running
//! pods on the real containerd that `hack/setup-containerd.sh` sets up (run by `hack/test.sh`).
//! A fake `websocket` module stands in for the cloud side of the link.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use edged::{Edged, EdgedOptions, LABEL_CONTAINER_NAME, LABEL_NODE};
use ke_beehive::{Beehive, Core, Mailbox};
use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use ke_store::Store;
use metamanager::{MetaManager, MetaManagerOptions};
use serde_json::{Value, json};

const BUSYBOX: &str = "docker.io/kubeedge/busybox:test";
/// Upper bound for "must happen": only a hang reaches it.
const WAIT: Duration = Duration::from_secs(60);

fn cri() -> CriClient {
    CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60)).unwrap()
}

/// Removes every sandbox and container labelled with the test's node name, by id, even when the
/// test fails.
struct Cleanup {
    node: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let node = self.node.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(remove_node_pods(&node));
        })
        .join();
    }
}

fn node_filter(node: &str) -> HashMap<String, String> {
    HashMap::from([(LABEL_NODE.to_owned(), node.to_owned())])
}

async fn remove_node_pods(node: &str) {
    let c = cri();
    let cs = c
        .list_containers(Some(api::ContainerFilter {
            label_selector: node_filter(node),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for k in cs {
        let _ = c.stop_container(&k.id, Duration::ZERO).await;
        let _ = c.remove_container(&k.id).await;
    }
    let sbs = c
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: node_filter(node),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for sb in sbs {
        let _ = c.stop_pod_sandbox(&sb.id).await;
        let _ = c.remove_pod_sandbox(&sb.id).await;
        if let Some(m) = sb.metadata {
            for qos in ["besteffort/", "burstable/", ""] {
                ke_cri::remove_pod_cgroup(&format!("/kubepods/{qos}pod{}", m.uid));
            }
            let _ = std::fs::remove_dir_all(format!("/var/log/pods/{}_{}_{}", m.namespace, m.name, m.uid));
        }
    }
}

struct Edge {
    hive: Beehive,
    core: Core,
    store: Store,
    cloud: Mailbox,
    /// Port of the read-only endpoint.
    http_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Edge {
    fn start(dir: &std::path::Path, node: &str) -> Self {
        Self::start_with(dir, node, |_| {})
    }

    fn start_with(dir: &std::path::Path, node: &str, tune: impl FnOnce(&mut EdgedOptions)) -> Self {
        let http_port = free_port();
        let store = Store::open(dir.join("edgecore.db")).unwrap();
        let hive = Beehive::default();
        let cloud = hive.register(module::EDGEHUB, group::HUB).unwrap();
        let mut core = Core::new(hive.clone());
        let mm = MetaManagerOptions {
            pod_status_sync_interval: Duration::ZERO,
            ..Default::default()
        };
        core.register(MetaManager::new(mm, store.clone())).unwrap();
        let mut opts = EdgedOptions {
            node_name: node.to_owned(),
            node_ip: "127.0.0.1".to_owned(),
            pod_sandbox_image: "docker.io/kubeedge/pause:3.6".to_owned(),
            relist_period: Duration::from_millis(300),
            backoff_base: Duration::from_secs(1),
            initial_list_timeout: Duration::from_secs(5),
            node_status_update_frequency: Duration::from_secs(1),
            root_directory: dir.join("edged"),
            read_only_address: Some(format!("127.0.0.1:{http_port}")),
            // containerd is shared with other tests: never collect its images here.
            image_gc_high_threshold: 100,
            ..Default::default()
        };
        tune(&mut opts);
        core.register(Edged::new(opts).unwrap()).unwrap();
        core.start();
        Self {
            hive,
            core,
            store,
            cloud,
            http_port,
        }
    }

    async fn stop(self) {
        self.core.shutdown().await;
        assert!(self.store.close().await);
    }

    /// `GET path` on the read-only endpoint: (status line, body).
    async fn get(&self, path: &str) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The endpoint comes up with the module: retry a refused connection for a while.
        let mut tries = 0;
        let mut s = loop {
            match tokio::net::TcpStream::connect(("127.0.0.1", self.http_port)).await {
                Ok(s) => break s,
                Err(e) if tries < 100 => {
                    tries += 1;
                    retry_pause(&e).await;
                }
                Err(e) => panic!("read-only endpoint: {e}"),
            }
        };
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_owned(), body.to_owned())
    }

    /// A cloud message as edgehub delivers it to metaManager.
    async fn cloud_sends(&self, operation: &str, resource: &str, content: Value) {
        let m = Message::new(
            module::EDGECONTROLLER,
            group::RESOURCE,
            operation,
            resource,
            content,
        );
        self.hive.send_to_group(group::META, m).await.unwrap();
    }

    /// Waits for a pod status sent to the cloud that satisfies `pred`.
    async fn status_until(&mut self, pod: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let want = format!("default/podstatus/{pod}");
        let fut = async {
            loop {
                let m = self.cloud.recv().await.expect("cloud mailbox closed");
                if m.operation() == op::UPDATE && m.resource() == want && pred(&m.content["Status"]) {
                    return m.content;
                }
            }
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(v) => v,
            Err(_) => panic!("no status of {pod} as expected within {WAIT:?}"),
        }
    }
}

async fn retry_pause(_why: &std::io::Error) {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn pod(name: &str, uid: &str, policy: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main", "image": BUSYBOX,
                "command": ["/bin/sh", "-c"], "args": [script],
                "env": [{"name": "GREETING", "value": format!("hello-{name}")}],
                "ports": [{"containerPort": 8080}]
            }]
        }
    })
}

fn phase(s: &Value) -> &str {
    s["phase"].as_str().unwrap_or("")
}

fn restart_count(s: &Value) -> i64 {
    s["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0)
}

async fn node_containers(node: &str) -> Vec<api::Container> {
    cri()
        .list_containers(Some(api::ContainerFilter {
            label_selector: node_filter(node),
            ..Default::default()
        }))
        .await
        .unwrap()
}

async fn node_sandboxes(node: &str) -> Vec<api::PodSandbox> {
    cri()
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: node_filter(node),
            ..Default::default()
        }))
        .await
        .unwrap()
}

async fn http_get(ip: &str) -> String {
    http_get_port(ip, 8080).await
}

async fn http_get_port(ip: &str, port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect((ip, port)).await {
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            let mut body = String::new();
            let _ = s.read_to_string(&mut body).await;
            if body.contains("200 OK") {
                return body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("httpd on {ip}:{port} never answered");
}

fn node_name(test: &str) -> String {
    format!("edged-it-{test}-{}", &uuid::Uuid::new_v4().to_string()[..8])
}

/// httpd reachable on its pod IP; an edgecore restart adopts the same containers; delete removes
/// sandbox and containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpd_pod_survives_restart_and_is_deleted() {
    let node = node_name("httpd");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let uid = uuid::Uuid::new_v4().to_string();
    let script = "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www";

    let mut edge = Edge::start(dir.path(), &node);
    edge.cloud_sends(op::INSERT, "default/pod/web", pod("web", &uid, "Always", script))
        .await;
    let status = edge
        .status_until("web", |s| {
            phase(s) == "Running" && s["containerStatuses"][0]["ready"] == true
        })
        .await;
    assert_eq!(status["UID"], uid.as_str());
    assert_eq!(status["Name"], "web");
    let s = &status["Status"];
    assert_eq!(s["hostIP"], "127.0.0.1");
    let conds = s["conditions"].as_array().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "{s}"
    );
    let ip = s["podIP"].as_str().unwrap().to_owned();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{s}");
    assert!(http_get(&ip).await.ends_with("hello-web\n"));
    // The read-only endpoint lists the pod with its status.
    let (line, body) = edge.get("/pods").await;
    assert!(line.contains("200"), "{line}");
    let list: Value = serde_json::from_str(&body).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["metadata"]["uid"], uid.as_str());
    assert_eq!(items[0]["status"]["phase"], "Running");
    assert_eq!(items[0]["status"]["podIP"], ip.as_str());
    assert_eq!(edge.get("/healthz").await.1, "ok");
    assert!(edge.get("/nope").await.0.contains("404"));
    let cid = s["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_owned();
    let before: Vec<String> = node_containers(&node).await.into_iter().map(|c| c.id).collect();
    assert_eq!(before.len(), 1);
    assert_eq!(format!("containerd://{}", before[0]), cid);
    let sandboxes: Vec<String> = node_sandboxes(&node).await.into_iter().map(|s| s.id).collect();
    assert_eq!(sandboxes.len(), 1);

    // "edgecore restart": everything stops, the containers keep running, a new edged adopts them.
    edge.stop().await;
    let edge = Edge::start(dir.path(), &node);
    // The new edged rebuilt the pod set from metaManager's database and adopted the running
    // container: its status is unchanged (metaManager forwards only changes), so give it a few
    // relist periods, then the very same container and sandbox must be there and nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<String> = node_containers(&node).await.into_iter().map(|c| c.id).collect();
    assert_eq!(after, before);
    let sb_after: Vec<String> = node_sandboxes(&node).await.into_iter().map(|s| s.id).collect();
    assert_eq!(sb_after, sandboxes);
    assert!(http_get(&ip).await.ends_with("hello-web\n"));

    // Delete, handled by the new edged (so it knows the pod): sandbox and containers go.
    edge.cloud_sends(op::DELETE, "default/pod/web", pod("web", &uid, "Always", script))
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/kubepods/besteffort/pod{uid}")).exists());
    edge.stop().await;
}

/// `Never`: a failing container stays failed, once. `Always`: it is restarted (with back-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies() {
    let node = node_name("restart");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    let never = uuid::Uuid::new_v4().to_string();
    let always = uuid::Uuid::new_v4().to_string();
    edge.cloud_sends(
        op::INSERT,
        "default/pod/never",
        pod("never", &never, "Never", "exit 3"),
    )
    .await;
    edge.cloud_sends(
        op::INSERT,
        "default/pod/always",
        pod("always", &always, "Always", "exit 1"),
    )
    .await;

    let s = edge.status_until("never", |s| phase(s) == "Failed").await;
    let cs = &s["Status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["terminated"]["exitCode"], 3, "{cs}");
    assert_eq!(cs["restartCount"], 0);

    let s = edge.status_until("always", |s| restart_count(s) >= 2).await;
    assert_eq!(phase(&s["Status"]), "Running");

    // Never was not restarted: one container; Always keeps at most its two newest.
    let by_pod = |cs: &[api::Container], uid: &str| {
        cs.iter()
            .filter(|c| c.labels.get(edged::LABEL_POD_UID).map(String::as_str) == Some(uid))
            .count()
    };
    let cs = node_containers(&node).await;
    assert_eq!(by_pod(&cs, &never), 1);
    assert!(
        cs.iter()
            .all(|c| c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some("main"))
    );
    edge.stop().await;
}

async fn next_msg(cloud: &mut Mailbox, resource: &str, operation: &str) -> Message {
    let fut = async {
        loop {
            let m = cloud.recv().await.expect("cloud mailbox closed");
            if m.operation() == operation && m.resource() == resource {
                return m;
            }
        }
    };
    tokio::time::timeout(WAIT, fut).await.expect("no node message")
}

/// Registration goes straight to the cloud link and is retried until the cloud answers "OK";
/// then node statuses flow through metaManager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_then_reports_status() {
    let node = node_name("node");
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    let resource = format!("default/nodestatus/{node}");
    // First attempt refused: edged must try again.
    let first = next_msg(&mut edge.cloud, &resource, op::INSERT).await;
    assert!(first.header.sync, "registration is a sync request");
    assert_eq!((first.source(), first.group()), (module::EDGED, group::META));
    edge.hive.send_resp(first.response("")).unwrap();
    let reg = next_msg(&mut edge.cloud, &resource, op::INSERT).await;
    assert_ne!(reg.id(), first.id());
    let n = &reg.content;
    assert!(n.get("metadata").is_none(), "{n}");
    let s = &n["status"];
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    assert_eq!(s["capacity"]["cpu"], cpus.to_string());
    assert_eq!(s["capacity"]["pods"], "110");
    assert!(s["capacity"]["memory"].as_str().unwrap().ends_with("Mi"));
    let info = s["nodeInfo"].as_object().unwrap();
    for k in [
        "machineID",
        "systemUUID",
        "bootID",
        "kernelVersion",
        "osImage",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
        "operatingSystem",
        "architecture",
    ] {
        assert!(info.contains_key(k), "nodeInfo.{k} missing: {n}");
    }
    assert_eq!(info["kubeletVersion"], edged::KUBELET_VERSION);
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("remote://")
    );
    assert_eq!(
        s["addresses"][0],
        json!({"type": "InternalIP", "address": "127.0.0.1"})
    );
    assert_eq!(s["addresses"][1]["type"], "Hostname");
    edge.hive.send_resp(reg.response("OK")).unwrap();

    // Registered: status updates (through metaManager) from now on.
    let upd = next_msg(&mut edge.cloud, &resource, op::UPDATE).await;
    assert_eq!(upd.content["UID"], edged::NODE_STATUS_UID);
    let st = &upd.content["Status"];
    assert_eq!(st["phase"], "Running");
    let ready = &st["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"], &ready["reason"]),
        (&json!("Ready"), &json!("True"), &json!("EdgeReady"))
    );
    let upd2 = next_msg(&mut edge.cloud, &resource, op::UPDATE).await;
    assert_ne!(upd2.id(), upd.id());
    assert_eq!(upd2.content["Status"]["nodeInfo"], st["nodeInfo"]);
    edge.stop().await;
}

/// A failing exec liveness probe restarts the container (v1.2's exec probes always passed); a
/// failing exec readiness probe keeps the pod not Ready until the command succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes_restart_and_gate_readiness() {
    let node = node_name("probe");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    let exec = |cmd: &[&str]| json!({"exec": {"command": cmd}, "periodSeconds": 1, "failureThreshold": 1});
    let mut live = pod(
        "live",
        &uuid::Uuid::new_v4().to_string(),
        "Always",
        "exec sleep 3600",
    );
    live["spec"]["containers"][0]["livenessProbe"] = exec(&["/bin/false"]);
    let mut ready = pod(
        "ready",
        &uuid::Uuid::new_v4().to_string(),
        "Always",
        "exec sleep 3600",
    );
    ready["spec"]["containers"][0]["readinessProbe"] = exec(&["cat", "/tmp/ready"]);
    edge.cloud_sends(op::INSERT, "default/pod/live", live).await;
    edge.cloud_sends(op::INSERT, "default/pod/ready", ready).await;

    let is_ready = |s: &Value| {
        s["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
    };
    let s = edge
        .status_until("ready", |s| phase(s) == "Running" && !is_ready(s))
        .await;
    let cs = &s["Status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], false, "{cs}");
    assert!(cs["state"]["running"].is_object(), "{cs}");
    let cid = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://");
    let r = cri()
        .exec_sync(cid, &["touch", "/tmp/ready"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    let s = edge.status_until("ready", is_ready).await;
    assert_eq!(s["Status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(restart_count(&s["Status"]), 0);

    // Its statuses keep changing (each restart), so none is missed while waiting for "ready".
    let s = edge.status_until("live", |s| restart_count(s) >= 1).await;
    let last = &s["Status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_ne!(last["exitCode"], 0, "{s}");
    edge.stop().await;
}

/// configMap and secret volumes carry what metaManager holds, read-only; emptyDir is writable;
/// all of it goes with the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_secret_and_emptydir_volumes() {
    let node = node_name("vol");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    edge.cloud_sends(
        op::INSERT,
        "default/configmap/cfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
               "data": {"greeting": "hello from a configmap"}}),
    )
    .await;
    edge.cloud_sends(
        op::INSERT,
        "default/secret/sec",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec", "namespace": "default"},
               "data": {"password": "czNjcjN0"}}),
    )
    .await;
    let uid = uuid::Uuid::new_v4().to_string();
    let mut p = pod("vol", &uid, "Always", "exec sleep 3600");
    p["spec"]["volumes"] = json!([
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "sec"}},
        {"name": "scratch", "emptyDir": {}}
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "scratch", "mountPath": "/scratch"}
    ]);
    edge.cloud_sends(op::INSERT, "default/pod/vol", p.clone()).await;
    let s = edge.status_until("vol", |s| phase(s) == "Running").await;
    let cid = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let sh = |script: &str| {
        let (cid, script) = (cid.clone(), script.to_owned());
        async move {
            cri()
                .exec_sync(&cid, &["/bin/sh", "-c", &script], Duration::from_secs(10))
                .await
                .unwrap()
        }
    };
    let r = sh("cat /etc/cfg/greeting; echo; cat /etc/sec/password").await;
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "hello from a configmap\ns3cr3t"
    );
    let r = sh("echo x > /etc/cfg/new").await;
    assert_ne!(r.exit_code, 0, "configMap volume must be read-only");
    let r = sh("echo x > /scratch/f && cat /scratch/f").await;
    assert_eq!((r.exit_code, String::from_utf8_lossy(&r.stdout).trim()), (0, "x"));

    let pod_dir = dir.path().join("edged/pods").join(&uid);
    assert!(
        pod_dir
            .join("volumes/kubernetes.io~configmap/cfg/greeting")
            .exists()
    );
    edge.cloud_sends(op::DELETE, "default/pod/vol", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pod_dir.exists() || !node_sandboxes(&node).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// Limits reach the container's cgroup; a container over its memory limit is OOM-killed and
/// reported as Kubernetes does (`lastState.terminated.reason: OOMKilled`, exit code 137, the
/// restart counted); limits equal to requests make the pod `Guaranteed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_oom_kills_and_is_reported() {
    let node = node_name("oom");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    let uid = uuid::Uuid::new_v4().to_string();
    // First run: allocate 64 MiB under a 32 MiB limit. Second run (emptyDir marker): stay up.
    let script = "if [ -f /scratch/ran ]; then exec sleep 3600; fi; touch /scratch/ran; \
                  exec dd if=/dev/zero of=/dev/null bs=64M count=1";
    let mut p = pod("oom", &uid, "Always", script);
    p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    let c = &mut p["spec"]["containers"][0];
    c["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    c["resources"] = json!({"limits": {"cpu": "200m", "memory": "32Mi"}});
    edge.cloud_sends(op::INSERT, "default/pod/oom", p.clone()).await;

    let s = edge
        .status_until("oom", |s| {
            restart_count(s) >= 1 && s["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    let st = &s["Status"];
    assert_eq!(st["qosClass"], "Guaranteed", "{st}");
    let cs = &st["containerStatuses"][0];
    let last = &cs["lastState"]["terminated"];
    assert_eq!(last["reason"], "OOMKilled", "{cs}");
    assert_eq!(last["exitCode"], 137, "{cs}");
    assert_eq!(cs["restartCount"], 1, "{cs}");

    // The running container's cgroup carries the limits (cgroupfs: <parent>/<container id>).
    let cid = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://");
    let cg = |ctl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctl}/kubepods/pod{uid}/{cid}/{file}"))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(cg("memory", "memory.limit_in_bytes"), (32u64 << 20).to_string());
    assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(cg("cpu", "cpu.shares"), "204");

    edge.cloud_sends(op::DELETE, "default/pod/oom", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/kubepods/pod{uid}")).exists());
    edge.stop().await;
}

/// The pods `/pods` lists as Running with a container: name → container ID.
async fn running_pods(edge: &Edge) -> HashMap<String, String> {
    let (_, body) = edge.get("/pods").await;
    let list: Value = serde_json::from_str(&body).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| {
            let cid = p["status"]["containerStatuses"][0]["containerID"].as_str()?;
            Some((p["metadata"]["name"].as_str()?.to_owned(), cid.to_owned()))
        })
        .collect()
}

async fn until_running(edge: &Edge, n: usize) -> HashMap<String, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = running_pods(edge).await;
        if r.len() == n {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} pods Running",
            r.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An edgecore restart with 10 running pods adopts every one: the same containers and
/// sandboxes afterwards, no duplicates, no restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_ten_pods_adopts_the_same_containers() {
    const N: usize = 10;
    let node = node_name("ten");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &node);
    let pods: Vec<Value> = (0..N)
        .map(|i| {
            let name = format!("p{i}");
            pod(
                &name,
                &uuid::Uuid::new_v4().to_string(),
                "Always",
                "exec sleep 3600",
            )
        })
        .collect();
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        edge.cloud_sends(op::INSERT, &format!("default/pod/{name}"), p.clone())
            .await;
    }
    let before = until_running(&edge, N).await;
    let mut containers: Vec<String> = node_containers(&node).await.into_iter().map(|c| c.id).collect();
    let mut sandboxes: Vec<String> = node_sandboxes(&node).await.into_iter().map(|s| s.id).collect();
    containers.sort();
    sandboxes.sort();
    assert_eq!((containers.len(), sandboxes.len()), (N, N));

    edge.stop().await;
    let edge = Edge::start(dir.path(), &node);
    // The new edged reports all ten Running with the containers it found, not new ones.
    let after = until_running(&edge, N).await;
    assert_eq!(after, before);
    let mut containers2: Vec<String> = node_containers(&node).await.into_iter().map(|c| c.id).collect();
    let mut sandboxes2: Vec<String> = node_sandboxes(&node).await.into_iter().map(|s| s.id).collect();
    containers2.sort();
    sandboxes2.sort();
    assert_eq!(containers2, containers);
    assert_eq!(sandboxes2, sandboxes);
    let (_, body) = edge.get("/pods").await;
    let list: Value = serde_json::from_str(&body).unwrap();
    for p in list["items"].as_array().unwrap() {
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0, "{p}");
    }

    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        edge.cloud_sends(op::DELETE, &format!("default/pod/{name}"), p.clone())
            .await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pods not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// A busybox httpd pod with a `hostPort` answers on that port of the host (the CNI portmap
/// plugin owns the forwarding rules), on loopback and on the host's bridge address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httpd_pod_reachable_on_host_port() {
    let node = node_name("hostport");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    let uid = uuid::Uuid::new_v4().to_string();
    let host_port = free_port();
    let script = "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www";
    let mut p = pod("hp", &uid, "Always", script);
    p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080, "hostPort": host_port}]);
    edge.cloud_sends(op::INSERT, "default/pod/hp", p.clone()).await;
    let s = edge.status_until("hp", |s| phase(s) == "Running").await;
    let ip = s["Status"]["podIP"].as_str().unwrap().to_owned();
    assert!(http_get(&ip).await.ends_with("hello-hp\n"));
    assert!(
        http_get_port("127.0.0.1", host_port)
            .await
            .ends_with("hello-hp\n")
    );
    // The host's own address on the pod network (the bridge), found by routing towards the pod.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    probe.connect((ip.as_str(), 9)).unwrap();
    let host_ip = probe.local_addr().unwrap().ip().to_string();
    assert_ne!(host_ip, ip);
    assert!(http_get_port(&host_ip, host_port).await.ends_with("hello-hp\n"));

    edge.cloud_sends(op::DELETE, "default/pod/hp", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// `env.valueFrom` (configMap/secret keys, optional ones, pod fields, resources) and `envFrom`
/// (with a prefix) reach the container; `env` overrides `envFrom`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_value_from_and_env_from() {
    let node = node_name("env");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    edge.cloud_sends(
        op::INSERT,
        "default/configmap/envcfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "envcfg", "namespace": "default"},
               "data": {"color": "blue", "size": "L", "bad key": "x"}}),
    )
    .await;
    edge.cloud_sends(
        op::INSERT,
        "default/secret/envsec",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "envsec", "namespace": "default"},
               "data": {"token": "czNjcjN0"}}),
    )
    .await;
    let uid = uuid::Uuid::new_v4().to_string();
    let mut p = pod("envpod", &uid, "Always", "exec sleep 3600");
    p["spec"]["serviceAccountName"] = json!("robot");
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let c = &mut p["spec"]["containers"][0];
    c["resources"] = json!({"limits": {"memory": "64Mi"}});
    c["envFrom"] = json!([
        {"configMapRef": {"name": "envcfg"}},
        {"secretRef": {"name": "envsec"}, "prefix": "S_"},
        {"configMapRef": {"name": "absent", "optional": true}}
    ]);
    c["env"] = json!([
        {"name": "size", "value": "XL"},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "envcfg", "key": "color"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "envsec", "key": "token"}}},
        {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "envsec", "key": "nope", "optional": true}}},
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NS", "valueFrom": field("metadata.namespace")},
        {"name": "POD_UID", "valueFrom": field("metadata.uid")},
        {"name": "NODE", "valueFrom": field("spec.nodeName")},
        {"name": "POD_IP", "valueFrom": field("status.podIP")},
        {"name": "HOST_IP", "valueFrom": field("status.hostIP")},
        {"name": "SA", "valueFrom": field("spec.serviceAccountName")},
        {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
    ]);
    edge.cloud_sends(op::INSERT, "default/pod/envpod", p.clone())
        .await;
    let s = edge.status_until("envpod", |s| phase(s) == "Running").await;
    let pod_ip = s["Status"]["podIP"].as_str().unwrap().to_owned();
    let cid = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let r = cri()
        .exec_sync(&cid, &["env"], Duration::from_secs(10))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    let env: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let want = [
        ("color", "blue"),
        ("size", "XL"),
        ("S_token", "s3cr3t"),
        ("COLOR", "blue"),
        ("TOKEN", "s3cr3t"),
        ("POD_NAME", "envpod"),
        ("POD_NS", "default"),
        ("POD_UID", uid.as_str()),
        ("NODE", node.as_str()),
        ("POD_IP", pod_ip.as_str()),
        ("HOST_IP", "127.0.0.1"),
        ("SA", "robot"),
        ("MEM_MI", "64"),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k).copied(), Some(v), "{k} in {out}");
    }
    assert!(!env.contains_key("MAYBE"), "{out}");
    assert!(!out.contains("bad key"), "{out}");

    edge.cloud_sends(op::DELETE, "default/pod/envpod", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// `$(VAR)` expansion in `command`, `args` and `env` values (earlier entries and `envFrom`
/// values; `$$(VAR)` escapes; unknown references stay) and a read-only `downwardAPI` volume with
/// pod metadata and container resources, seen from inside a busybox container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn var_expansion_and_downward_api_volume() {
    let node = node_name("dapi");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start(dir.path(), &node);
    edge.cloud_sends(
        op::INSERT,
        "default/configmap/dapicfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dapicfg", "namespace": "default"},
               "data": {"color": "blue"}}),
    )
    .await;
    let uid = uuid::Uuid::new_v4().to_string();
    let mut p = pod("dapipod", &uid, "Always", "");
    p["metadata"]["labels"] = json!({"app": "web", "tier": "edge"});
    p["metadata"]["annotations"] = json!({"note": "say \"hi\""});
    p["spec"]["volumes"] = json!([{"name": "podinfo", "downwardAPI": {"defaultMode": 0o644, "items": [
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
        {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o400},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "res/mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}},
        {"path": "res/cpu", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu", "divisor": "1m"}}
    ]}}]);
    let c = &mut p["spec"]["containers"][0];
    c["resources"] = json!({"limits": {"memory": "32Mi"}, "requests": {"cpu": "250m"}});
    c["volumeMounts"] = json!([{"name": "podinfo", "mountPath": "/etc/podinfo"}]);
    c["envFrom"] = json!([{"configMapRef": {"name": "dapicfg"}}]);
    c["env"] = json!([
        {"name": "SHELL_PATH", "value": "/bin/sh"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "GREETING", "value": "hi-$(POD_NAME)-$(color)"},
        {"name": "ESCAPED", "value": "$$(POD_NAME)"},
        {"name": "UNKNOWN", "value": "$(NOPE)-$(LATER)"},
        {"name": "LATER", "value": "late"}
    ]);
    c["command"] = json!(["$(SHELL_PATH)", "-c"]);
    c["args"] = json!(["echo '$(GREETING)|$$(GREETING)|$(NOPE)|$(LATER)' > /tmp/args; exec sleep 3600"]);
    edge.cloud_sends(op::INSERT, "default/pod/dapipod", p.clone())
        .await;
    let s = edge.status_until("dapipod", |s| phase(s) == "Running").await;
    let cid = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let sh = |script: &str| {
        let (cid, script) = (cid.clone(), script.to_owned());
        async move {
            let r = cri()
                .exec_sync(&cid, &["/bin/sh", "-c", &script], Duration::from_secs(10))
                .await
                .unwrap();
            (r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())
        }
    };
    // The file exists only once the shell ran; the exec may come before that.
    let deadline = tokio::time::Instant::now() + WAIT;
    let args = loop {
        let (code, out) = sh("cat /tmp/args").await;
        if code == 0 {
            break out;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "container never wrote /tmp/args"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(args, "hi-dapipod-blue|$(GREETING)|$(NOPE)|late\n");
    let (_, out) = sh("env").await;
    let env: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    for (k, v) in [
        ("GREETING", "hi-dapipod-blue"),
        ("ESCAPED", "$(POD_NAME)"),
        ("UNKNOWN", "$(NOPE)-$(LATER)"),
    ] {
        assert_eq!(env.get(k).copied(), Some(v), "{k} in {out}");
    }

    let (_, out) = sh(
        "cd /etc/podinfo && for f in name namespace uid labels annotations res/mem res/cpu; \
         do cat $f; echo; done; stat -L -c %a name uid",
    )
    .await;
    assert_eq!(
        out,
        format!(
            "dapipod\ndefault\n{uid}\napp=\"web\"\ntier=\"edge\"\nnote=\"say \\\"hi\\\"\"\n32\n250\n644\n400\n"
        )
    );
    let (code, _) = sh("echo x > /etc/podinfo/new").await;
    assert_ne!(code, 0, "downwardAPI volume must be read-only");
    assert!(
        dir.path()
            .join("edged/pods")
            .join(&uid)
            .join("volumes/kubernetes.io~downward-api/podinfo/labels")
            .exists()
    );

    edge.cloud_sends(op::DELETE, "default/pod/dapipod", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// Container GC keeps `maximumDeadContainersPerPod` dead containers per pod and container (the
/// newest), removes the older ones, and leaves running containers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_gc_keeps_the_newest_dead_containers() {
    let node = node_name("gc");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start_with(dir.path(), &node, |o| {
        o.container_gc_period = Duration::from_millis(300);
        o.container_gc_min_age = Duration::ZERO;
        o.max_dead_containers_per_pod = 1;
    });
    // Fails twice (attempts 0 and 1), then stays up (attempt 2).
    let script = "n=$(cat /scratch/n 2>/dev/null || echo 0); echo $((n+1)) > /scratch/n; \
                  [ \"$n\" -ge 2 ] && exec sleep 3600; exit 1";
    let uid = uuid::Uuid::new_v4().to_string();
    let mut p = pod("crash", &uid, "Always", script);
    p["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    let never = uuid::Uuid::new_v4().to_string();
    edge.cloud_sends(op::INSERT, "default/pod/crash", p.clone()).await;
    edge.cloud_sends(
        op::INSERT,
        "default/pod/done",
        pod("done", &never, "Never", "exit 0"),
    )
    .await;
    edge.status_until("done", |s| phase(s) == "Succeeded").await;
    let s = edge
        .status_until("crash", |s| {
            restart_count(s) == 2 && s["containerStatuses"][0]["state"]["running"].is_object()
        })
        .await;
    let running = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let of_pod = |cs: &[api::Container], uid: &str| -> Vec<(u32, i32, String)> {
        let mut v: Vec<_> = cs
            .iter()
            .filter(|c| c.labels.get(edged::LABEL_POD_UID).map(String::as_str) == Some(uid))
            .map(|c| (c.metadata.as_ref().unwrap().attempt, c.state, c.id.clone()))
            .collect();
        v.sort();
        v
    };
    let exited = api::ContainerState::ContainerExited as i32;
    let running_state = api::ContainerState::ContainerRunning as i32;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cs = node_containers(&node).await;
        let crash = of_pod(&cs, &uid);
        if crash.len() == 2 {
            // Attempt 0 is gone; the newest dead one (attempt 1) and the running one stay.
            assert_eq!((crash[0].0, crash[0].1), (1, exited), "{crash:?}");
            assert_eq!((crash[1].0, crash[1].1), (2, running_state), "{crash:?}");
            assert_eq!(crash[1].2, running);
            // The finished pod's only (dead) container is within the limit.
            assert_eq!(of_pod(&cs, &never).len(), 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead containers not collected: {crash:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.cloud_sends(op::DELETE, "default/pod/crash", p).await;
    edge.cloud_sends(
        op::DELETE,
        "default/pod/done",
        pod("done", &never, "Never", "exit 0"),
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node_containers(&node).await.is_empty() && node_sandboxes(&node).await.is_empty()) {
        assert!(tokio::time::Instant::now() < deadline, "pods not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// A ConfigMap (and a Secret) updated through the cloud's path reaches the running container's
/// volume files without a restart: through the update event alone (the periodic resync is set
/// to an hour here), atomically (a reader looping over a 20 000-byte file never sees a partial
/// or mixed one), keys removed from the ConfigMap disappear, `items` and modes keep applying; a
/// `subPath` mount keeps the file it started with, as the kubelet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_and_secret_updates_reach_running_pod() {
    let node = node_name("vrefresh");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start_with(dir.path(), &node, |o| {
        o.volume_resync_period = Duration::from_secs(3600);
    });
    const BIG: usize = 20_000;
    let cm = |seq: u32, extra: bool| {
        let fill = if seq.is_multiple_of(2) { "x" } else { "y" };
        let mut data = json!({"seq": seq.to_string(), "big": fill.repeat(BIG)});
        if extra {
            data["gone"] = json!("soon");
        }
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "live", "namespace": "default"}, "data": data})
    };
    edge.cloud_sends(op::INSERT, "default/configmap/live", cm(0, true))
        .await;
    let secret = |b64: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "livesec", "namespace": "default"},
               "data": {"token": b64}})
    };
    edge.cloud_sends(op::INSERT, "default/secret/livesec", secret("b2xk"))
        .await; // "old"
    let uid = uuid::Uuid::new_v4().to_string();
    let watcher = format!(
        "while :; do c=$(cat /etc/all/big); case \"$c\" in *x*y*|*y*x*) echo mixed >> /tmp/mix;; esac; \
         [ ${{#c}} -eq {BIG} ] || echo \"length ${{#c}}\" >> /tmp/mix; usleep 2000; done"
    );
    let mut p = pod("vrefresh", &uid, "Always", &watcher);
    p["spec"]["volumes"] = json!([
        {"name": "all", "configMap": {"name": "live", "defaultMode": 0o440}},
        {"name": "sel", "configMap": {"name": "live", "items": [{"key": "seq", "path": "sub/s", "mode": 0o600}]}},
        {"name": "sec", "secret": {"secretName": "livesec"}}
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "all", "mountPath": "/etc/all"},
        {"name": "sel", "mountPath": "/etc/sel"},
        {"name": "sec", "mountPath": "/etc/sec"},
        {"name": "all", "mountPath": "/etc/pinned-seq", "subPath": "seq"}
    ]);
    edge.cloud_sends(op::INSERT, "default/pod/vrefresh", p.clone())
        .await;
    let s = edge.status_until("vrefresh", |s| phase(s) == "Running").await;
    let cid = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let sh = |script: &str| {
        let (cid, script) = (cid.clone(), script.to_owned());
        async move {
            let r = cri()
                .exec_sync(&cid, &["/bin/sh", "-c", &script], Duration::from_secs(10))
                .await
                .unwrap();
            String::from_utf8_lossy(&r.stdout).trim().to_owned()
        }
    };
    let until = |script: &'static str, want: String| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = sh(script).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{script}: {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert_eq!(
        sh("cat /etc/all/seq /etc/sel/sub/s /etc/all/gone /etc/sec/token").await,
        "00soonold"
    );

    for seq in 1..=6 {
        edge.cloud_sends(op::UPDATE, "default/configmap/live", cm(seq, false))
            .await;
        until("cat /etc/all/seq", seq.to_string()).await;
        until("cat /etc/sel/sub/s", seq.to_string()).await;
    }
    assert_eq!(sh("ls /etc/all").await, "big\nseq", "removed key gone");
    assert_eq!(
        sh("cat /etc/pinned-seq").await,
        "0",
        "subPath mounts keep their file (kubelet)"
    );
    assert_eq!(
        sh("ls /etc/sel /etc/sel/sub").await,
        "/etc/sel:\nsub\n\n/etc/sel/sub:\ns"
    );
    assert_eq!(sh("stat -L -c %a /etc/all/seq /etc/sel/sub/s").await, "440\n600");
    edge.cloud_sends(op::UPDATE, "default/secret/livesec", secret("bmV3"))
        .await; // "new"
    until("cat /etc/sec/token", "new".to_owned()).await;
    // Let the watcher read a few more rounds, then: it never saw a partial or mixed file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sh("cat /tmp/mix 2>/dev/null").await, "");
    assert!(sh("cat /etc/all/big").await.len() == BIG);

    let pod_dir = dir.path().join("edged/pods").join(&uid);
    edge.cloud_sends(op::DELETE, "default/pod/vrefresh", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pod_dir.exists() || !node_sandboxes(&node).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}

/// The periodic volume resync catches a ConfigMap change edged was not told about (written to
/// metaManager's store directly, as if the update event had been dropped), and a pod update
/// with new labels reaches its downwardAPI volume without a container restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_resync_and_downward_api_label_update() {
    let node = node_name("vresync");
    let _cleanup = Cleanup { node: node.clone() };
    let dir = tempfile::tempdir().unwrap();
    let mut edge = Edge::start_with(dir.path(), &node, |o| {
        o.volume_resync_period = Duration::from_secs(1);
    });
    let cm = |v: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "rs", "namespace": "default"}, "data": {"v": v}})
    };
    edge.cloud_sends(op::INSERT, "default/configmap/rs", cm("one"))
        .await;
    let uid = uuid::Uuid::new_v4().to_string();
    let mut p = pod("vresync", &uid, "Always", "exec sleep 3600");
    p["metadata"]["labels"] = json!({"tier": "a"});
    p["spec"]["volumes"] = json!([
        {"name": "cfg", "configMap": {"name": "rs"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "cfg", "mountPath": "/etc/cfg"},
        {"name": "info", "mountPath": "/etc/info"}
    ]);
    edge.cloud_sends(op::INSERT, "default/pod/vresync", p.clone())
        .await;
    let s = edge.status_until("vresync", |s| phase(s) == "Running").await;
    let cid = s["Status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_owned();
    let until = |script: &'static str, want: &'static str| {
        let cid = cid.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let r = cri()
                    .exec_sync(&cid, &["/bin/sh", "-c", script], Duration::from_secs(10))
                    .await
                    .unwrap();
                let got = String::from_utf8_lossy(&r.stdout).trim().to_owned();
                if got == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{script}: {got:?}, want {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    until("cat /etc/cfg/v; echo; cat /etc/info/labels", "one\ntier=\"a\"").await;
    edge.store
        .insert_or_update("default/configmap/rs", "configmap", cm("two").to_string())
        .await
        .unwrap();
    until("cat /etc/cfg/v", "two").await;
    p["metadata"]["labels"] = json!({"tier": "b", "new": "yes"});
    edge.cloud_sends(op::UPDATE, "default/pod/vresync", p.clone())
        .await;
    until("cat /etc/info/labels", "new=\"yes\"\ntier=\"b\"").await;
    let ids: Vec<String> = node_containers(&node).await.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, [cid], "no container restart for a label change");

    let pod_dir = dir.path().join("edged/pods").join(&uid);
    edge.cloud_sends(op::DELETE, "default/pod/vresync", p).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while pod_dir.exists() || !node_sandboxes(&node).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "pod not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.stop().await;
}
