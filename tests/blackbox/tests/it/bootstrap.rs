//! Certificate bootstrap with a token (v1.3), end to end: cloudcore with `modules.cloudhub.https`
//! against the local API server (the token Secret path), `keadm gettoken`, and edgecores whose yaml has
//! only the token and `httpServer` — no certificate files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ke_pki::Ca;
use ke_pki::token::{Token, TokenKey, ca_hash, unix_now};
use ke_testkit::k8s::LocalK8s;
use ke_testkit::{Daemon, bin, eventually, free_tcp_port};

use crate::cluster::{Cluster, wait_metric};

const T: Duration = Duration::from_secs(60);

/// `keadm gettoken --kube-config <kc>`: stdout, or the error text.
fn gettoken(kc: &Path) -> Result<String, String> {
    let o = Command::new(bin("keadm"))
        .args(["gettoken", "--kube-config", kc.to_str().unwrap()])
        .output()
        .unwrap();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

struct EdgeFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// An edgecore with only `token` + `httpServer` for TLS: the files it names do not exist.
fn edge(c: &Cluster, node: &str, ws: &str, https_port: u16, token: &str) -> (Daemon, EdgeFiles) {
    let base = c.path().join(format!("edge-{node}"));
    let files = EdgeFiles {
        ca: base.join("ca/rootCA.crt"),
        cert: base.join("certs/edge.crt"),
        key: base.join("certs/edge.key"),
    };
    let cfg = format!(
        "apiVersion: edgecore.config.kubeedge.io/v1alpha1
kind: EdgeCore
metricsAddress: 127.0.0.1:{m}
database:
  dataSource: {db}
modules:
  edged:
    enable: false
    hostnameOverride: {node}
    nodeIP: 127.0.0.1
  edgehub:
    heartbeat: 2
    token: {token}
    httpServer: https://127.0.0.1:{https_port}
    tlsCaFile: {ca}
    tlsCertFile: {crt}
    tlsPrivateKeyFile: {key}
    websocket:
      enable: true
      server: {ws}
  eventbus:
    enable: false
  devicetwin:
    enable: false
  edgemesh:
    enable: false
",
        m = free_tcp_port(),
        db = c.path().join(format!("{node}.db")).display(),
        ca = files.ca.display(),
        crt = files.cert.display(),
        key = files.key.display(),
    );
    let config = c.path().join(format!("edgecore-{node}.yaml"));
    std::fs::write(&config, cfg).unwrap();
    let d = Daemon::start(
        node,
        &bin("edgecore"),
        &["--config", config.to_str().unwrap()],
        c.path(),
    );
    (d, files)
}

/// Waits for `d` to exit and returns its log.
async fn exited(mut d: Daemon, what: &str) -> String {
    eventually(T, what, || {
        let done = !d.running();
        async move { done.then_some(()) }
    })
    .await;
    d.log()
}

#[tokio::test]
async fn edge_joins_with_only_a_token_and_bad_tokens_are_refused() {
    let Some(k8s) = LocalK8s::shared() else { return };
    // The token Secret's RBAC (namespace kubeedge, Role cloudcore-tokensecret), also applied by `up`.
    k8s.apply(include_str!("../../../../build/rbac/cloudcore.yaml"));
    // A token of another cluster sits in the Secret: cloudcore must replace it.
    let stale = TokenKey::from_ca(&Ca::create("stale").unwrap()).issue(Duration::from_secs(3600));
    k8s.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tokensecret, namespace: kubeedge}}\nstringData: {{tokendata: \"{stale}\"}}\n"
    ));
    let c = Cluster::new(&[]);
    let https = free_tcp_port();
    let ca_key = c.pki.dir.join("ca/rootCA.key");
    let mut cloud = c.cloud_with(
        &format!(
            "    tlsCAKeyFile: {}\n    https:\n      enable: true\n      address: 127.0.0.1\n      port: {https}\n",
            ca_key.display()
        ),
        Some(&k8s.cloudcore_kubeconfig),
    );
    let ca = Ca::load(&c.pki.ca(), &ca_key).unwrap();
    let our_hash = ca_hash(ca.cert_der());
    let key = TokenKey::from_ca(&ca);

    // cloudcore publishes a token of its CA in place of the stale one; `keadm gettoken` prints it.
    let token = eventually(T, "keadm gettoken prints this cloud's token", || {
        let t = gettoken(&k8s.admin_kubeconfig).ok();
        let want = our_hash.clone();
        async move { t.filter(|t| t.starts_with(&format!("{want}."))) }
    })
    .await;
    let parsed = Token::parse(&token).unwrap();
    let exp = key.verify(&token).unwrap();
    assert!(exp > unix_now() + 23 * 3600, "a fresh token is valid about 24 h");
    assert_eq!(parsed.ca_hash, our_hash);

    // --- the edge joins with the token alone -------------------------------------------------
    let node = format!("boot-{}", std::process::id());
    let (edge1, files) = edge(&c, &node, &cloud.ws, https, &token);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "the bootstrapped edge is connected",
    )
    .await;
    let info = ke_pki::verify::verify_leaf_files(&files.cert, &c.pki.ca()).unwrap();
    assert_eq!(info.common_name.as_deref(), Some(node.as_str()));
    assert_eq!(
        ke_pki::load::load_certs(&files.ca).unwrap()[0].as_ref(),
        ca.cert_der().as_ref()
    );
    assert_eq!(
        std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        edge1.log().contains("certificate bootstrap done"),
        "{}",
        edge1.log()
    );

    // A cloudcore restart keeps the published token (more than half its validity left), and an
    // edge restart with its files present fetches nothing.
    cloud.restart(c.path());
    let mut edge1 = edge1;
    edge1.stop();
    let (edge1, _) = edge(&c, &node, &cloud.ws, https, &token);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge 1 back",
    )
    .await;
    assert_eq!(gettoken(&k8s.admin_kubeconfig).unwrap(), token);
    assert_eq!(
        edge1.log().matches("certificate bootstrap done").count(),
        1,
        "{}",
        edge1.log()
    );

    // --- refused tokens: the edge exits with the reason and writes nothing --------------------
    // Right CA hash, signed with another key.
    let mut forged = TokenKey::from_ca(&Ca::create("other").unwrap()).issue(Duration::from_secs(3600));
    forged.ca_hash = our_hash.clone();
    let (d, f) = edge(&c, "boot-forged", &cloud.ws, https, &forged.to_string());
    let log = exited(d, "edgecore with a forged token exits").await;
    assert!(
        log.contains("refused the token (401)") && log.contains("keadm gettoken"),
        "{log}"
    );
    assert!(!f.cert.exists() && !f.key.exists());

    // Expired.
    let expired = key.issue_until(unix_now() - 60);
    let (d, _) = edge(&c, "boot-expired", &cloud.ws, https, &expired.to_string());
    let log = exited(d, "edgecore with an expired token exits").await;
    assert!(log.contains("401") && log.contains("expired"), "{log}");

    // Tampered CA hash: the served CA is refused.
    let tampered = format!("{}.{}", "0".repeat(64), parsed.jwt);
    let (d, f) = edge(&c, "boot-tampered", &cloud.ws, https, &tampered);
    let log = exited(d, "edgecore with a tampered CA hash exits").await;
    assert!(log.contains("SHA-256") && log.contains("refusing it"), "{log}");
    assert!(!f.ca.exists());

    // Malformed.
    let (d, _) = edge(&c, "boot-malformed", &cloud.ws, https, "not-a-token");
    let log = exited(d, "edgecore with a malformed token exits").await;
    assert!(log.contains("malformed token"), "{log}");

    // The first edge is still connected.
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge 1 still up",
    )
    .await;
    drop(edge1);
}

#[tokio::test]
async fn https_without_a_kubernetes_api_is_a_clear_start_up_error() {
    let c = Cluster::new(&[]);
    let cloud = c.cloud_with(
        &format!(
            "    tlsCAKeyFile: {}\n    https:\n      enable: true\n      address: 127.0.0.1\n      port: {}\n",
            c.pki.dir.join("ca/rootCA.key").display(),
            free_tcp_port()
        ),
        None,
    );
    let log = exited(cloud.daemon, "cloudcore without an API server exits").await;
    assert!(
        log.contains("modules.cloudhub.https needs the Kubernetes API")
            && log.contains("https.enable: false"),
        "{log}"
    );
}
