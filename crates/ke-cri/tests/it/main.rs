//! ke-cri against the real containerd set up by `hack/setup-containerd.sh` (run by
//! `hack/test.sh`): images `docker.io/kubeedge/pause:3.6` and `docker.io/kubeedge/busybox:test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use ke_cri::{CONTAINERD_ENDPOINT, CriClient, api};

const BUSYBOX: &str = "docker.io/kubeedge/busybox:test";

fn client() -> CriClient {
    CriClient::new(CONTAINERD_ENDPOINT, Duration::from_secs(60)).unwrap()
}

/// Stops and removes what a test created, by id, even when the test panics.
struct Cleanup {
    sandboxes: Vec<(String, String)>,
    containers: Vec<String>,
    logs: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let sandboxes = std::mem::take(&mut self.sandboxes);
        let containers = std::mem::take(&mut self.containers);
        let logs = std::mem::take(&mut self.logs);
        // Drop is synchronous: run the CRI calls on a runtime of their own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = client();
                for id in &containers {
                    let _ = c.stop_container(id, Duration::ZERO).await;
                    let _ = c.remove_container(id).await;
                }
                for (id, cgroup) in &sandboxes {
                    let _ = c.stop_pod_sandbox(id).await;
                    let _ = c.remove_pod_sandbox(id).await;
                    ke_cri::remove_pod_cgroup(cgroup);
                }
                for dir in &logs {
                    let _ = std::fs::remove_dir_all(dir);
                }
            });
        })
        .join();
    }
}

fn sandbox_config(name: &str, uid: &str, host_port: i32) -> api::PodSandboxConfig {
    let ns_opts = api::NamespaceOption {
        network: api::NamespaceMode::Pod as i32,
        pid: api::NamespaceMode::Container as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "ke-cri-test".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: format!("/var/log/pods/ke-cri-test_{name}_{uid}"),
        port_mappings: vec![api::PortMapping {
            protocol: api::Protocol::Tcp as i32,
            container_port: 8080,
            host_port,
            host_ip: "127.0.0.1".into(),
        }],
        labels: HashMap::from([("ke-cri-test".to_owned(), uid.to_owned())]),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(ns_opts),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn version_status_and_images() {
    let c = client();
    let v = c.version().await.unwrap();
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    c.ensure_ready().await.unwrap();
    let img = c
        .image_status(BUSYBOX)
        .await
        .unwrap()
        .expect("busybox image imported");
    assert!(img.id.starts_with("sha256:"), "{}", img.id);
    // Present: no pull (which would try the unreachable registry).
    assert_eq!(c.ensure_image(BUSYBOX).await.unwrap(), img.id);
    assert!(
        c.image_status("docker.io/kubeedge/absent:0")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn errors_name_the_call() {
    let c = client();
    let e = c.container_status("no-such-container").await.unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(e.call(), Some("ContainerStatus"));
    assert!(e.to_string().starts_with("CRI ContainerStatus failed"), "{e}");

    let down = CriClient::new("unix:///nonexistent/cri.sock", Duration::from_secs(5)).unwrap();
    let e = down.version().await.unwrap_err();
    assert_eq!(e.call(), Some("Version"));
    assert!(e.to_string().contains("Unavailable"), "{e}");
}

#[tokio::test]
async fn pod_with_httpd_runs_execs_and_goes_away() {
    let c = client();
    let uid = uuid::Uuid::new_v4().to_string();
    let mut cleanup = Cleanup {
        sandboxes: vec![],
        containers: vec![],
        logs: vec![format!("/var/log/pods/ke-cri-test_httpd_{uid}")],
    };
    let sb_cfg = sandbox_config("httpd", &uid, 0);
    let sb = c.run_pod_sandbox(sb_cfg.clone()).await.unwrap();
    cleanup
        .sandboxes
        .push((sb.clone(), format!("/kubepods/besteffort/pod{uid}")));
    let st = c.pod_sandbox_status(&sb).await.unwrap();
    assert_eq!(st.state, api::PodSandboxState::SandboxReady as i32);
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "pod IP {ip:?}");

    let cfg = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "web".into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into()],
        args: vec![
            "mkdir -p /www && echo \"$GREETING\" > /www/index.html && exec httpd -f -p 8080 -h /www".into(),
        ],
        envs: vec![api::KeyValue {
            key: "GREETING".into(),
            value: "hello-cri".into(),
        }],
        log_path: "web/0.log".into(),
        ..Default::default()
    };
    let id = c.create_container(&sb, cfg, sb_cfg).await.unwrap();
    cleanup.containers.push(id.clone());
    c.start_container(&id).await.unwrap();
    let cs = c.container_status(&id).await.unwrap();
    assert_eq!(cs.state, api::ContainerState::ContainerRunning as i32);

    let listed = c
        .list_containers(Some(api::ContainerFilter {
            pod_sandbox_id: sb.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );

    // httpd answers inside the pod (ExecSync) and on the pod IP from the host.
    let mut out = Vec::new();
    for _ in 0..50 {
        let r = c
            .exec_sync(
                &id,
                &["wget", "-qO-", "http://127.0.0.1:8080/"],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        if r.exit_code == 0 {
            out = r.stdout;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(String::from_utf8_lossy(&out).trim(), "hello-cri");
    let mut s = tokio::net::TcpStream::connect((ip.as_str(), 8080)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.ends_with("hello-cri\n"), "{body}");

    c.stop_container(&id, Duration::ZERO).await.unwrap();
    let cs = c.container_status(&id).await.unwrap();
    assert_eq!(cs.state, api::ContainerState::ContainerExited as i32);
    c.remove_container(&id).await.unwrap();
    c.stop_pod_sandbox(&sb).await.unwrap();
    c.remove_pod_sandbox(&sb).await.unwrap();
    assert!(c.pod_sandbox_status(&sb).await.unwrap_err().is_not_found());
    let _ = ke_cri::remove_pod_cgroup(&format!("/kubepods/besteffort/pod{uid}"));
    let left = c
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: HashMap::from([("ke-cri-test".to_owned(), uid.clone())]),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty());
}
