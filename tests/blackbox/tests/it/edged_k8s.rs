//! edged end to end with the real local Kubernetes control plane (`hack/local-k8s.sh`), the real
//! cloudcore and a real edgecore running pods on the containerd that `hack/test.sh` sets up:
//! the node registers itself and turns Ready, and a pod applied with kubectl runs and reports
//! Running with its pod IP.

use std::collections::HashMap;
use std::time::Duration;

use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};
use ke_testkit::eventually;
use ke_testkit::k8s::LocalK8s;

use crate::cluster::Cluster;

const T: Duration = Duration::from_secs(90);

fn by_node(node: &str) -> HashMap<String, String> {
    HashMap::from([("kubeedge.io/node".to_owned(), node.to_owned())])
}

/// Removes the node's sandboxes and containers by id, even when the test fails.
pub(crate) struct Cleanup(pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let node = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60)).unwrap();
                for k in c
                    .list_containers(Some(api::ContainerFilter {
                        label_selector: by_node(&node),
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
                        label_selector: by_node(&node),
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

/// The `edged:` section of an edgecore running `node`'s pods on the test containerd (node status
/// every 2 s).
pub(crate) fn containerd_edged(node: &str) -> String {
    format!(
        "  edged:\n    hostnameOverride: {node}\n    nodeIP: 127.0.0.1\n    runtimeType: remote\n    \
         remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock\n    \
         remoteImageEndpoint: unix:///run/containerd/containerd.sock\n    \
         podSandboxImage: docker.io/kubeedge/pause:3.6\n    imageGCHighThreshold: 100\n    nodeStatusUpdateFrequency: 2\n"
    )
}

#[tokio::test]
async fn edged_registers_its_node_and_runs_a_kubectl_pod() {
    let Some(k8s) = LocalK8s::shared() else { return };
    let id = std::process::id();
    let (node, ns) = (format!("edged-k8s-{id}"), format!("edged-{id}"));
    let _cleanup = Cleanup(node.clone());
    let c = Cluster::new(&[&node]);
    let cloud = c.cloud_with("", Some(&k8s.cloudcore_kubeconfig));
    let edged = containerd_edged(&node);
    let no_bus = "  eventbus:\n    enable: false\n";
    let _edge = c.edge_custom(&node, &cloud.ws, &cloud.quic, false, no_bus, false, &edged);

    // The node registers itself and turns Ready.
    let line = eventually(T, "node Ready in kubectl get nodes", || {
        let o = k8s.kubectl(&["get", "nodes", &node, "--no-headers"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        async move {
            out.split_whitespace()
                .nth(1)
                .is_some_and(|s| s == "Ready")
                .then_some(out)
        }
    })
    .await;
    assert!(line.contains("v1.17.1-kubeedge"), "{line}");
    let labels = k8s.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.metadata.labels}"]);
    assert!(labels.contains("node-role.kubernetes.io/edge"), "{labels}");
    let cpu = k8s.kubectl_ok(&["get", "node", &node, "-o", "jsonpath={.status.capacity.cpu}"]);
    assert!(cpu.parse::<u32>().is_ok_and(|n| n > 0), "{cpu}");

    // A pod applied with kubectl runs there and shows Running with its pod IP.
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
    ));
    let pod = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: {ns}}}
spec:
  nodeName: {node}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: docker.io/kubeedge/busybox:test
    command: [httpd, -f, -p, '8080']
"
    );
    eventually(T, "pod accepted", || {
        let ok = k8s.try_apply(&pod).is_ok();
        async move { ok.then_some(()) }
    })
    .await;
    let wide = eventually(T, "pod Running with an IP in kubectl get pods -o wide", || {
        let o = k8s.kubectl(&["get", "pods", "-n", &ns, "-o", "wide", "--no-headers"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let cols: Vec<&str> = out.split_whitespace().collect();
        let ok = cols.len() > 6
            && cols[2] == "Running"
            && cols[5].parse::<std::net::Ipv4Addr>().is_ok()
            && cols[6] == node;
        let r = ok.then_some(out.clone());
        async move { r }
    })
    .await;
    let ip = wide.split_whitespace().nth(5).unwrap().to_owned();
    let ready = k8s.kubectl_ok(&[
        "get",
        "pod",
        "web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "True");
    // The pod IP is the container's: httpd answers there.
    eventually(T, "httpd on the pod IP", || {
        let ip = ip.clone();
        async move { tokio::net::TcpStream::connect((ip.as_str(), 8080)).await.ok() }
    })
    .await;

    let _ = k8s.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    let _ = k8s.kubectl(&["delete", "node", &node, "--wait=false"]);
}
