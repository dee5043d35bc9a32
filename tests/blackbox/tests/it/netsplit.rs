//! A network split between cloudcore and an edge, against the real local Kubernetes control plane:
//! edgecore runs in a network namespace of its own ([`ke_testkit::netns`]), its link is cut while
//! 500 objects reaching its node change, then restored; the edge's SQLite must converge to exactly
//! the API state, and cloudcore must resend only what changed (the keyed acked lane, no relist).
//! Then cloudcore is restarted in the middle of another batch of changes, and the edge must
//! converge again (the relist on start plus ObjectSync bring it there).
//!
//! `KE_NETSPLIT_SECS` sets how long the link stays cut (default 60).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ke_testkit::eventually;
use ke_testkit::k8s::LocalK8s;
use ke_testkit::netns::NetNs;
use serde_json::Value;

use crate::cluster::{Cluster, Edge, metric, metric_series, wait_metric};

const CONVERGE: Duration = Duration::from_secs(300);
/// Pods in the working set; pod `p<i>` with `i < REF_PODS` mounts config map `cm-<i>`.
const PODS: usize = 600;
const REF_PODS: usize = 400;

/// `p<i>` on `node`, mounting `cm-<i>` when `i < REF_PODS`, labelled `rev: <rev>`.
pub(crate) fn pod(ns: &str, node: &str, i: usize, rev: u32) -> String {
    let vol = if i < REF_PODS {
        format!(
            "  volumes: [{{name: v, configMap: {{name: cm-{i}, optional: true}}}}]\n  containers: [{{name: c, image: busybox, volumeMounts: [{{name: v, mountPath: /cfg}}]}}]\n"
        )
    } else {
        "  containers: [{name: c, image: busybox}]\n".to_owned()
    };
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {ns}, labels: {{rev: \"{rev}\"}}}}\nspec:\n  nodeName: {node}\n  automountServiceAccountToken: false\n{vol}"
    )
}

pub(crate) fn configmap(ns: &str, i: usize, rev: u32) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {ns}}}\ndata: {{rev: \"{rev}\"}}\n"
    )
}

pub(crate) fn apply_all(k8s: &LocalK8s, docs: impl Iterator<Item = String>) {
    let yaml: String = docs.collect();
    k8s.apply(&yaml);
}

