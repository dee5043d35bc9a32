//! The end-to-end suite: KubeEdge-rs installed and used the way a user does it, on the real local
//! Kubernetes control plane, the real containerd and real processes.
//!
//! One scenario, in order (each phase needs the previous one), timing each phase:
//! 1. `keadm init` (cloud, on the host) and `keadm gettoken`;
//! 2. `keadm join` with the token **inside a network namespace** (the edge "machine"): it fetches
//!    its certificates from cloudcore and starts edgecore — the node turns Ready (seed ch. 15);
//! 3. a Deployment for the node → pods Running with pod IPs, the app answers on each pod IP;
//! 4. the device CRD flow: membership reaches the edge's MQTT broker, a desired change arrives as a
//!    delta, a mapper's twin report lands in the Device's `status.twins[].reported`;
//! 5. offline autonomy: the edge's link is cut, edgecore is restarted — the app is still served,
//!    its containers are the same (nothing recreated), edged serves its pods from the local
//!    store, a device report made offline is kept; the link comes back → the node and pods are
//!    Ready again in the API with the same pod UIDs, and the offline report reaches the cloud;
//! 6. the Deployment is deleted → pods leave the API and the container runtime;
//! 7. `keadm reset` on the edge and on the cloud → no process, file or container of ours is left.
//!
//! On failure the daemons' logs are printed, and everything is still reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ke_testkit::k8s::LocalK8s;
use ke_testkit::netns::NetNs;
use ke_testkit::{bin, free_tcp_port};
use serde_json::Value;

const T: Duration = Duration::from_secs(120);

/// `--config-dir/--state-dir/--log-dir` of one side (cloud or edge), under the test's temp dir.
struct Side {
    root: PathBuf,
}

impl Side {
    fn args(&self) -> Vec<String> {
        ["config-dir", "state-dir", "log-dir"]
            .iter()
            .zip(["etc", "var", "log"])
            .flat_map(|(flag, sub)| [format!("--{flag}"), self.root.join(sub).display().to_string()])
            .collect()
    }
    /// Runs keadm with this side's directories.
    fn keadm(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin("keadm"));
        c.args(args).args(self.args());
        c.output().expect("keadm")
    }
    fn log(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.root.join("log").join(format!("{daemon}.log"))).unwrap_or_default()
    }
    fn config(&self, daemon: &str) -> PathBuf {
        self.root.join("etc/config").join(format!("{daemon}.yaml"))
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(mut c: Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < T, "timed out after {T:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Container ids of the node's pods, straight from containerd (not through edgecore).
fn node_containers(node: &str) -> Vec<String> {
    let o = Command::new("ctr")
        .args(["-n", "k8s.io", "containers", "ls", "-q"])
        .arg(format!("labels.\"kubeedge.io/node\"=={node}"))
        .output()
        .expect("ctr");
    let mut ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

fn http_get(url: &str) -> Option<String> {
    let o = Command::new("curl")
        .args(["-sf", "--max-time", "3", url])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Everything the scenario set up, reset on drop whatever happened (logs printed on failure).
struct Suite {
    k8s: std::sync::Arc<LocalK8s>,
    ns: NetNs,
    cloud: Side,
    edge: Side,
    node: String,
    kns: String,
    _tmp: tempfile::TempDir,
    t0: Instant,
    phase_start: Instant,
}

impl Suite {
    fn phase(&mut self, what: &str) {
        eprintln!(
            "==> [{:5.1}s, previous phase {:5.1}s] {what}",
            self.t0.elapsed().as_secs_f64(),
            self.phase_start.elapsed().as_secs_f64()
        );
        self.phase_start = Instant::now();
    }

    fn keadm(&self, side: &Side, args: &[&str]) -> Output {
        side.keadm(args)
    }

    fn keadm_in_ns(&self, side: &Side, args: &[&str]) -> Output {
        let mut c = self.ns.command(bin("keadm"));
        c.args(args).args(side.args());
        c.output().expect("keadm")
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let o = self.k8s.kubectl(&a);
        serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
    }

    fn node_ready(&self) -> bool {
        let v = self.kubectl_json(&["get", "node", &self.node]);
        v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }

    /// The app's pods: (uid, pod IP) of those Running and Ready.
    fn ready_pods(&self) -> Vec<(String, String)> {
        let v = self.kubectl_json(&["get", "pods", "-n", &self.kns, "-l", "app=web"]);
        let mut out: Vec<(String, String)> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|p| {
                Some((
                    p["metadata"]["uid"].as_str()?.to_owned(),
                    p["status"]["podIP"].as_str()?.to_owned(),
                ))
            })
            .collect();
        out.sort();
        out
    }

    fn mqtt_pub(&self, topic: &str, payload: &str) {
        let mut c = self.ns.command("mosquitto_pub");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            MQTT_PORT,
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ]);
        run_ok(c);
    }

    fn reported(&self, dev: &str) -> Value {
        let v = self.kubectl_json(&["get", "device", dev, "-n", &self.kns]);
        v["status"]["twins"][0]["reported"]["value"].clone()
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (side, d) in [(&self.cloud, "cloudcore"), (&self.edge, "edgecore")] {
                eprintln!("----- {d} log -----\n{}", side.log(d));
            }
            eprintln!("----- edgecore (restarted) log -----");
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "cat {}/*.log 2>/dev/null",
                    self._tmp.path().join("logs").display()
                ))
                .status();
        }
        let _ = self.keadm(&self.edge, &["reset"]);
        let _ = self.keadm(&self.cloud, &["reset"]);
        let _ = self
            .k8s
            .kubectl(&["delete", "namespace", &self.kns, "--wait=false"]);
        let _ = self.k8s.kubectl(&["delete", "node", &self.node, "--wait=false"]);
    }
}

