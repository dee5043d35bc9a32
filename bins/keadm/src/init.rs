//! `keadm init`: set up the cloud side on this machine.
//!
//! 1. refuse politely if our cloudcore already runs (nothing to do: `init` is idempotent);
//!    otherwise check its ports are free before touching anything;
//! 2. with `--local`, bring up the local control plane (`hack/local-k8s.sh up`);
//! 3. reach the API server and check its version (≥ 1.11);
//! 4. apply the Device/DeviceModel/ObjectSync CRDs and cloudcore's RBAC (server-side apply);
//! 5. create the CA (reused when present) and cloudcore's server certificate for the advertised
//!    addresses;
//!    (`--ha`: the CA is the cluster's, from the Secret `casecret`, or created there);
//! 6. write `cloudcore.yaml` (with the HTTPS certificate service edges bootstrap from; `--ha`
//!    adds `modules.cloudhub.ha`);
//! 7. start cloudcore (systemd unit, background process, or
//!    foreground), then wait until it serves.
//!
//! v1.2.1 downloaded release tarballs and CRDs from GitHub; this machine has no internet, and the
//! binaries sit next to keadm, so nothing is downloaded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ke_config::DaemonConfig;
use ke_config::cloudcore::CloudCoreConfig;
use ke_pki::certgen;

use crate::install::{self, Layout, Progress, Record, Role, RunArgs};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// kubeconfig with the rights to install CRDs and RBAC (v1.2: `--kube-config`).
    #[arg(
        long = "kube-config",
        alias = "kubeconfig",
        default_value = "/root/.kube/config"
    )]
    kube_config: PathBuf,
    /// API server URL, overriding the kubeconfig's.
    #[arg(long, default_value = "")]
    master: String,
    /// kubeconfig cloudcore itself uses (least privilege); defaults to `--kube-config`.
    #[arg(long = "cloudcore-kube-config")]
    cloudcore_kube_config: Option<PathBuf>,
    /// Bring up the local control plane first with this script's `up` (`hack/local-k8s.sh` of a
    /// checkout); its kubeconfigs replace `--kube-config` / `--cloudcore-kube-config`.
    #[arg(long = "local", value_name = "LOCAL_K8S_SCRIPT", num_args = 0..=1,
          default_missing_value = "hack/local-k8s.sh")]
    local: Option<PathBuf>,
    /// Addresses (IP or DNS name) edges use to reach cloudcore, put in its certificate.
    #[arg(
        long = "advertise-address",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    advertise_address: Vec<String>,
    /// IP cloudcore listens on.
    #[arg(long = "listen-address", default_value = "0.0.0.0")]
    listen_address: String,
    /// cloudhub WebSocket port.
    #[arg(long, default_value_t = 10000)]
    port: u16,
    /// HTTPS port of the certificate service (`keadm join --token` fetches certificates there).
    #[arg(long = "https-port", default_value_t = 10002)]
    https_port: u16,
    /// cloudcore's Prometheus endpoint.
    #[arg(long = "metrics-address", default_value = ke_config::cloudcore::CLOUDCORE_DEFAULT_METRICS_ADDRESS)]
    metrics_address: String,
    /// Maximum number of edge nodes.
    #[arg(long = "node-limit", default_value_t = 1000)]
    node_limit: i32,
    /// HA mode (`modules.cloudhub.ha`): this cloudcore shares the nodes with the others of the
    /// cluster. The CA comes from the Secret `<--ha-namespace>/casecret` when one exists (a second
    /// cloudcore), else this run creates it there; edges list every cloudcore (or a load balancer).
    #[arg(long)]
    ha: bool,
    /// HA identity of this cloudcore (default: the host name).
    #[arg(long = "ha-identity", default_value = "")]
    ha_identity: String,
    /// Namespace of the HA Leases and of the CA Secret.
    #[arg(long = "ha-namespace", default_value = "kubeedge")]
    ha_namespace: String,
    #[command(flatten)]
    run: RunArgs,
}

const STEPS: usize = 7;

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    install::block_on(init(args))
}

