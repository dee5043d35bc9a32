//! Tests against the real v1.2.1 outputs in `tests/fixtures/ground-truth/`, plus loading, error and
//! validation behaviour of both configurations.

use std::path::PathBuf;
use std::time::Duration;

use crate::*;

fn ground_truth(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ground-truth")
        .join(name)
}

fn read_ground_truth(name: &str) -> String {
    std::fs::read_to_string(ground_truth(name)).expect("ground truth file")
}

/// The host the ground-truth files were produced on.
fn gt_host() -> HostInfo {
    HostInfo {
        hostname: "vm".to_owned(),
        node_ip: "192.0.2.2".to_owned(),
    }
}

/// Remove the lines whose trimmed text starts with one of `keys` (e.g. `"  metricsAddress:"`
/// matched exactly including indentation) together with their nested lines.
fn strip_keys(text: &str, keys: &[&str]) -> String {
    let mut out = Vec::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if !line.trim().is_empty() && indent > level {
                continue;
            }
            skip_deeper_than = None;
        }
        if keys
            .iter()
            .any(|k| line.starts_with(k) && indent == k.len() - k.trim_start().len())
        {
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push(line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

const CLOUD_EXTENSIONS: &[&str] = &[
    "metricsAddress:",
    "    allowLegacyEdgeCert:",
    "    https:",
    "    maxPendingPerNode:",
    "    queueStore:",
    "    tlsCAKeyFile:",
    "  devicecontroller:",
    "  synccontroller:",
];
const EDGE_EXTENSIONS: &[&str] = &[
    "metricsAddress:",
    "    httpServer:",
    "    token:",
    "    readOnlyAddress:",
];

/// Every mapping's keys are in ascending order (v1.2's printer sorts them).
fn assert_keys_sorted(yaml: &str) {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in yaml.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let key = line.trim_start().split(':').next().unwrap_or_default().to_owned();
        while stack.last().is_some_and(|(i, _)| *i > indent) {
            stack.pop();
        }
        if let Some((i, prev)) = stack.last_mut()
            && *i == indent
        {
            assert!(*prev < key, "keys not sorted: {prev:?} before {key:?}");
            *prev = key;
        } else {
            stack.push((indent, key));
        }
    }
}

// ---------------------------------------------------------------- ground truth

#[test]
fn ground_truth_files_load_unchanged() {
    let cloud_default = CloudCoreConfig::load(ground_truth("cloudcore-default.yaml")).unwrap();
    assert_eq!(cloud_default, CloudCoreConfig::default());
    let cloud_min = CloudCoreConfig::load(ground_truth("cloudcore-min.yaml")).unwrap();
    assert_eq!(cloud_min, CloudCoreConfig::default());

    let edge_default = EdgeCoreConfig::load(ground_truth("edgecore-default.yaml")).unwrap();
    assert_eq!(edge_default, EdgeCoreConfig::with_host(&gt_host()));
    let edge_min = EdgeCoreConfig::load(ground_truth("edgecore-min.yaml")).unwrap();
    assert_eq!(edge_min, EdgeCoreConfig::with_host(&gt_host()));

    // Against this machine's built-in default, only the host-dependent fields differ.
    let mut ours = EdgeCoreConfig::default();
    ours.modules.edged.hostname_override = "vm".to_owned();
    ours.modules.edged.node_ip = "192.0.2.2".to_owned();
    assert_eq!(edge_default, ours);

    for c in [&cloud_default, &cloud_min] {
        c.validate().unwrap();
    }
    for c in [&edge_default, &edge_min] {
        c.validate().unwrap();
    }
}

#[test]
fn cloudcore_defaultconfig_matches_v1_2_apart_from_extensions() {
    let ours = CloudCoreConfig::default_yaml().unwrap();
    let theirs = read_ground_truth("cloudcore-default.yaml");
    assert_eq!(strip_keys(&ours, CLOUD_EXTENSIONS), theirs, "ours:\n{ours}");
    // The extensions are there, with their defaults.
    for line in [
        "metricsAddress: 127.0.0.1:10350",
        "    allowLegacyEdgeCert: false",
        "    maxPendingPerNode: 1024",
        "    queueStore: /var/lib/kubeedge/cloudhub-queue.db",
        "    https:",
        "      address: 0.0.0.0",
        "      enable: false",
        "      port: 10002",
        "    tlsCAKeyFile: /etc/kubeedge/ca/rootCA.key",
        "  devicecontroller:",
        "      updateDeviceStatus: 1024",
        "      updateDeviceStatusWorkers: 1",
        "      receiveModule: devicecontroller",
        "  synccontroller:",
    ] {
        assert!(ours.lines().any(|l| l == line), "missing {line:?} in\n{ours}");
    }
    assert_keys_sorted(&ours);
}

#[test]
fn cloudcore_minconfig_matches_v1_2_exactly() {
    assert_eq!(
        CloudCoreConfig::min_yaml().unwrap(),
        read_ground_truth("cloudcore-min.yaml")
    );
}

#[test]
fn edgecore_defaultconfig_matches_v1_2_apart_from_extensions() {
    let ours = EdgeCoreConfig::with_host(&gt_host()).to_default_yaml().unwrap();
    let theirs = read_ground_truth("edgecore-default.yaml");
    assert_eq!(strip_keys(&ours, EDGE_EXTENSIONS), theirs, "ours:\n{ours}");
    for line in [
        "metricsAddress: 127.0.0.1:10351",
        "    httpServer: https://127.0.0.1:10002",
        "    token: \"\"",
        "    readOnlyAddress: 127.0.0.1:10255",
    ] {
        assert!(ours.lines().any(|l| l == line), "missing {line:?} in\n{ours}");
    }
    assert_keys_sorted(&ours);

    // On this host: same document apart from the two host lines.
    let here = EdgeCoreConfig::default_yaml().unwrap();
    let host = HostInfo::cached();
    let patched = theirs
        .replace(
            "hostnameOverride: vm",
            &format!("hostnameOverride: {}", host.hostname),
        )
        .replace("nodeIP: 192.0.2.2", &format!("nodeIP: {}", host.node_ip));
    assert_eq!(strip_keys(&here, EDGE_EXTENSIONS), patched);
}

#[test]
fn edgecore_minconfig_matches_v1_2_exactly() {
    let ours = EdgeCoreConfig::with_host(&gt_host()).to_min_yaml().unwrap();
    assert_eq!(ours, read_ground_truth("edgecore-min.yaml"));
    assert!(!ours.contains("metricsAddress"));
    assert!(!CloudCoreConfig::min_yaml().unwrap().contains("metricsAddress"));
}

#[test]
fn defaultconfig_output_reparses_to_the_default() {
    let text = CloudCoreConfig::default_yaml().unwrap();
    assert_eq!(
        CloudCoreConfig::from_yaml_str(&text, "out").unwrap(),
        CloudCoreConfig::default()
    );
    let text = EdgeCoreConfig::default_yaml().unwrap();
    assert_eq!(
        EdgeCoreConfig::from_yaml_str(&text, "out").unwrap(),
        EdgeCoreConfig::default()
    );
}

#[test]
fn non_default_values_round_trip() {
    let mut c = CloudCoreConfig::default();
    c.modules.cloudhub.quic.enable = true;
    c.modules.cloudhub.node_limit = 0;
    c.modules.devicecontroller.enable = false;
    c.modules.synccontroller.enable = false;
    c.metrics_address = String::new();
    c.kube_api_config.master = "https://10.0.0.1:6443".to_owned();
    let text = c.to_yaml().unwrap();
    assert!(
        text.contains("quic:\n      address: 0.0.0.0\n      enable: true\n"),
        "{text}"
    );
    assert_eq!(CloudCoreConfig::from_yaml_str(&text, "x").unwrap(), c);

    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edgehub.quic.enable = true;
    e.modules.edgehub.websocket.enable = false;
    e.modules.edged.network_plugin_name = "cni".to_owned();
    e.modules.edged.cgroup_driver = CgroupDriver::Systemd;
    e.modules.edgemesh.lb_strategy = LbStrategy::Random;
    e.modules.eventbus.mqtt_retain = true;
    e.modules.edged.cluster_dns = "10.96.0.10".to_owned();
    let text = e.to_yaml().unwrap();
    assert!(text.contains("networkPluginName: cni"));
    assert!(text.contains("cgroupDriver: systemd"));
    assert_eq!(EdgeCoreConfig::from_yaml_str(&text, "x").unwrap(), e);
}

// ---------------------------------------------------------------- loading semantics

#[test]
fn absent_keys_keep_defaults_and_explicit_zero_false_override() {
    let c = CloudCoreConfig::from_yaml_str(
        "modules:\n  cloudhub:\n    websocket:\n      enable: false\n    nodeLimit: 0\n  edgecontroller:\n    load:\n      queryNodeWorkers: 9\n",
        "t.yaml",
    )
    .unwrap();
    assert!(!c.modules.cloudhub.websocket.enable);
    assert_eq!(c.modules.cloudhub.websocket.port, 10000);
    assert_eq!(c.modules.cloudhub.websocket.address, "0.0.0.0");
    assert_eq!(c.modules.cloudhub.node_limit, 0);
    assert_eq!(c.modules.cloudhub.keepalive_interval, 30);
    assert_eq!(c.modules.edgecontroller.load.query_node_workers, 9);
    assert_eq!(c.modules.edgecontroller.load.update_node_workers, 4);
    assert_eq!(c.kube_api_config.qps, 100);

    let e = EdgeCoreConfig::from_yaml_str(
        "modules:\n  edged:\n    registerNode: false\n    hostnameOverride: edge-7\n  eventbus:\n    mqttMode: 0\n",
        "t.yaml",
    )
    .unwrap();
    assert!(!e.modules.edged.register_node);
    assert_eq!(e.modules.edged.hostname_override, "edge-7");
    assert_eq!(e.modules.edged.node_ip, HostInfo::cached().node_ip);
    assert_eq!(e.modules.eventbus.mode(), Some(MqttMode::Internal));
    assert_eq!(e.modules.edgehub.heartbeat, 15);
}

#[test]
fn empty_document_is_all_defaults() {
    assert_eq!(
        CloudCoreConfig::from_yaml_str("", "e").unwrap(),
        CloudCoreConfig::default()
    );
    assert_eq!(
        EdgeCoreConfig::from_yaml_str("# nothing\n", "e").unwrap(),
        EdgeCoreConfig::default()
    );
}

#[test]
fn api_version_and_kind_are_not_checked() {
    let c = CloudCoreConfig::from_yaml_str("apiVersion: v9\nkind: Whatever\n", "k").unwrap();
    assert_eq!(c.api_version, "v9");
    assert_eq!(c.kind, "Whatever");
}

#[test]
fn v1_2_odd_key_spellings_are_the_primary_names() {
    let c = CloudCoreConfig::from_yaml_str(
        "modules:\n  cloudhub:\n    tlsCAFile: /a\n  edgecontroller:\n    load:\n      queryPersistentColumeClaimWorkers: 7\n",
        "k",
    )
    .unwrap();
    assert_eq!(c.modules.cloudhub.tls_ca_file, "/a");
    assert_eq!(
        c.modules
            .edgecontroller
            .load
            .query_persistent_volume_claim_workers,
        7
    );
    let e = EdgeCoreConfig::from_yaml_str(
        "modules:\n  edgehub:\n    tlsCaFile: /b\n  edged:\n    cniCacheDirs: /c\n  eventbus:\n    mqttQOS: 1\n",
        "k",
    )
    .unwrap();
    assert_eq!(e.modules.edgehub.tls_ca_file, "/b");
    assert_eq!(e.modules.edged.cni_cache_dirs, "/c");
    assert_eq!(e.modules.eventbus.mqtt_qos, 1);
    // The correctly spelled "queryPersistentVolumeClaimWorkers" is NOT a v1.2 key.
    assert!(
        CloudCoreConfig::from_yaml_str(
            "modules:\n  edgecontroller:\n    load:\n      queryPersistentVolumeClaimWorkers: 7\n",
            "k"
        )
        .is_err()
    );
}

#[test]
fn aliases_accepted_by_v1_2_case_insensitive_matching() {
    let c = CloudCoreConfig::from_yaml_str("modules:\n  cloudHub:\n    tlsCaFile: /x\n", "a").unwrap();
    assert_eq!(c.modules.cloudhub.tls_ca_file, "/x");
    let e = EdgeCoreConfig::from_yaml_str("modules:\n  edgeHub:\n    tlsCAFile: /y\n", "a").unwrap();
    assert_eq!(e.modules.edgehub.tls_ca_file, "/y");
}

#[test]
fn devicecontroller_and_synccontroller_are_read() {
    let c = CloudCoreConfig::from_yaml_str(
        "modules:\n  devicecontroller:\n    enable: false\n    buffer:\n      updateDeviceStatus: 8\n  synccontroller:\n    enable: false\n",
        "d",
    )
    .unwrap();
    assert!(!c.modules.devicecontroller.enable);
    assert_eq!(c.modules.devicecontroller.buffer.update_device_status, 8);
    assert_eq!(c.modules.devicecontroller.buffer.device_event, 1);
    assert_eq!(
        c.modules.devicecontroller.context.receive_module,
        "devicecontroller"
    );
    assert!(!c.modules.synccontroller.enable);
}

#[test]
fn yaml_null_in_a_string_field_reads_as_empty() {
    let c = CloudCoreConfig::from_yaml_str("kubeAPIConfig:\n  master:\n  qps: 5\n", "n").unwrap();
    assert_eq!(c.kube_api_config.master, "");
    assert_eq!(c.kube_api_config.qps, 5);
}

// ---------------------------------------------------------------- errors

fn parse_err(e: Error) -> ParseError {
    match e {
        Error::Parse(p) => *p,
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn unknown_field_error_names_file_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloudcore.yaml");
    std::fs::write(
        &path,
        "apiVersion: cloudcore.config.kubeedge.io/v1alpha1\nkind: CloudCore\nmodules:\n  cloudhub:\n    nodeLimt: 10\n",
    )
    .unwrap();
    let err = CloudCoreConfig::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("modules.cloudhub.nodeLimt"), "{msg}");
    assert!(msg.contains("line 5"), "{msg}");
    assert!(msg.contains("column 5"), "{msg}");
    assert!(msg.contains("unknown field `nodeLimt`"), "{msg}");
    let p = parse_err(err);
    assert_eq!((p.line, p.column), (Some(5), Some(5)));
    assert_eq!(p.path.as_deref(), Some("modules.cloudhub.nodeLimt"));
    let snippet = p.snippet().unwrap();
    assert!(snippet.contains("nodeLimt: 10"), "{snippet}");
    assert!(snippet.contains("cloudcore.yaml"), "{snippet}");
}

#[test]
fn mistyped_value_error_names_file_path_and_line() {
    let err = CloudCoreConfig::from_yaml_str(
        "modules:\n  cloudhub:\n    enable: true\n    nodeLimit: ten\n",
        "/etc/kubeedge/config/cloudcore.yaml",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "config file /etc/kubeedge/config/cloudcore.yaml: line 4, column 16: modules.cloudhub.nodeLimit: invalid i32"
    );

    let err = EdgeCoreConfig::from_yaml_str("modules:\n  eventbus:\n    mqttQOS: -1\n", "edgecore.yaml")
        .unwrap_err();
    let p = parse_err(err);
    assert_eq!(p.path.as_deref(), Some("modules.eventbus.mqttQOS"));
    assert_eq!(p.line, Some(3));

    let err = EdgeCoreConfig::from_yaml_str(
        "modules:\n  edged:\n    cgroupDriver: cgroupv2\n",
        "edgecore.yaml",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("modules.edged.cgroupDriver"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");

    let err =
        EdgeCoreConfig::from_yaml_str("modules:\n  edged:\n    enable: yes please\n", "e.yaml").unwrap_err();
    let p = parse_err(err);
    assert_eq!(p.path.as_deref(), Some("modules.edged.enable"));
    assert_eq!(p.line, Some(3));
}

#[test]
fn unknown_top_level_key_and_wrong_shape_are_errors() {
    let p = parse_err(CloudCoreConfig::from_yaml_str("kubeApiConfig:\n  qps: 1\n", "c").unwrap_err());
    assert_eq!(p.path.as_deref(), Some("kubeApiConfig"));
    assert_eq!(p.line, Some(1));
    let p = parse_err(EdgeCoreConfig::from_yaml_str("modules: [1, 2]\n", "e").unwrap_err());
    assert_eq!(p.path.as_deref(), Some("modules"));
    // Syntax errors carry a position even without a field.
    let p = parse_err(EdgeCoreConfig::from_yaml_str("modules:\n  edged: {enable: true\n", "e").unwrap_err());
    assert!(p.line.is_some());
}

#[test]
fn missing_file_uses_v1_2_wording() {
    let err = CloudCoreConfig::load("/nonexistent/dir/cloudcore.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "config: Required value: config file /nonexistent/dir/cloudcore.yaml not exist. For the configuration file format, please refer to --minconfig and --defaultconfig command"
    );
    assert!(matches!(
        EdgeCoreConfig::load("/nonexistent/e.yaml"),
        Err(Error::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- validation

fn invalid(r: Result<()>) -> ValidationErrors {
    match r {
        Err(Error::Invalid(v)) => v,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn cloudcore_validation_rules() {
    let mut c = CloudCoreConfig::default();
    c.modules.cloudhub.websocket.address = "localhost".to_owned();
    c.modules.cloudhub.quic.address = "any".to_owned();
    c.modules.cloudhub.quic.port = 70000;
    c.modules.cloudhub.unix_socket.address = "/var/lib/kubeedge/kubeedge.sock".to_owned();
    c.modules.edgecontroller.node_update_frequency = 0;
    c.modules.edgecontroller.buffer.pod_event = -1;
    c.kube_api_config.kube_config = "relative/kubeconfig".to_owned();
    c.metrics_address = "localhost:1".to_owned();
    let errs = invalid(c.validate());
    for f in [
        "modules.cloudhub.websocket.address",
        "modules.cloudhub.quic.address",
        "modules.cloudhub.quic.port",
        "modules.cloudhub.unixsocket.address",
        "modules.edgecontroller.nodeUpdateFrequency",
        "modules.edgecontroller.buffer.podEvent",
        "kubeAPIConfig.kubeConfig",
        "metricsAddress",
    ] {
        assert!(errs.mentions(f), "{f} not reported in {errs}");
    }
    assert_eq!(errs.errors().len(), 8, "{errs}");
    assert!(
        errs.to_string()
            .contains("unixSocketAddress must has prefix unix://")
    );

    // Disabled modules are not checked.
    c.modules.cloudhub.enable = false;
    c.modules.edgecontroller.enable = false;
    c.kube_api_config.kube_config = String::new();
    c.metrics_address = String::new();
    c.validate().unwrap();
}

#[test]
fn edgecore_validation_rules() {
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edged.node_ip = String::new();
    e.modules.edgehub.quic.enable = true; // websocket also enabled
    e.modules.eventbus.mqtt_mode = 3;
    e.modules.eventbus.mqtt_qos = 3;
    e.modules.edgehub.heartbeat = 0;
    e.modules.edged.hostname_override = "Edge_1".to_owned();
    e.modules.edged.cluster_dns = "10.96.0.10, dns".to_owned();
    let errs = invalid(e.validate());
    for f in [
        "modules.edged.nodeIP",
        "modules.edgehub.websocket.enable",
        "modules.eventbus.mqttMode",
        "modules.eventbus.mqttQOS",
        "modules.edgehub.heartbeat",
        "modules.edged.hostnameOverride",
        "modules.edged.clusterDNS",
    ] {
        assert!(errs.mentions(f), "{f} not reported in {errs}");
    }
    assert_eq!(errs.errors().len(), 7, "{errs}");
    assert!(errs.to_string().contains("modules.edged.nodeIP: Required value"));

    // Neither transport enabled is also wrong.
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edgehub.websocket.enable = false;
    assert!(invalid(e.validate()).mentions("modules.edgehub.websocket.enable"));
    // QUIC alone is fine.
    e.modules.edgehub.quic.enable = true;
    e.validate().unwrap();
    // A bad server address of the active transport is reported.
    e.modules.edgehub.quic.server = "cloud".to_owned();
    assert!(invalid(e.validate()).mentions("modules.edgehub.quic.server"));
}

#[test]
fn validate_files_checks_tls_files_and_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, "x").unwrap();
        p.display().to_string()
    };
    let mut c = CloudCoreConfig::default();
    c.kube_api_config.kube_config = dir.path().join("missing-kubeconfig").display().to_string();
    c.modules.cloudhub.tls_ca_file = file("rootCA.crt");
    c.modules.cloudhub.tls_cert_file = file("edge.crt");
    c.modules.cloudhub.tls_private_key_file = dir.path().join("nope.key").display().to_string();
    let errs = invalid(c.validate_files());
    assert!(errs.mentions("kubeAPIConfig.kubeConfig"));
    assert!(errs.mentions("modules.cloudhub.tlsPrivateKeyFile"));
    assert_eq!(errs.errors().len(), 2, "{errs}");
    c.kube_api_config.kube_config = file("kubeconfig");
    c.modules.cloudhub.tls_private_key_file = file("edge.key");
    c.validate_files().unwrap();

    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edgehub.tls_ca_file = file("rootCA.crt");
    e.modules.edgehub.tls_cert_file = file("edge.crt");
    e.modules.edgehub.tls_private_key_file = dir.path().join("gone.key").display().to_string();
    assert!(invalid(e.validate_files()).mentions("modules.edgehub.tlsPrivateKeyFile"));
    e.modules.edgehub.enable = false;
    e.validate_files().unwrap();
}

#[test]
fn certificate_bootstrap_keys() {
    let c = CloudCoreConfig::from_yaml_str(
        "modules:\n  cloudhub:\n    https: {enable: true, address: 127.0.0.1, port: 20002}\n    tlsCAKeyFile: /x/ca.key\n",
        "t.yaml",
    )
    .unwrap();
    let h = &c.modules.cloudhub;
    assert!(h.https.enable);
    assert_eq!((h.https.address.as_str(), h.https.port), ("127.0.0.1", 20002));
    assert_eq!(h.tls_ca_key_file, "/x/ca.key");
    c.validate().unwrap();
    assert!(!CloudCoreConfig::default().modules.cloudhub.https.enable);
    // Strict parsing covers the new section too.
    let e = CloudCoreConfig::from_yaml_str("modules:\n  cloudhub:\n    https: {enabel: true}\n", "t.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("modules.cloudhub.https"), "{e}");
    let mut bad = c.clone();
    bad.modules.cloudhub.https.port = 0;
    bad.modules.cloudhub.https.address = "any".into();
    let errs = invalid(bad.validate());
    assert!(errs.mentions("modules.cloudhub.https.port") && errs.mentions("modules.cloudhub.https.address"));
    // The CA key must exist only when https is on.
    let dir = tempfile::tempdir().unwrap();
    let mut f = CloudCoreConfig::default();
    f.kube_api_config.kube_config = String::new();
    for (p, name) in [
        (&mut f.modules.cloudhub.tls_ca_file, "ca.crt"),
        (&mut f.modules.cloudhub.tls_cert_file, "s.crt"),
        (&mut f.modules.cloudhub.tls_private_key_file, "s.key"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, "x").unwrap();
        *p = path.display().to_string();
    }
    f.modules.cloudhub.tls_ca_key_file = dir.path().join("nope.key").display().to_string();
    f.validate_files().unwrap();
    f.modules.cloudhub.https.enable = true;
    assert!(invalid(f.validate_files()).mentions("modules.cloudhub.tlsCAKeyFile"));

    let e = EdgeCoreConfig::from_yaml_str(
        "modules:\n  edgehub:\n    token: abc\n    httpServer: https://[::1]:10002/\n",
        "e.yaml",
    )
    .unwrap();
    assert_eq!(e.modules.edgehub.token, "abc");
    assert_eq!(e.modules.edgehub.http_server_addr(), Some(("::1".into(), 10002)));
    let mut h = EdgeHub::default();
    assert_eq!(h.token, "");
    assert_eq!(h.http_server_addr(), Some(("127.0.0.1".into(), 10002)));
    for (url, want) in [
        ("https://cloud.example", Some(("cloud.example", 443))),
        ("http://1.2.3.4:10002", None),
        ("https://1.2.3.4:x", None),
        ("https://1.2.3.4:10002/path", None),
        ("https://", None),
    ] {
        h.http_server = url.into();
        assert_eq!(
            h.http_server_addr(),
            want.map(|(a, p)| (a.to_owned(), p)),
            "{url}"
        );
    }
    // With a token, a bad httpServer is a validation error, and missing TLS files are not.
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edgehub.tls_ca_file = dir.path().join("missing-ca").display().to_string();
    assert!(invalid(e.validate_files()).mentions("modules.edgehub.tlsCaFile"));
    e.modules.edgehub.token = "t".into();
    e.validate_files().unwrap();
    e.modules.edgehub.http_server = "10.0.0.1:10002".into();
    assert!(invalid(e.validate()).mentions("modules.edgehub.httpServer"));
}

// ---------------------------------------------------------------- helpers

#[test]
fn duration_helpers() {
    let c = CloudCoreConfig::default();
    assert_eq!(c.modules.cloudhub.keepalive_interval(), Duration::from_secs(30));
    assert_eq!(c.modules.cloudhub.write_timeout(), Duration::from_secs(30));
    assert_eq!(
        c.modules.edgecontroller.node_update_frequency(),
        Duration::from_secs(10)
    );
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    assert_eq!(e.modules.edgehub.heartbeat(), Duration::from_secs(15));
    assert_eq!(
        e.modules.edgehub.websocket.handshake_timeout(),
        Duration::from_secs(30)
    );
    assert_eq!(e.modules.edgehub.quic.read_deadline(), Duration::from_secs(15));
    assert_eq!(
        e.modules.edged.runtime_request_timeout(),
        Duration::from_secs(120)
    );
    assert_eq!(
        e.modules.edged.node_status_update_frequency(),
        Duration::from_secs(10)
    );
    assert_eq!(
        e.modules.edged.image_pull_progress_deadline(),
        Duration::from_secs(60)
    );
    assert_eq!(
        e.modules.metamanager.pod_status_sync_interval(),
        Duration::from_secs(60)
    );
    e.modules.edgehub.heartbeat = -5;
    assert_eq!(e.modules.edgehub.heartbeat(), Duration::ZERO);
}

#[test]
fn small_accessors() {
    let c = CloudCoreConfig::default();
    assert_eq!(
        c.modules.cloudhub.unix_socket.path(),
        Some(std::path::Path::new("/var/lib/kubeedge/kubeedge.sock"))
    );
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    assert!(e.modules.edged.cluster_dns_servers().is_empty());
    e.modules.edged.cluster_dns = "10.0.0.10, 10.0.0.11,".to_owned();
    assert_eq!(
        e.modules.edged.cluster_dns_servers(),
        vec!["10.0.0.10", "10.0.0.11"]
    );
}

#[test]
fn edged_read_only_address_extension() {
    let d = EdgeCoreConfig::with_host(&gt_host());
    assert_eq!(d.modules.edged.read_only_address, "127.0.0.1:10255");
    let off = EdgeCoreConfig::from_yaml_str("modules:\n  edged:\n    readOnlyAddress: \"\"\n", "t").unwrap();
    assert_eq!(off.modules.edged.read_only_address, "");
    let other =
        EdgeCoreConfig::from_yaml_str("modules:\n  edged:\n    readOnlyAddress: 0.0.0.0:20255\n", "t")
            .unwrap();
    assert_eq!(other.modules.edged.read_only_address, "0.0.0.0:20255");
    let bad = EdgeCoreConfig::from_yaml_str("modules:\n  edged:\n    readOnlyAddress: nope\n", "t").unwrap();
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("modules.edged.readOnlyAddress"), "{err}");
}

#[test]
fn ha_section_and_server_lists() {
    let c = CloudCoreConfig::from_yaml_str(
        "modules:\n  cloudhub:\n    ha: {enable: true, identity: cc-a, leaseDurationSeconds: 9, advertiseAddress: [10.0.0.1, lb.example]}\n    tlsCAFile: /nonexistent/ca.crt\n",
        "cloudcore.yaml",
    )
    .unwrap();
    let ha = &c.modules.cloudhub.ha;
    assert!(ha.enable);
    assert_eq!(ha.identity, "cc-a");
    assert_eq!(ha.namespace, "kubeedge");
    assert_eq!(ha.lease_duration(), Duration::from_secs(9));
    assert_eq!(ha.advertise_address, vec!["10.0.0.1", "lb.example"]);
    assert_eq!(ha.lease_qps, 500);
    c.validate().unwrap();
    // With HA the CA and server certificate may be absent: they come from the cluster.
    let mut c = c;
    c.kube_api_config.kube_config.clear();
    c.validate_files().unwrap();
    let mut bad = c.clone();
    bad.modules.cloudhub.ha.lease_duration_seconds = 0;
    bad.modules.cloudhub.ha.lease_qps = 0;
    bad.modules.cloudhub.ha.namespace.clear();
    let errs = invalid(bad.validate());
    assert!(
        errs.mentions("modules.cloudhub.ha.leaseDurationSeconds"),
        "{errs}"
    );
    assert!(errs.mentions("modules.cloudhub.ha.leaseQPS"), "{errs}");
    assert!(errs.mentions("modules.cloudhub.ha.namespace"), "{errs}");
    // Off by default, and then not printed (v1.2's output is unchanged).
    assert!(!CloudCoreConfig::default().modules.cloudhub.ha.enable);
    assert!(!CloudCoreConfig::default_yaml().unwrap().contains("ha:"));

    // edgehub: several cloudhub addresses, each checked.
    let mut e = EdgeCoreConfig::with_host(&gt_host());
    e.modules.edgehub.websocket.server = "10.0.0.1:10000, 10.0.0.2:10000".to_owned();
    e.validate().unwrap();
    e.modules.edgehub.websocket.server = "10.0.0.1:10000,cloud".to_owned();
    assert!(invalid(e.validate()).mentions("modules.edgehub.websocket.server"));
}