const MQTT_PORT: &str = "1883";

#[test]
fn keadm_edge_node_apps_devices_offline_and_reset() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let Some(ns) = NetNs::create() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let mut s = Suite {
        k8s,
        cloud: Side {
            root: tmp.path().join("cloud"),
        },
        edge: Side {
            root: tmp.path().join("edge"),
        },
        node: format!("e2e-{id}"),
        kns: format!("e2e-{id}"),
        ns,
        _tmp: tmp,
        t0: Instant::now(),
        phase_start: Instant::now(),
    };
    std::fs::create_dir_all(s._tmp.path().join("logs")).unwrap();
    let host_ip = s.ns.host_ip().to_string();
    let (ws_port, https_port) = (free_tcp_port(), free_tcp_port());
    let metrics = format!("127.0.0.1:{}", free_tcp_port());

    // --- 1. cloud ---------------------------------------------------------------------------------
    s.phase("keadm init");
    let admin = s.k8s.admin_kubeconfig.display().to_string();
    let cc_kubeconfig = s.k8s.cloudcore_kubeconfig.display().to_string();
    let o = s.keadm(
        &s.cloud,
        &[
            "init",
            "--kube-config",
            &admin,
            "--cloudcore-kube-config",
            &cc_kubeconfig,
            "--advertise-address",
            &host_ip,
            "--listen-address",
            &host_ip,
            "--port",
            &ws_port.to_string(),
            "--https-port",
            &https_port.to_string(),
            "--metrics-address",
            &metrics,
            "--mode",
            "background",
        ],
    );
    assert!(o.status.success(), "keadm init failed:\n{}", text(&o));
    eprintln!("{}", text(&o));
    // Idempotent: a second init finds cloudcore running and changes nothing.
    let again = s.keadm(
        &s.cloud,
        &["init", "--kube-config", &admin, "--mode", "background"],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already runs"), "{}", text(&again));

    s.phase("keadm gettoken");
    let o = s.keadm(&s.cloud, &["gettoken", "--kube-config", &admin]);
    assert!(o.status.success(), "keadm gettoken failed:\n{}", text(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(token.contains('.'), "not a token: {token:?}");

    // --- 2. edge ----------------------------------------------------------------------------------
    s.phase("keadm join (in the edge's network namespace)");
    let cloud_addr = format!("{host_ip}:{ws_port}");
    let join = |s: &Suite, token: &str| {
        s.keadm_in_ns(
            &s.edge,
            &[
                "join",
                "--cloudcore-ipport",
                &cloud_addr,
                "--certport",
                &https_port.to_string(),
                "--token",
                token,
                "--edgenode-name",
                &s.node,
                "--mqtt-port",
                MQTT_PORT,
                // The images are shared with every other test on this machine: never collected.
                "--image-gc-high-threshold",
                "100",
                "--mode",
                "background",
            ],
        )
    };
    // A wrong token is refused with a clear error, and leaves nothing running.
    let bad = join(&s, &format!("{}.e30.e30", "0".repeat(64)));
    assert!(
        !bad.status.success(),
        "join with a bad token succeeded:\n{}",
        text(&bad)
    );
    eprintln!("bad token: {}", text(&bad).lines().last().unwrap_or_default());
    let o = join(&s, &token);
    assert!(o.status.success(), "keadm join failed:\n{}", text(&o));
    eprintln!("{}", text(&o));
    let cert = s.edge.root.join(format!("etc/certs/{}.crt", s.node));
    assert!(cert.exists(), "the node certificate was not bootstrapped");

    s.phase("node Ready");
    wait_until("node Ready", || s.node_ready().then_some(()));
    let node = s.kubectl_json(&["get", "node", &s.node]);
    assert!(
        node["metadata"]["labels"]
            .as_object()
            .is_some_and(|l| l.contains_key("node-role.kubernetes.io/edge")),
        "edge role label: {}",
        node["metadata"]["labels"]
    );

    // --- 3. app -----------------------------------------------------------------------------------
    s.phase("deploy the app");
    s.k8s.kubectl_ok(&["create", "namespace", &s.kns]);
    s.k8s.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {kns}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      nodeName: {node}
      terminationGracePeriodSeconds: 5
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}}
      - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute}}
      containers:
      - name: httpd
        image: docker.io/kubeedge/busybox:test
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080}}]
"#,
        kns = s.kns,
        node = s.node
    ));
    let pods = wait_until("2 app pods Running and Ready", || {
        let p = s.ready_pods();
        (p.len() == 2).then_some(p)
    });
    for (_, ip) in &pods {
        let page = wait_until("the app answers on its pod IP", || {
            http_get(&format!("http://{ip}:8080/"))
        });
        assert!(page.starts_with("hello-from-"), "{page}");
    }
    let containers = node_containers(&s.node);
    // containerd lists each pod's sandbox (pause) container too.
    assert_eq!(
        containers.len(),
        4,
        "a sandbox and a container per pod: {containers:?}"
    );

    // --- 4. device --------------------------------------------------------------------------------
    s.phase("device CRD flow");
    let dev = format!("thermo-{id}");
    let sub_log = s._tmp.path().join("logs/mqtt.log");
    let mut sub = s.ns.command("mosquitto_sub");
    sub.args(["-h", "127.0.0.1", "-p", MQTT_PORT, "-v", "-t", "$hw/events/#"]);
    let _sub = ke_testkit::Daemon::start_command("mqtt", sub, &s._tmp.path().join("logs"));
    std::thread::sleep(Duration::from_secs(1));
    s.k8s.apply(&format!(
        r#"
apiVersion: devices.kubeedge.io/v1alpha1
kind: DeviceModel
metadata: {{name: thermometer, namespace: {kns}}}
spec:
  properties:
  - name: temperature
    type: {{string: {{accessMode: ReadWrite, defaultValue: ""}}}}
---
apiVersion: devices.kubeedge.io/v1alpha1
kind: Device
metadata: {{name: {dev}, namespace: {kns}, labels: {{model: thermometer}}}}
spec:
  deviceModelRef: {{name: thermometer}}
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - {{key: '', operator: In, values: [{node}]}}
status:
  twins:
  - propertyName: temperature
    desired: {{value: '20', metadata: {{type: string}}}}
"#,
        kns = s.kns,
        node = s.node
    ));
    let mqtt_log = || std::fs::read_to_string(&sub_log).unwrap_or_default();
    let membership = format!("$hw/events/node/{}/membership/updated", s.node);
    wait_until("membership reaches the edge", || {
        mqtt_log()
            .lines()
            .any(|l| l.starts_with(&membership) && l.contains(&dev))
            .then_some(())
    });
    s.k8s.kubectl_ok(&[
        "patch",
        "device",
        &dev,
        "-n",
        &s.kns,
        "--type=merge",
        "-p",
        r#"{"status":{"twins":[{"propertyName":"temperature","desired":{"value":"25","metadata":{"type":"string"}}}]}}"#,
    ]);
    let delta = format!("$hw/events/device/{dev}/twin/update/delta");
    wait_until("the desired change arrives as a delta", || {
        mqtt_log()
            .lines()
            .any(|l| l.starts_with(&delta) && l.contains(r#""temperature":"25""#))
            .then_some(())
    });
    let update = format!("$hw/events/device/{dev}/twin/update");
    let report = |v: &str| {
        format!(
            r#"{{"event_id":"e2e-{v}","timestamp":0,"twin":{{"temperature":{{"actual":{{"value":"{v}"}},"metadata":{{"type":"Updated"}}}}}}}}"#
        )
    };
    s.mqtt_pub(&update, &report("23.5"));
    wait_until("the report lands in status.twins[].reported", || {
        (s.reported(&dev) == "23.5").then_some(())
    });

    // --- 5. offline -------------------------------------------------------------------------------
    s.phase("offline: cut the link, restart edgecore");
    s.ns.cut();
    let pid_file = s.edge.root.join("var/edgecore.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    run_ok({
        let mut c = Command::new("kill");
        c.args(["-TERM", &pid]);
        c
    });
    wait_until("edgecore stopped", || {
        (!Path::new(&format!("/proc/{pid}/exe")).exists()
            || std::fs::read_link(format!("/proc/{pid}/exe")).is_err())
        .then_some(())
    });
    let cfg = s.edge.config("edgecore").display().to_string();
    let _restarted = s.ns.daemon(
        "edgecore-restarted",
        &bin("edgecore"),
        &["--config", &cfg],
        &s._tmp.path().join("logs"),
    );
    // edged answers from the local store while the cloud is unreachable.
    let listed = wait_until("edged lists its pods offline", || {
        let mut c = s.ns.command("curl");
        c.args(["-sf", "--max-time", "3", "http://127.0.0.1:10255/pods"]);
        let o = c.output().ok()?;
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        let n = v["items"].as_array()?.len();
        (n == 2).then_some(n)
    });
    assert_eq!(listed, 2);
    s.mqtt_pub(&update, &report("19.5"));
    // Give a restarted edged every chance to (wrongly) recreate something.
    std::thread::sleep(Duration::from_secs(15));
    for (_, ip) in &pods {
        let page = http_get(&format!("http://{ip}:8080/"));
        assert!(
            page.is_some_and(|p| p.starts_with("hello-from-")),
            "app not served on {ip} while offline"
        );
    }
    assert_eq!(
        node_containers(&s.node),
        containers,
        "containers recreated while offline"
    );

    s.phase("reconnect: statuses converge");
    s.ns.restore();
    wait_until("the offline device report reaches the cloud", || {
        (s.reported(&dev) == "19.5").then_some(())
    });
    wait_until("node Ready again", || s.node_ready().then_some(()));
    let after = wait_until("both pods Ready again", || {
        let p = s.ready_pods();
        (p.len() == 2).then_some(p)
    });
    assert_eq!(after, pods, "pods were recreated in the API");
    assert_eq!(
        node_containers(&s.node),
        containers,
        "containers recreated after reconnect"
    );

    // --- 6. delete --------------------------------------------------------------------------------
    s.phase("delete the app");
    s.k8s
        .kubectl_ok(&["delete", "deployment", "web", "-n", &s.kns, "--wait=false"]);
    wait_until("pods gone from the API", || {
        let v = s.kubectl_json(&["get", "pods", "-n", &s.kns, "-l", "app=web"]);
        v["items"].as_array().is_some_and(Vec::is_empty).then_some(())
    });
    wait_until("containers gone from the runtime", || {
        node_containers(&s.node).is_empty().then_some(())
    });

    // --- 7. reset ---------------------------------------------------------------------------------
    s.phase("keadm reset (edge, then cloud)");
    drop(_restarted);
    let o = s.keadm_in_ns(&s.edge, &["reset"]);
    assert!(o.status.success(), "keadm reset (edge) failed:\n{}", text(&o));
    eprintln!("{}", text(&o));
    let o = s.keadm(&s.cloud, &["reset"]);
    assert!(o.status.success(), "keadm reset (cloud) failed:\n{}", text(&o));
    eprintln!("{}", text(&o));
    for side in [&s.cloud, &s.edge] {
        let left: Vec<String> = walk(&side.root);
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
    let root = s._tmp.path().display().to_string();
    let procs = ours_running(&root);
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    assert!(node_containers(&s.node).is_empty());
    let again = s.keadm(&s.cloud, &["reset"]);
    assert!(text(&again).contains("nothing to reset"), "{}", text(&again));
    s.phase("done");
}

/// Every path under `root` (`root` itself excluded); empty if `root` is gone.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// Live processes whose command line mentions `root` (zombies excluded: they hold nothing).
fn ours_running(root: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(root) && std::fs::read_link(e.path().join("exe")).is_ok())
                .then(|| format!("{}: {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// `keadm init --ha` twice (two "machines": separate directories and ports) on a cluster with no
/// CA Secret yet: the first creates the CA in the cluster, the second takes it from there; both
/// cloudcores run in HA mode and `keadm reset` removes them.
#[test]
fn keadm_init_ha_adds_a_second_cloudcore() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ha_ns = format!("keadm-ha-{}", std::process::id());
    let admin = k8s.admin_kubeconfig.display().to_string();
    let sides: Vec<Side> = ["one", "two"]
        .iter()
        .map(|n| Side {
            root: tmp.path().join(n),
        })
        .collect();
    let mut outputs = Vec::new();
    for (side, identity) in sides.iter().zip(["cc-one", "cc-two"]) {
        let (ws, https, metrics) = (
            free_tcp_port().to_string(),
            free_tcp_port().to_string(),
            format!("127.0.0.1:{}", free_tcp_port()),
        );
        let o = side.keadm(&[
            "init",
            "--kube-config",
            &admin,
            "--ha",
            "--ha-identity",
            identity,
            "--ha-namespace",
            &ha_ns,
            "--listen-address",
            "127.0.0.1",
            "--port",
            &ws,
            "--https-port",
            &https,
            "--metrics-address",
            &metrics,
            "--mode",
            "background",
        ]);
        let out = text(&o);
        outputs.push(out.clone());
        if !o.status.success() {
            for s in &sides {
                let _ = s.keadm(&["reset"]);
            }
            panic!("keadm init --ha ({identity}) failed:\n{out}");
        }
    }
    let result = std::panic::catch_unwind(|| {
        assert!(outputs[0].contains("HA: CA Created"), "{}", outputs[0]);
        assert!(outputs[1].contains("HA: CA FromSecret"), "{}", outputs[1]);
        let ca = |s: &Side| std::fs::read_to_string(s.root.join("etc/ca/rootCA.crt")).unwrap();
        assert_eq!(ca(&sides[0]), ca(&sides[1]), "two CAs");
        for s in &sides {
            let cfg = std::fs::read_to_string(s.config("cloudcore")).unwrap();
            assert!(cfg.contains("ha:") && cfg.contains(&ha_ns), "{cfg}");
            assert!(
                s.log("cloudcore").contains("cloudhub HA: serving"),
                "{}",
                s.log("cloudcore")
            );
        }
        let leases = k8s.kubectl_ok(&["get", "leases", "-n", &ha_ns, "-o", "name"]);
        for id in ["cc-one", "cc-two"] {
            assert!(
                leases.contains(&format!("lease.coordination.k8s.io/cloudcore.{id}")),
                "{leases}"
            );
        }
    });
    for s in &sides {
        let o = s.keadm(&["reset"]);
        assert!(o.status.success(), "keadm reset: {}", text(&o));
    }
    let _ = k8s.kubectl(&["delete", "namespace", &ha_ns, "--wait=false"]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