async fn init(mut args: Args) -> anyhow::Result<()> {
    let layout = args.run.layout.clone();
    let mode = args.run.mode();
    let mut p = Progress::new(STEPS);
    p.step("checking for a running cloudcore");
    if let Some(rec) = Record::load(&layout, Role::Cloud)?
        && install::is_running(&rec)
    {
        println!(
            "cloudcore already runs (config {}, log {}); nothing to do. `keadm reset` removes it.",
            rec.config.display(),
            rec.log_file.display()
        );
        return Ok(());
    }
    p.step("ports and binary");
    let listen = &args.listen_address;
    install::check_port_free(&format!("{listen}:{}", args.port), "cloudhub websocket")?;
    install::check_port_free(&format!("{listen}:{}", args.https_port), "cloudhub https")?;
    if !args.metrics_address.is_empty() {
        install::check_port_free(&args.metrics_address, "cloudcore metrics")?;
    }

    let binary = install::find_binary(args.run.binary.as_deref(), "cloudcore")?;
    let rollback = install::Rollback::new(&layout, Role::Cloud);
    let mut rec = Record::load(&layout, Role::Cloud)?
        .unwrap_or_else(|| Record::new(&layout, Role::Cloud, binary.clone(), mode));
    rec.binary = binary;
    rec.mode = mode;
    rec.mkdir(&layout.state_dir)?;

    p.step("Kubernetes control plane");
    if let Some(script) = args.local.clone() {
        let (admin, cloudcore) = local_control_plane(&script)?;
        rec.local_control_plane = Some(std::fs::canonicalize(&script)?);
        rec.save()?;
        args.kube_config = admin;
        args.cloudcore_kube_config = Some(cloudcore);
    }
    let client = crate::k8s::client(&args.kube_config, &args.master).await?;
    let version = crate::k8s::check_version(&client).await?;
    println!(
        "      API server {version} (kubeconfig {})",
        args.kube_config.display()
    );

    p.step("CRDs and RBAC");
    let applied = crate::k8s::apply_manifests(&client).await?;
    println!("      applied {} objects: {}", applied.len(), applied.join(", "));

    p.step("certificates");
    let ca_dir = layout.ca_dir();
    let certs_dir = layout.certs_dir();
    rec.mkdir(&ca_dir)?;
    rec.mkdir(&certs_dir)?;
    let mut sans = args.advertise_address.clone();
    for extra in ["127.0.0.1", "localhost"] {
        if !sans.iter().any(|s| s == extra) {
            sans.push(extra.to_owned());
        }
    }
    let mut shared_ca = None;
    if args.ha {
        // One CA for every cloudcore: take the cluster's, or create it there (create-if-absent,
        // so two installs at once still end with one).
        let server = certs_dir.join("server");
        let files = cloudhub::casecret::CaFiles {
            ca_cert: &ca_dir.join(ke_pki::ca::CA_CERT_FILE),
            ca_key: &ca_dir.join(ke_pki::ca::CA_KEY_FILE),
            server_cert: &server.with_extension("crt"),
            server_key: &server.with_extension("key"),
            sans: sans.clone(),
        };
        let had_ca = files.ca_cert.exists();
        let outcome = cloudhub::casecret::ensure(&client, &args.ha_namespace, &files)
            .await
            .context("sharing the CA through the cluster (--ha)")?;
        println!(
            "      HA: CA {:?} (Secret {}/{})",
            outcome,
            args.ha_namespace,
            cloudhub::casecret::SECRET_NAME
        );
        if !had_ca {
            shared_ca = Some((files.ca_cert.to_owned(), files.ca_key.to_owned()));
        }
    }
    let issued = certgen::gen_server(&ca_dir, &certs_dir, "server", certgen::DEFAULT_SERVER_CN, &sans)
        .context("issuing cloudcore's server certificate")?;
    // The CA is ours only if this run created it; the server pair is (re)issued now.
    if issued.ca.provenance == ke_pki::Provenance::Created || shared_ca.is_some() {
        rec.track(&issued.ca.cert)?;
        rec.track(&issued.ca.key)?;
    }
    rec.track(&issued.pair.cert)?;
    rec.track(&issued.pair.key)?;
    println!(
        "      CA {} ({:?}); server certificate for {}",
        issued.ca.cert.display(),
        issued.ca.provenance,
        sans.join(", ")
    );

    p.step("cloudcore.yaml");
    let cfg = cloudcore_config(&args, &layout, &issued)?;
    let yaml = cfg.to_yaml().context("rendering cloudcore.yaml")?;
    let config_file = layout.config_file(Role::Cloud);
    rec.write(&config_file, yaml.as_bytes(), 0o644)?;
    rec.config = config_file;
    if !cfg.modules.cloudhub.queue_store.is_empty() {
        let queue = PathBuf::from(&cfg.modules.cloudhub.queue_store);
        rec.track_new_sqlite(&queue)?;
    }
    if let Some(sock) = cfg.modules.cloudhub.unix_socket.path() {
        rec.track_new(sock)?;
    }
    println!("      {}", rec.config.display());

    p.step(&format!("starting cloudcore ({:?})", rec.mode));
    let started = install::start(&mut rec)?;
    // Serving = the https endpoint accepts (it starts after the hub; metrics comes up first).
    // Probing the hub's port instead would log a failed edge handshake.
    let host: std::net::IpAddr = match args.listen_address.as_str() {
        "0.0.0.0" => [127, 0, 0, 1].into(),
        "::" => std::net::Ipv6Addr::LOCALHOST.into(),
        h => h.parse().unwrap_or([127, 0, 0, 1].into()),
    };
    let https = std::net::SocketAddr::new(host, args.https_port);
    install::wait_ready(&rec, "is not serving", || {
        std::net::TcpStream::connect_timeout(&https, Duration::from_secs(1)).is_ok()
            && (args.metrics_address.is_empty()
                || install::http_get(&args.metrics_address, "/metrics", Duration::from_secs(1)).is_some())
    })
    .await?;
    rollback.disarm();
    let who = started.pid.map(|p| format!("pid {p}, ")).unwrap_or_default();
    println!(
        "\ncloudcore is running ({who}log {}).\n\
         Edge nodes join with:\n  keadm gettoken --kube-config {}\n  \
         keadm join --cloudcore-ipport {}:{} --token <token>",
        rec.log_file.display(),
        args.kube_config.display(),
        args.advertise_address
            .first()
            .map(String::as_str)
            .unwrap_or("127.0.0.1"),
        args.port,
    );
    Ok(())
}

