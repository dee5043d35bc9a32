//! The config flags of the daemons, as a user runs them.

use std::process::Command;

use ke_testkit::bin;

fn run(b: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin(b)).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn defaultconfig_reparses_and_runs_as_config() {
    for (b, kind) in [("cloudcore", "CloudCore"), ("edgecore", "EdgeCore")] {
        let (ok, out, err) = run(b, &["--defaultconfig"]);
        assert!(ok, "{b} --defaultconfig failed: {err}");
        assert!(out.contains(&format!("kind: {kind}")), "{out}");
        let (ok, min, _) = run(b, &["--minconfig"]);
        assert!(ok && min.contains("apiVersion:"), "{min}");
        // The printed default loads again: feed it back (it then fails only on missing cert files).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, &out).unwrap();
        let (ok, _, err) = run(b, &["--config", p.to_str().unwrap()]);
        assert!(!ok);
        assert!(
            !err.contains("unknown field"),
            "{b}: its own default did not parse: {err}"
        );
        assert!(
            err.contains("rootCA.crt") || err.contains("tls"),
            "{b}: expected a missing-file error: {err}"
        );
    }
}

#[test]
fn edgecore_refuses_dockershim_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("edgecore.yaml");
    let db = dir.path().join("edgecore.db");
    std::fs::write(
        &p,
        format!(
            "apiVersion: edgecore.config.kubeedge.io/v1alpha1\nkind: EdgeCore\nmetricsAddress: \"\"\n\
             database:\n  dataSource: {}\nmodules:\n  edgehub:\n    enable: false\n  eventbus:\n    enable: false\n\
             \x20 edged:\n    hostnameOverride: e1\n    nodeIP: 127.0.0.1\n    runtimeType: docker\n",
            db.display()
        ),
    )
    .unwrap();
    let (ok, _, err) = run("edgecore", &["--config", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("modules.edged.runtimeType"), "{err}");
    assert!(err.contains("runtimeType: remote"), "{err}");
}

#[test]
fn bad_config_names_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cloudcore.yaml");
    std::fs::write(&p, "apiVersion: cloudcore.config.kubeedge.io/v1alpha1\nkind: CloudCore\nmodules:\n  cloudhub:\n    nodeLimt: 5\n")
        .unwrap();
    let (ok, _, err) = run("cloudcore", &["--config", p.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("cloudcore.yaml"), "{err}");
    assert!(err.contains("nodeLimt"), "{err}");
    assert!(err.contains('5'), "line number expected: {err}");
    let (ok, _, err) = run("cloudcore", &["--config", "/nonexistent/cloudcore.yaml"]);
    assert!(!ok);
    assert!(
        err.contains("config file /nonexistent/cloudcore.yaml not exist"),
        "{err}"
    );
}

#[test]
fn version_flags() {
    for b in ["cloudcore", "edgecore", "keadm"] {
        let (ok, out, _) = run(b, &["--version"]);
        assert!(ok && out.contains("KubeEdge"), "{b}: {out}");
    }
}
