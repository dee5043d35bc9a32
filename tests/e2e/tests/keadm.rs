//! keadm's refusals: each failure a user can run into gets a clear message, exits non-zero and
//! leaves nothing running or written (no cluster needed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use ke_testkit::{bin, free_tcp_port};

fn keadm(root: &Path, args: &[&str]) -> Output {
    Command::new(bin("keadm"))
        .args(args)
        .arg("--config-dir")
        .arg(root.join("etc"))
        .arg("--state-dir")
        .arg(root.join("var"))
        .arg("--log-dir")
        .arg(root.join("log"))
        .output()
        .expect("keadm")
}

/// Runs keadm, expects failure with `needle` in its error, and nothing written under `root`.
fn refused(args: &[&str], needle: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let o = keadm(tmp.path(), args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "keadm {args:?} succeeded:\n{err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "keadm {args:?}: {needle:?} not in:\n{err}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(
        left.iter().all(|e| !e.path().join("config").exists()),
        "keadm {args:?} wrote a configuration before failing"
    );
    err
}

/// A syntactically valid token (`<sha256 hex>.<jwt>`) expiring at `exp`, signed with nothing
/// cloudcore knows.
fn token(exp: u64) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}.{}",
        "ab".repeat(32),
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(&format!(r#"{{"exp":{exp}}}"#)),
        b64("not-a-signature")
    )
}

fn far_future() -> u64 {
    4_000_000_000
}

#[test]
fn init_refuses_a_port_in_use() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let err = refused(
        &[
            "init",
            "--listen-address",
            "127.0.0.1",
            "--port",
            &port,
            "--mode",
            "background",
        ],
        "in use",
    );
    assert!(err.contains(&port), "{err}");
}

#[test]
fn init_without_a_reachable_cluster_says_so() {
    let (ws, https) = (free_tcp_port().to_string(), free_tcp_port().to_string());
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    refused(
        &[
            "init",
            "--kube-config",
            "/nonexistent/kubeconfig",
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
        ],
        "/nonexistent/kubeconfig",
    );
}

fn join_args<'a>(cloud: &'a str, token: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "join",
        "--cloudcore-ipport",
        cloud,
        "--token",
        token,
        "--edgenode-name",
        "edge-refused",
        "--mode",
        "background",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn join_refuses_malformed_and_expired_tokens() {
    let cloud = format!("127.0.0.1:{}", free_tcp_port());
    refused(&join_args(&cloud, "not-a-token", &[]), "token");
    let expired = token(1_000_000_000);
    refused(&join_args(&cloud, &expired, &[]), "expired");
}

#[test]
fn join_refuses_a_bad_node_name() {
    let cloud = format!("127.0.0.1:{}", free_tcp_port());
    let t = token(far_future());
    let mut a = join_args(&cloud, &t, &[]);
    a[6] = "Not_A_Node";
    refused(&a, "node name");
}

#[test]
fn join_without_a_container_runtime_says_so() {
    let cloud = format!("127.0.0.1:{}", free_tcp_port());
    let t = token(far_future());
    let mqtt = free_tcp_port().to_string();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    refused(
        &join_args(
            &cloud,
            &t,
            &[
                "--remote-runtime-endpoint",
                "unix:///nonexistent/containerd.sock",
                "--mqtt-port",
                &mqtt,
                "--metrics-address",
                &metrics,
            ],
        ),
        "no container runtime",
    );
}

#[test]
fn join_to_an_unreachable_cloud_says_so() {
    // Nothing listens on either port.
    let cloud = format!("127.0.0.1:{}", free_tcp_port());
    let cert_port = free_tcp_port().to_string();
    let t = token(far_future());
    let mqtt = free_tcp_port().to_string();
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    refused(
        &join_args(
            &cloud,
            &t,
            &[
                "--certport",
                &cert_port,
                "--mqtt-port",
                &mqtt,
                "--metrics-address",
                &metrics,
            ],
        ),
        "cannot reach cloudcore",
    );
}

#[test]
fn reset_with_nothing_installed_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let o = keadm(tmp.path(), &["reset"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to reset"));
}

#[test]
fn version_prints_in_each_format() {
    let run = |args: &[&str]| {
        let o = Command::new(bin("keadm")).args(args).output().expect("keadm");
        assert!(o.status.success(), "keadm {args:?}");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let v: serde_json::Value = serde_json::from_str(&run(&["version", "-o", "json"])).unwrap();
    let git = v["gitVersion"].as_str().unwrap().to_owned();
    assert!(git.starts_with('v'), "{v}");
    assert_eq!(run(&["version", "-o", "short"]), git);
    assert!(run(&["version", "-o", "yaml"]).contains(&format!("gitVersion: {git}")));
    assert!(run(&["version"]).contains(&git));
}