fn cloudcore_config(
    args: &Args,
    layout: &Layout,
    issued: &certgen::Issued,
) -> anyhow::Result<CloudCoreConfig> {
    let mut cfg = CloudCoreConfig::default();
    cfg.kube_api_config.kube_config = args
        .cloudcore_kube_config
        .as_deref()
        .unwrap_or(&args.kube_config)
        .display()
        .to_string();
    cfg.kube_api_config.master = args.master.clone();
    cfg.metrics_address = args.metrics_address.clone();
    let hub = &mut cfg.modules.cloudhub;
    hub.node_limit = args.node_limit;
    hub.tls_ca_file = issued.ca.cert.display().to_string();
    hub.tls_cert_file = issued.pair.cert.display().to_string();
    hub.tls_private_key_file = issued.pair.key.display().to_string();
    hub.queue_store = layout.state_dir.join("cloudhub-queue.db").display().to_string();
    hub.unix_socket.address = format!("unix://{}", layout.state_dir.join("kubeedge.sock").display());
    hub.websocket.address = args.listen_address.clone();
    hub.websocket.port = u32::from(args.port);
    crate::bootstrap::enable_https(&mut cfg, &args.listen_address, args.https_port, &issued.ca.key);
    if args.ha {
        let ha = &mut cfg.modules.cloudhub.ha;
        ha.enable = true;
        ha.identity = args.ha_identity.clone();
        ha.namespace = args.ha_namespace.clone();
        ha.advertise_address = args.advertise_address.clone();
        // Delivery resumes from ObjectSync after a failover; a local queue would be stale.
        cfg.modules.cloudhub.queue_store = String::new();
    }
    Ok(cfg)
}

/// Runs `<script> up`, then reads the kubeconfig paths from `<script> env`.
fn local_control_plane(script: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    if !script.is_file() {
        bail!(
            "{} not found: --local takes the local control plane script of a checkout (hack/local-k8s.sh)",
            script.display()
        );
    }
    let st = Command::new(script)
        .arg("up")
        .status()
        .with_context(|| format!("running {} up", script.display()))?;
    if !st.success() {
        bail!("{} up failed ({st})", script.display());
    }
    let out = Command::new(script).arg("env").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| PathBuf::from(v.trim()))
            .with_context(|| format!("{} env did not print {name}", script.display()))
    };
    Ok((var("KUBECONFIG")?, var("KE_CLOUDCORE_KUBECONFIG")?))
}
