//! EdgeController against the real local Kubernetes control plane (`hack/local-k8s.sh`), the real
//! cloudcore and a real edgecore (or a fake edge speaking the link protocol where edged would).

use std::time::Duration;

use ke_core::Message;
use ke_testkit::k8s::LocalK8s;
use ke_testkit::{FakeEdge, eventually};
use serde_json::{Value, json};

use crate::cluster::{Cluster, wait_metric};

const T: Duration = Duration::from_secs(30);

/// The first message (already `seen`, or next on `fake`) that `pred` accepts; others are kept in `seen`.
async fn first(
    fake: &mut FakeEdge,
    seen: &mut Vec<Message>,
    what: &str,
    pred: impl Fn(&Message) -> bool,
) -> Message {
    if let Some(i) = seen.iter().position(&pred) {
        return seen.remove(i);
    }
    let deadline = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < deadline {
        if let Some(m) = fake.recv(Duration::from_secs(1)).await {
            if pred(&m) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!("no {what} within {T:?}; seen: {seen:?}");
}

fn ready_status(k8s: &LocalK8s, node: &str) -> Option<String> {
    let o = k8s.kubectl(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn node_status(now: &str) -> Value {
    json!({
        "capacity": {"cpu": "2", "memory": "2Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "EdgeReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                     "containerRuntimeVersion": "", "kubeletVersion": "v1.20.2-kubeedge", "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64"}
    })
}

fn now_rfc3339() -> String {
    let o = std::process::Command::new("date")
        .args(["-u", "+%FT%TZ"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[tokio::test]
async fn edgecontroller_against_kubernetes_edgecore_and_a_fake_edge() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (edge_node, fake_node, ns) = (
        format!("ec-edge-{id}"),
        format!("ec-fake-{id}"),
        format!("ec-{id}"),
    );
    let c = Cluster::new(&[&edge_node, &fake_node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));

    // --- upstream: a fake edge registers its node and reports it Ready -----------------------
    let mut fake = eventually(T, "cloudhub accepts the fake edge", || {
        let f = FakeEdge::ws(&cloud.ws, &fake_node, c.pki.client_tls(&fake_node));
        async move { f.await.ok() }
    })
    .await;
    let now = now_rfc3339();
    let reg = Message::new(
        "edged",
        "meta",
        "insert",
        format!("default/nodestatus/{fake_node}"),
        json!({"metadata": {"creationTimestamp": null}, "spec": {}, "status": node_status(&now)}),
    )
    .with_sync(true);
    fake.send(&reg).await;
    let mut seen = Vec::new();
    let r = first(&mut fake, &mut seen, "registration reply", |m| {
        m.parent_id() == reg.id()
    })
    .await;
    assert_eq!(r.operation(), "response");
    assert_eq!(r.source(), "edgecontroller");
    assert_eq!(r.resource(), format!("default/node/{fake_node}"));
    assert_eq!(r.content, json!("OK"));
    let labels = k8s.kubectl_ok(&["get", "node", &fake_node, "-o", "jsonpath={.metadata.labels}"]);
    assert!(labels.contains("node-role.kubernetes.io/edge"), "{labels}");

    let upd = Message::new(
        "edged",
        "meta",
        "update",
        format!("default/nodestatus/{fake_node}"),
        json!({"UID": "", "Status": node_status(&now_rfc3339()),
               "ExtendResources": {"nvidia.com/gpu": [{"name": "nvidia0", "type": "Tesla K80", "capacity": "11441Mi"}]}}),
    )
    .with_sync(true);
    fake.send(&upd).await;
    let r = first(&mut fake, &mut seen, "status reply", |m| {
        m.parent_id() == upd.id()
    })
    .await;
    assert_eq!(r.content, json!("OK"));
    assert!(
        !r.header.resource_version.is_empty(),
        "node status reply carries the node's RV"
    );
    assert_eq!(ready_status(&k8s, &fake_node).as_deref(), Some("True"));
    let gpu = k8s.kubectl_ok(&[
        "get",
        "node",
        &fake_node,
        "-o",
        "jsonpath={.metadata.annotations.huawei\\.com/gpu-status}",
    ]);
    assert_eq!(gpu, r#"[{"healthy":true,"id":"nvidia0"}]"#);
    // Turning Ready brings the service and endpoints lists (the `kubernetes` service at least).
    let sl = first(&mut fake, &mut seen, "servicelist", |m| {
        m.resource() == "namespace/servicelist/service"
    })
    .await;
    assert_eq!((sl.operation(), sl.source()), ("update", "edgecontroller"));
    assert!(
        sl.content
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["metadata"]["name"] == "kubernetes")),
        "{}",
        sl.content
    );
    first(&mut fake, &mut seen, "endpointslist", |m| {
        m.resource() == "namespace/endpointslist/endpoints" && m.content.is_array()
    })
    .await;

    // --- downstream to the real edgecore -------------------------------------------------------
    let edge = c.edge(&edge_node, &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 2.0,
        "both edges connected",
    )
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {edge_node}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
    ));
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {ns}}}
spec:
  nodeName: {edge_node}
  automountServiceAccountToken: false
  containers:
  - name: c
    image: nginx
    envFrom:
    - secretRef: {{name: creds}}
  volumes:
  - name: cfg
    configMap: {{name: cfg}}
"
    );
    // The namespace's default ServiceAccount appears shortly after the namespace.
    eventually(T, "pod accepted", || {
        let ok = k8s.try_apply(&pod).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let key = format!("{ns}/pod/web");
    let (kind, value) = eventually(T, "pod row at the edge", || {
        let row = edge.meta(&key);
        async move { row }
    })
    .await;
    assert_eq!(kind, "pod");
    assert!(value.contains(&edge_node), "{value}");

    // Config map and secret referenced by the pod: pushed when created, updated when changed.
    k8s.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {ns}}}\ndata: {{a: one}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\nstringData: {{user: me}}\n"
    ));
    let (cm_key, secret_key) = (format!("{ns}/configmap/cfg"), format!("{ns}/secret/creds"));
    eventually(T, "config map and secret rows", || {
        let both = edge.meta(&cm_key).zip(edge.meta(&secret_key));
        async move { both }
    })
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {ns}}}\ndata: {{a: two}}\n"
    ));
    eventually(T, "config map update at the edge", || {
        let v = edge.meta(&cm_key).filter(|(_, v)| v.contains("two"));
        async move { v }
    })
    .await;

    // Remote query from the (fake) edge: answered with the object and its RV.
    let q = Message::new(
        "edged",
        "meta",
        "query",
        format!("{ns}/configmap/cfg"),
        Value::Null,
    )
    .with_sync(true);
    fake.send(&q).await;
    let r = first(&mut fake, &mut seen, "query reply", |m| m.parent_id() == q.id()).await;
    assert_eq!(r.operation(), "response");
    assert_eq!(r.resource(), format!("{ns}/configmap/cfg"));
    assert!(!r.header.resource_version.is_empty());
    assert_eq!(r.content["data"]["a"], json!("two"));
    fake.send(&r.ack()).await;

    // Graceful delete: the edge sees the deletionTimestamp (update); forced delete removes the row.
    k8s.kubectl_ok(&["delete", "pod", "web", "-n", &ns, "--wait=false"]);
    eventually(T, "pod marked for deletion at the edge", || {
        let v = edge.meta(&key).filter(|(_, v)| v.contains("deletionTimestamp"));
        async move { v }
    })
    .await;
    k8s.kubectl_ok(&["delete", "pod", "web", "-n", &ns, "--grace-period=0", "--force"]);
    k8s.kubectl_ok(&["delete", "configmap", "cfg", "-n", &ns]);
    eventually(T, "pod and config map rows removed", || {
        let gone = edge.meta(&key).is_none() && edge.meta(&cm_key).is_none();
        async move { gone.then_some(()) }
    })
    .await;

    // A config map that exists before the pod mounting it reaches the edge with the pod (it
    // used to wait for its next change; after a cloudcore restart, every object is "before").
    k8s.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: early, namespace: {ns}}}\ndata: {{a: early}}\n"
    ));
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: late, namespace: {ns}}}\nspec:\n  nodeName: {edge_node}\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: busybox}}]\n  volumes: [{{name: v, configMap: {{name: early}}}}]\n"
    ));
    let early = format!("{ns}/configmap/early");
    eventually(T, "the earlier config map at the edge with its pod", || {
        let v = edge.meta(&early).filter(|(_, v)| v.contains("early"));
        async move { v }
    })
    .await;

    // --- pod status from the edge, and a disconnect -------------------------------------------
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: st, namespace: {ns}}}\nspec:\n  nodeName: {fake_node}\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: busybox}}]\n"
    ));
    let ps = Message::new(
        "edged",
        "meta",
        "update",
        format!("{ns}/podstatus/st"),
        json!({"UID": "", "Name": "st", "Status": {"phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.0.0.9"}}),
    );
    fake.send(&ps).await;
    eventually(T, "pod status Running", || {
        let o = k8s.kubectl(&["get", "pod", "st", "-n", &ns, "-o", "jsonpath={.status.phase}"]);
        let ok = String::from_utf8_lossy(&o.stdout).trim() == "Running";
        async move { ok.then_some(()) }
    })
    .await;

    drop(fake);
    eventually(T, "fake node NotReady after its link dropped", || {
        let s = ready_status(&k8s, &fake_node);
        async move { s.filter(|s| s == "Unknown") }
    })
    .await;
    // No eviction by us: the pod is still there.
    k8s.kubectl_ok(&["get", "pod", "st", "-n", &ns]);

    // Clean up the cluster-scoped objects (the namespace takes its pods).
    let _ = k8s.kubectl(&["delete", "node", &edge_node, &fake_node, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
