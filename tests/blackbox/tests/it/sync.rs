//! Reliable sync against the real local Kubernetes control plane: ObjectSync bookkeeping on acks
//! and the synccontroller's resync after an edge missed a delete (spec cloudhub-edgehub.md §7.2–§7.4).

use std::time::Duration;

use ke_testkit::eventually;
use ke_testkit::k8s::LocalK8s;

use crate::cluster::{Cluster, metric_series, wait_metric};

const T: Duration = Duration::from_secs(60);

/// `status.objectResourceVersion` of ObjectSync `name` in `ns`, `None` when it does not exist.
fn object_sync_rv(k8s: &LocalK8s, ns: &str, name: &str) -> Option<String> {
    let o = k8s.kubectl(&[
        "get",
        "objectsyncs.reliablesyncs.kubeedge.io",
        name,
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.objectKind}/{.spec.objectName}/{.status.objectResourceVersion}",
    ]);
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

#[tokio::test]
async fn objectsync_records_delivery_and_resync_deletes_what_the_edge_missed() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, ns) = (format!("sync-edge-{id}"), format!("sync-{id}"));
    let c = Cluster::new(&[&node]);
    let mut cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let mut edge = c.edge(&node, &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
    ));
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: nginx}}]\n"
    );
    eventually(T, "pod accepted", || {
        let ok = k8s.try_apply(&pod).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let key = format!("{ns}/pod/web");
    eventually(T, "pod row at the edge", || {
        let row = edge.meta(&key);
        async move { row }
    })
    .await;

    // The ack is recorded: ObjectSync `<node>.<uid>` with the pod's current resourceVersion.
    let uid = k8s.kubectl_ok(&["get", "pod", "web", "-n", &ns, "-o", "jsonpath={.metadata.uid}"]);
    let sync_name = format!("{node}.{}", uid.trim());
    eventually(T, "objectsync with the pod's resourceVersion", || {
        let rv = k8s.kubectl_ok(&[
            "get",
            "pod",
            "web",
            "-n",
            &ns,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        let got = object_sync_rv(&k8s, &ns, &sync_name);
        let want = format!("pod/web/{}", rv.trim());
        async move { got.filter(|g| *g == want) }
    })
    .await;

    // The edge goes away; the pod is deleted meanwhile.
    edge.daemon.stop();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 0.0,
        "edge gone",
    )
    .await;
    k8s.kubectl_ok(&["delete", "pod", "web", "-n", &ns, "--grace-period=0", "--force"]);
    eventually(T, "pod gone from Kubernetes", || {
        let gone = !k8s.kubectl(&["get", "pod", "web", "-n", &ns]).status.success();
        async move { gone.then_some(()) }
    })
    .await;
    // cloudcore restarts with an empty queue store: the queued delete is lost, only the
    // synccontroller (ObjectSync without its object) can bring it to the edge.
    cloud.daemon.stop();
    for f in [
        "cloudhub-queue.db",
        "cloudhub-queue.db-wal",
        "cloudhub-queue.db-shm",
    ] {
        let _ = std::fs::remove_file(c.path().join(f));
    }
    cloud.restart(c.path());
    let edge = c.edge(&node, &cloud, false);
    eventually(T, "pod row removed at the edge", || {
        let gone = edge.meta(&key).is_none();
        async move { gone.then_some(()) }
    })
    .await;
    eventually(T, "objectsync removed once the delete is acked", || {
        let gone = object_sync_rv(&k8s, &ns, &sync_name).is_none();
        async move { gone.then_some(()) }
    })
    .await;

    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn objectsyncs_of_a_node_deleted_from_kubernetes_are_removed() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, ns) = (format!("gone-edge-{id}"), format!("gone-{id}"));
    let c = Cluster::new(&[&node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let edge = c.edge(&node, &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
    ));
    let pods: String = (0..3)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web{i}, namespace: {ns}}}\nspec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: nginx}}]\n"
            )
        })
        .collect();
    eventually(T, "pods accepted", || {
        let ok = k8s.try_apply(&pods).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let syncs_of_node = || {
        let out = k8s.kubectl_ok(&[
            "get",
            "objectsyncs.reliablesyncs.kubeedge.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        out.split_whitespace()
            .filter(|n| n.starts_with(&format!("{node}.")))
            .count()
    };
    eventually(T, "three objectsyncs recorded", || {
        let n = syncs_of_node();
        async move { (n == 3).then_some(()) }
    })
    .await;
    assert!(edge.meta(&format!("{ns}/pod/web0")).is_some());

    // The edge goes away for good (no ack can remove anything now), then its node leaves
    // Kubernetes: its records go.
    let mut edge = edge;
    edge.daemon.stop();
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 0.0,
        "edge gone",
    )
    .await;
    k8s.kubectl_ok(&["delete", "node", &node]);
    eventually(T, "objectsyncs of the deleted node removed", || {
        let n = syncs_of_node();
        async move { (n == 0).then_some(()) }
    })
    .await;

    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}

#[tokio::test]
async fn synccontroller_lists_only_objectsyncs() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, ns) = (format!("lists-edge-{id}"), format!("lists-{id}"));
    let c = Cluster::new(&[&node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let edge = c.edge(&node, &cloud, false);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n  labels: {{node-role.kubernetes.io/edge: \"\"}}\n"
    ));
    // Objects of three kinds reach the edge: a pod, a service, then the config map the pod
    // mounts (sent once a pod of the node references it).
    let objects = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}\nspec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n  containers: [{{name: c, image: nginx}}]\n  volumes: [{{name: v, configMap: {{name: cfg}}}}]\n"
    );
    eventually(T, "objects accepted", || {
        let ok = k8s.try_apply(&objects).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    eventually(T, "pod row at the edge", || {
        let row = edge.meta(&format!("{ns}/pod/web"));
        async move { row }
    })
    .await;
    k8s.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: {ns}}}\ndata: {{a: b}}\n"
    ));
    eventually(T, "objectsyncs of a pod, a configmap and a service", || {
        let out = k8s.kubectl_ok(&[
            "get",
            "objectsyncs.reliablesyncs.kubeedge.io",
            "-n",
            &ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.objectKind}{\"\\n\"}{end}",
        ]);
        let kinds: std::collections::BTreeSet<String> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{node}.")))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        let all = ["configmap", "pod", "service"].iter().all(|k| kinds.contains(*k));
        async move { all.then_some(()) }
    })
    .await;

    // Over several passes, the synccontroller's LISTs are its ObjectSync lists alone (one per
    // pass; before the shared caches it also listed nodes, pods and every kind in use).
    let passes = r#"controller_events_handled_total{controller="synccontroller"}"#;
    let lists = r#"controller_api_requests_total{controller="synccontroller",verb="list"}"#;
    let (p0, l0) = (
        metric_series(&cloud.metrics, passes).await,
        metric_series(&cloud.metrics, lists).await,
    );
    eventually(T, "three more synccontroller passes", || {
        let addr = cloud.metrics.clone();
        async move { (metric_series(&addr, passes).await >= p0 + 3.0).then_some(()) }
    })
    .await;
    let (l1, p1) = (
        metric_series(&cloud.metrics, lists).await,
        metric_series(&cloud.metrics, passes).await,
    );
    println!("synccontroller: {} LISTs in {} passes", l1 - l0, p1 - p0);
    assert!(
        l1 - l0 <= p1 - p0 + 1.0,
        "{} lists in {} passes",
        l1 - l0,
        p1 - p0
    );
    assert!(l1 >= 1.0, "the ObjectSync list is counted");

    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
