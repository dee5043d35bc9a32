//! `keadm join`: make this machine an edge node.
//!
//! 1. refuse politely if our edgecore already runs (`join` is idempotent);
//! 2. check the inputs: node name, token (well-formed, not expired), free ports;
//! 3. check the container runtime answers on its CRI socket;
//! 4. fetch the CA (accepted only if its SHA-256 is the token's hash) and a node certificate from
//!    cloudcore's HTTPS endpoint — no certificate files copied by hand, unlike v1.2; unreachable
//!    cloud, refused token and clock skew are reported here;
//! 5. write `edgecore.yaml` (with the token, so edgecore can fetch again if the files go missing);
//! 6. start edgecore and wait until it is connected to the cloud.

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use ke_config::DaemonConfig;
use ke_config::edgecore::EdgeCoreConfig;

use crate::install::{self, Progress, Record, Role, RunArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// cloudcore's `IP:port` (its cloudhub WebSocket port, 10000 by default).
    #[arg(short = 'e', long = "cloudcore-ipport")]
    cloudcore_ipport: String,
    /// Bootstrap token from `keadm gettoken` on the cloud.
    #[arg(short = 't', long)]
    token: String,
    /// Port of cloudcore's HTTPS certificate service.
    #[arg(long = "certport", default_value_t = 10002)]
    certport: u16,
    /// Node name (default: this host's name).
    #[arg(short = 'i', long = "edgenode-name")]
    edgenode_name: Option<String>,
    /// This node's IP as reported to Kubernetes (default: the address that routes to cloudcore).
    #[arg(long = "node-ip")]
    node_ip: Option<String>,
    /// Network interface whose address is the node's (v1.2 flag; `--node-ip` wins).
    #[arg(long = "interfacename", default_value = "eth0")]
    interface_name: String,
    /// Container runtime type; only `remote` (CRI) is supported, docker is not needed.
    #[arg(short = 'r', long = "runtimetype", default_value = "remote")]
    runtime_type: String,
    /// CRI endpoint of the container runtime.
    #[arg(long = "remote-runtime-endpoint", default_value = ke_cri::CONTAINERD_ENDPOINT)]
    runtime_endpoint: String,
    /// Pod sandbox ("pause") image.
    #[arg(
        long = "pod-infra-container-image",
        default_value = "docker.io/kubeedge/pause:3.6"
    )]
    pod_sandbox_image: String,
    /// Image GC starts when the image filesystem is this full (percent; 100 turns image GC off).
    #[arg(long = "image-gc-high-threshold", default_value_t = 80)]
    image_gc_high_threshold: i32,
    /// Port of edgecore's embedded MQTT broker (devices and mappers talk to it).
    #[arg(long = "mqtt-port", default_value_t = 1883)]
    mqtt_port: u16,
    /// edgecore's Prometheus endpoint (keadm also reads it to see the node connect).
    #[arg(long = "metrics-address", default_value = "127.0.0.1:10351")]
    metrics_address: String,
    #[command(flatten)]
    run: RunArgs,
}

const STEPS: usize = 6;

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    install::block_on(join(args))
}

/// Kubernetes node names are DNS-1123 subdomains.
fn check_node_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        bail!(
            "node name {name:?} is not valid: lower-case letters, digits, '-' and '.', at most 253 characters (pass --edgenode-name)"
        );
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_default()
}

/// The local address the kernel would use to reach `cloud` (no packet is sent).
fn route_ip(cloud: IpAddr) -> Option<IpAddr> {
    let bind = if cloud.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = UdpSocket::bind(bind).ok()?;
    s.connect((cloud, 9)).ok()?;
    Some(s.local_addr().ok()?.ip())
}

