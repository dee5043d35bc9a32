//! Edge autonomy with real pods: a pod the cloud sent earlier keeps running, untouched, across an
//! edgecore restart while the cloud is gone. edged removes every sandbox of its node that it is not
//! told about at start-up, so the same container surviving proves the pod list was served from the
//! edge's SQLite store. Needs the containerd that `hack/test.sh` sets up.

use std::collections::HashMap;
use std::time::Duration;

use ke_core::Message;
use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use serde_json::json;

use crate::cluster::{Cluster, wait_metric};

const NODE: &str = "edge-autonomy";
const LABEL_NODE: &str = "kubeedge.io/node";

fn cri() -> CriClient {
    CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60)).unwrap()
}

fn by_node() -> HashMap<String, String> {
    HashMap::from([(LABEL_NODE.to_owned(), NODE.to_owned())])
}

/// Removes this test's sandboxes and containers by id, even when the test fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = cri();
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
                for sb in c
                    .list_pod_sandboxes(Some(api::PodSandboxFilter {
                        label_selector: by_node(),
                        ..Default::default()
                    }))
                    .await
                    .unwrap_or_default()
                {
                    let _ = c.stop_pod_sandbox(&sb.id).await;
                    let _ = c.remove_pod_sandbox(&sb.id).await;
                    if let Some(m) = sb.metadata {
                        ke_cri::remove_pod_cgroup(&format!("/kubepods/besteffort/pod{}", m.uid));
                        let _ = std::fs::remove_dir_all(format!(
                            "/var/log/pods/{}_{}_{}",
                            m.namespace, m.name, m.uid
                        ));
                    }
                }
            });
        })
        .join();
    }
}

/// Ids of this node's running containers.
async fn running() -> Vec<String> {
    let mut ids: Vec<String> = cri()
        .list_containers(Some(api::ContainerFilter {
            label_selector: by_node(),
            ..Default::default()
        }))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(ch) = it.next() {
        if ch == '\u{1b}' {
            for c in it.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

#[tokio::test]
async fn running_pod_survives_an_offline_edgecore_restart_untouched() {
    let _cleanup = Cleanup;
    let c = Cluster::new(&[NODE]);
    let mut cloud = c.cloud_config("");
    let edged = format!(
        "  edged:\n    hostnameOverride: {NODE}\n    nodeIP: 127.0.0.1\n    runtimeType: remote\n    \
         remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock\n    \
         remoteImageEndpoint: unix:///run/containerd/containerd.sock\n    podSandboxImage: docker.io/kubeedge/pause:3.6\n    imageGCHighThreshold: 100\n"
    );
    let no_bus = "  eventbus:\n    enable: false\n";
    let mut edge = c.edge_custom(NODE, &cloud.ws, &cloud.quic, false, no_bus, false, &edged);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;

    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": "6d1c1f0e-0000-4000-8000-0000000000a1", "resourceVersion": "11"},
        "spec": {"nodeName": NODE, "restartPolicy": "Always", "containers": [{"name": "main",
            "image": "docker.io/kubeedge/busybox:test", "command": ["httpd", "-f", "-p", "8080"]}]}});
    let m = Message::new(
        "edgecontroller",
        "resource",
        "insert",
        format!("node/{NODE}/default/pod/web"),
        pod,
    )
    .with_resource_version("11");
    let reply = ke_transport::unix::request(&cloud.sock, &m, 1 << 20)
        .await
        .unwrap();
    assert_eq!(reply.content_str(), Some("OK"), "{reply:?}");
    let before = ke_testkit::eventually(Duration::from_secs(60), "the pod's container running", || async {
        let r = running().await;
        (r.len() == 1).then_some(r)
    })
    .await;

    // The cloud goes away, then edgecore restarts with no cloud to ask.
    cloud.daemon.stop();
    edge.daemon.stop();
    let edge = c.edge_custom(NODE, &cloud.ws, &cloud.quic, false, no_bus, false, &edged);
    ke_testkit::eventually(Duration::from_secs(30), "edged's start-up pod list", || async {
        let log = strip_ansi(&edge.daemon.log());
        // The restarted process appends to the same log: take its last start-up line.
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("initial pod list from metaManager"))?
            .to_owned();
        log.matches("edgecore started").count().ge(&2).then_some(line)
    })
    .await;
    let line = strip_ansi(&edge.daemon.log())
        .lines()
        .rev()
        .find(|l| l.contains("initial pod list"))
        .unwrap()
        .to_owned();
    assert!(line.contains("pods=1"), "the pod came from SQLite: {line}");
    // Give edged's orphan collection and relist time to act, then the same container must still run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        running().await,
        before,
        "same container, not recreated, not removed"
    );
}