pub(crate) fn force_delete_pods(k8s: &LocalK8s, ns: &str, range: std::ops::Range<usize>) {
    let mut args = vec![
        "delete".to_owned(),
        "pod".to_owned(),
        "-n".to_owned(),
        ns.to_owned(),
    ];
    args.extend(range.map(|i| format!("p{i}")));
    args.extend(["--grace-period=0".into(), "--force".into(), "--wait=false".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    k8s.kubectl_ok(&args);
}

/// `<ns>/<kind>/<name>` → resourceVersion of the pods and `cm-*` config maps in `ns`, in the API.
pub(crate) fn api_state(k8s: &LocalK8s, ns: &str) -> BTreeMap<String, String> {
    let out = k8s.kubectl_ok(&["get", "pods,configmaps", "-n", ns, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut m = BTreeMap::new();
    for it in v["items"].as_array().unwrap() {
        let name = it["metadata"]["name"].as_str().unwrap();
        let kind = match it["kind"].as_str().unwrap() {
            "Pod" => "pod",
            "ConfigMap" if name.starts_with("cm-") => "configmap",
            _ => continue,
        };
        m.insert(
            format!("{ns}/{kind}/{name}"),
            it["metadata"]["resourceVersion"].as_str().unwrap().to_owned(),
        );
    }
    m
}

/// The same view of the edge's `meta` table (read as another process would).
pub(crate) fn edge_state(edge: &Edge, ns: &str) -> BTreeMap<String, String> {
    let Ok(db) = ke_store::rusqlite::Connection::open(&edge.db) else {
        return BTreeMap::new();
    };
    let Ok(mut st) = db.prepare("SELECT key, value FROM meta WHERE key LIKE ?1") else {
        return BTreeMap::new();
    };
    let rows = st.query_map([format!("{ns}/%")], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    });
    let Ok(rows) = rows else {
        return BTreeMap::new();
    };
    rows.filter_map(Result::ok)
        .filter(|(k, _)| k.contains("/pod/") || k.contains("/configmap/"))
        .map(|(k, v)| {
            let rv = serde_json::from_str::<Value>(&v)
                .ok()
                .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (k, rv)
        })
        .collect()
}

/// Pods and config maps cloudhub wrote to edges. The shared cluster's other tests create and
/// delete Services and Endpoints, which go to every edge node (this one too): they are not this
/// test's traffic, so only the kinds that reach a node through its own pods are counted.
async fn node_objects_out(addr: &str) -> f64 {
    let mut n = 0.0;
    for op in ["insert", "update", "delete"] {
        for kind in ["pod", "configmap"] {
            n += metric_series(
                addr,
                &format!(r#"cloudhub_messages_out_total{{operation="{op}",kind="{kind}"}}"#),
            )
            .await;
        }
    }
    n
}

/// Waits until the edge holds exactly the API's objects at the API's resource versions.
pub(crate) async fn converge(k8s: &LocalK8s, edge: &Edge, ns: &str, what: &str) -> BTreeMap<String, String> {
    let mut last = (0, 0, 0);
    let r = tokio::time::timeout(CONVERGE, async {
        loop {
            let (api, at_edge) = (api_state(k8s, ns), edge_state(edge, ns));
            if api == at_edge {
                return api;
            }
            let missing = api.iter().filter(|(k, v)| at_edge.get(*k) != Some(v)).count();
            let extra = at_edge.keys().filter(|k| !api.contains_key(*k)).count();
            last = (api.len(), missing, extra);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    r.unwrap_or_else(|_| {
        panic!(
            "{what}: no convergence in {CONVERGE:?}: API {} objects, {} missing/stale at the edge, {} extra",
            last.0, last.1, last.2
        )
    })
}

#[tokio::test]
async fn edge_converges_after_a_netsplit_and_a_cloudcore_restart() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let Some(net) = NetNs::create() else { return };
    let split = Duration::from_secs(
        std::env::var("KE_NETSPLIT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let id = std::process::id();
    let (node, ns) = (format!("split-edge-{id}"), format!("split-{id}"));
    let host = net.host_ip().to_string();
    let c = Cluster::new_with_sans(&[&node], &[&host]);
    let mut cloud = c.cloud_on(&host, "", Some(&k8s.cloudcore_kubeconfig));
    let edge = c.edge_in(&net, &node, &cloud);
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
    eventually(Duration::from_secs(60), "namespace ready for pods", || {
        let ok = k8s.try_apply(&pod(&ns, &node, 0, 0)).is_ok();
        async move { ok.then_some(()) }
    })
    .await;

    // --- the working set: 600 pods, then the 300 config maps the first 300 of them mount -------
    // (a config map reaches a node once a pod there references it; created after the pods, each
    // one is pushed as an insert.)
    apply_all(&k8s, (0..PODS).map(|i| pod(&ns, &node, i, 0)));
    eventually(CONVERGE, "all pods at the edge", || {
        let n = edge_state(&edge, &ns).len();
        async move { (n == PODS).then_some(()) }
    })
    .await;
    apply_all(&k8s, (0..300).map(|i| configmap(&ns, i, 0)));
    let synced = converge(&k8s, &edge, &ns, "working set").await;
    eprintln!("working set synced: {} objects", synced.len());
    // The per-controller metrics count that work.
    let sent = wait_metric(
        &cloud.metrics,
        "controller_messages_sent",
        |v| v >= synced.len() as f64,
        "controller_messages_sent covers the working set",
    )
    .await;
    let events = metric(&cloud.metrics, "controller_events_handled")
        .await
        .unwrap_or(0.0);
    assert!(
        events >= synced.len() as f64,
        "controller_events_handled {events}"
    );
    eprintln!("controller metrics: {sent} messages sent, {events} events handled");

    // --- the split: 500 changes while the link is down ---------------------------------------
    net.cut();
    let cut_at = Instant::now();
    let out_at_cut = node_objects_out(&cloud.metrics).await;
    apply_all(&k8s, (300..400).map(|i| configmap(&ns, i, 0))); // 100 creates
    apply_all(&k8s, (0..100).map(|i| configmap(&ns, i, 1))); // 100 updates
    apply_all(&k8s, (PODS..PODS + 100).map(|i| pod(&ns, &node, i, 0))); // 100 creates
    apply_all(&k8s, (100..200).map(|i| pod(&ns, &node, i, 1))); // 100 updates
    force_delete_pods(&k8s, &ns, 200..300); // 100 deletes
    let changed = 500.0;
    let wrote_in = cut_at.elapsed();
    tokio::time::sleep(split.saturating_sub(wrote_in)).await;
    let out_at_restore = node_objects_out(&cloud.metrics).await;
    let deletes_out = r#"cloudhub_messages_out_total{operation="delete",kind="pod"}"#;
    let deletes_at_restore = metric_series(&cloud.metrics, deletes_out).await;
    let resends_at_restore = metric(&cloud.metrics, "cloudhub_resends").await.unwrap_or(0.0);
    net.restore();
    let api = converge(&k8s, &edge, &ns, "after the split").await;
    let out_after = node_objects_out(&cloud.metrics).await;
    let resent = out_after - out_at_restore;
    // Give the synccontroller a few passes (5 s each) after convergence: a delete it re-offers
    // while the edge's ack is not yet recorded in ObjectSync would show up now.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let deletes_after = metric_series(&cloud.metrics, deletes_out).await - deletes_at_restore;
    let resends_after = metric(&cloud.metrics, "cloudhub_resends").await.unwrap_or(0.0) - resends_at_restore;
    eprintln!(
        "netsplit {split:?} (changes written in {wrote_in:?}): {} objects in the API, {changed} changed; \
         cloudhub sent {} messages into the dead link, {resent} after reconnect",
        api.len(),
        out_at_restore - out_at_cut
    );
    // Slack: cloudhub's ack window (64), which an old session not yet known dead may resend
    // once more when the link comes back before the keepalive (30 s) drops it.
    let mut by_verb = Vec::new();
    for verb in ["list", "get", "delete"] {
        let s = format!(r#"controller_api_requests_total{{controller="synccontroller",verb="{verb}"}}"#);
        by_verb.push(format!("{verb} {}", metric_series(&cloud.metrics, &s).await));
    }
    let passes = metric_series(
        &cloud.metrics,
        r#"controller_events_handled_total{controller="synccontroller"}"#,
    )
    .await;
    eprintln!(
        "synccontroller API requests so far: {} in {passes} passes",
        by_verb.join(", ")
    );
    eprintln!(
        "after reconnect: {deletes_after} deletes sent for 100 deleted pods, {resends_after} ack-timeout resends"
    );
    assert!(
        deletes_after <= 100.0 + resends_after,
        "{deletes_after} deletes after reconnect for 100 deleted pods ({resends_after} ack-timeout resends): \
         an acked delete offered again?"
    );
    assert!(
        resent <= changed + 64.0,
        "{resent} messages after reconnect for {changed} changed objects (working set {}): a relist?",
        api.len()
    );

    // --- cloudcore restarts in the middle of 200 more changes ---------------------------------
    apply_all(&k8s, (300..350).map(|i| configmap(&ns, i, 1))); // 50 updates
    apply_all(&k8s, (PODS + 100..PODS + 150).map(|i| pod(&ns, &node, i, 0))); // 50 creates
    cloud.daemon.stop();
    apply_all(&k8s, (400..450).map(|i| pod(&ns, &node, i, 1))); // 50 updates while down
    force_delete_pods(&k8s, &ns, 450..500); // 50 deletes while down
    cloud.restart(c.path());
    let api = converge(&k8s, &edge, &ns, "after the cloudcore restart").await;
    eprintln!("cloudcore restart: converged on {} objects", api.len());

    drop(edge);
    drop(net);
    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