async fn join(args: Args) -> anyhow::Result<()> {
    let layout = args.run.layout.clone();
    let mode = args.run.mode();
    let mut p = Progress::new(STEPS);
    p.step("checking for a running edgecore");
    if let Some(rec) = Record::load(&layout, Role::Edge)?
        && install::is_running(&rec)
    {
        println!(
            "edgecore already runs for node {} (config {}, log {}); nothing to do. `keadm reset` removes it.",
            rec.node.as_deref().unwrap_or("?"),
            rec.config.display(),
            rec.log_file.display()
        );
        return Ok(());
    }

    p.step("checking the inputs");
    let node = args.edgenode_name.clone().unwrap_or_else(hostname);
    check_node_name(&node)?;
    if args.runtime_type != "remote" {
        bail!(
            "runtime type {:?} is not supported: edged talks CRI to containerd (--runtimetype remote)",
            args.runtime_type
        );
    }
    let cloud = args
        .cloudcore_ipport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!(
                "--cloudcore-ipport {:?} is not an address (IP:port, e.g. 192.168.1.10:10000)",
                args.cloudcore_ipport
            )
        })?;
    let token = crate::bootstrap::parse_token(&args.token)?;
    let binary = install::find_binary(args.run.binary.as_deref(), "edgecore")?;
    install::check_port_free(&format!("127.0.0.1:{}", args.mqtt_port), "edgecore MQTT broker")?;
    install::check_port_free(&args.metrics_address, "edgecore metrics")?;

    p.step("container runtime");
    let cri = ke_cri::CriClient::new(&args.runtime_endpoint, Duration::from_secs(10))
        .with_context(|| format!("no container runtime at {}", args.runtime_endpoint))?;
    let v = cri.version().await.with_context(|| {
        format!(
            "no container runtime answers at {} (is containerd installed and running? hack/setup-containerd.sh sets it up)",
            args.runtime_endpoint
        )
    })?;
    println!(
        "      {} {} (CRI {})",
        v.runtime_name, v.runtime_version, v.runtime_api_version
    );

    p.step("certificates from cloudcore (token bootstrap)");
    let rollback = install::Rollback::new(&layout, Role::Edge);
    let mut rec = Record::load(&layout, Role::Edge)?
        .unwrap_or_else(|| Record::new(&layout, Role::Edge, binary.clone(), mode));
    rec.binary = binary;
    rec.mode = mode;
    rec.node = Some(node.clone());
    rec.runtime_endpoint = Some(args.runtime_endpoint.clone());
    rec.mkdir(&layout.state_dir)?;
    let node_ip = match &args.node_ip {
        Some(ip) => ip.clone(),
        None => route_ip(cloud.ip())
            .map(|ip| ip.to_string())
            .context("cannot tell this node's IP from the route to cloudcore; pass --node-ip")?,
    };
    let ca_file = layout.ca_dir().join("rootCA.crt");
    let cert_file = layout.certs_dir().join(format!("{node}.crt"));
    let key_file = layout.certs_dir().join(format!("{node}.key"));
    // What the fetch creates is ours (reset removes it); what exists already is not.
    rec.mkdir(&layout.ca_dir())?;
    rec.mkdir(&layout.certs_dir())?;
    for f in [&ca_file, &cert_file, &key_file] {
        rec.track_new(f)?;
    }
    let http_server = format!("https://{}", std::net::SocketAddr::new(cloud.ip(), args.certport));
    let files = crate::bootstrap::EdgeFiles {
        ca: ca_file.clone(),
        cert: cert_file.clone(),
        key: key_file.clone(),
    };
    let outcome =
        crate::bootstrap::fetch_certificates(&cloud.ip().to_string(), args.certport, &token, &node, &files)
            .await?;
    println!(
        "      {}: {}",
        http_server,
        match outcome {
            edgehub::bootstrap::Outcome::Fetched => "CA (matching the token) and node certificate fetched",
            _ => "certificate files already present, nothing fetched",
        }
    );

    p.step("edgecore.yaml");
    let mut cfg = EdgeCoreConfig {
        metrics_address: args.metrics_address.clone(),
        ..Default::default()
    };
    let db = layout.state_dir.join("edgecore.db");
    cfg.database.data_source = db.display().to_string();
    let edged = &mut cfg.modules.edged;
    edged.hostname_override = node.clone();
    edged.node_ip = node_ip.clone();
    edged.interface_name = args.interface_name.clone();
    edged.runtime_type = "remote".to_owned();
    edged.remote_runtime_endpoint = args.runtime_endpoint.clone();
    edged.remote_image_endpoint = args.runtime_endpoint.clone();
    edged.pod_sandbox_image = args.pod_sandbox_image.clone();
    edged.image_gc_high_threshold = args.image_gc_high_threshold;
    let hub = &mut cfg.modules.edgehub;
    hub.tls_ca_file = ca_file.display().to_string();
    hub.tls_cert_file = cert_file.display().to_string();
    hub.tls_private_key_file = key_file.display().to_string();
    hub.websocket.server = cloud.to_string();
    crate::bootstrap::set_edge_token(&mut cfg, &token, &http_server);
    cfg.modules.eventbus.mqtt_mode = 0;
    cfg.modules.eventbus.mqtt_server_internal = format!("tcp://127.0.0.1:{}", args.mqtt_port);
    cfg.modules.edgemesh.enable = false;
    let yaml = cfg.to_yaml().context("rendering edgecore.yaml")?;
    let config_file = layout.config_file(Role::Edge);
    rec.write(&config_file, yaml.as_bytes(), 0o644)?;
    rec.config = config_file;
    // What edgecore creates: its database, edged's pod dirs.
    rec.track_new_sqlite(&db)?;
    rec.mkdir(&PathBuf::from("/var/lib/edged/pods"))?;
    println!("      {} (node {node}, IP {node_ip})", rec.config.display());

    p.step(&format!("starting edgecore ({:?})", rec.mode));
    let started = install::start(&mut rec)?;
    install::wait_ready(&rec, "has not connected to cloudcore", || {
        install::http_get(&args.metrics_address, "/metrics", Duration::from_secs(1))
            .is_some_and(|m| m.lines().any(|l| l.trim() == "edgehub_connected 1"))
    })
    .await?;
    rollback.disarm();
    let who = started.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
    println!(
        "\nedgecore is running and connected ({who}log {}). Node {node} appears in `kubectl get nodes`.",
        rec.log_file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_dns_1123() {
        for ok in ["edge-1", "a", "edge.example.com", "n0"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Edge", "-edge", "edge-", "ed_ge", "a..b", &"x".repeat(64)] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_route_to_loopback_is_loopback() {
        assert_eq!(
            route_ip("127.0.0.1".parse().unwrap()),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
