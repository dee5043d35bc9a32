//! cloudcore: the KubeEdge cloud daemon.
//!
//! Reads `cloudcore.yaml` (KubeEdge v1.2 format, see `ke-config`), starts CloudHub and serves
//! Prometheus metrics. With a Kubernetes API to talk to (`kubeAPIConfig.kubeConfig`, `master`, or
//! in-cluster), CloudHub's events go through a small router (no cloud-side beehive): edge messages
//! whose source is `twin` to DeviceController (`modules.devicecontroller.enable`), everything
//! else to EdgeController (`modules.edgecontroller.enable`) — v1.2's rule, spec message.md §8.
//! Without an API server (both empty, not in a cluster) cloudcore runs the hub alone and logs
//! edge traffic. The synccontroller runs inside EdgeController (`edgecontroller::sync`).
//!
//! With `modules.cloudhub.https.enable` (v1.3 certificate bootstrap) cloudcore also serves
//! `/ca.crt` and `/edge.crt` on `https.address:https.port` (`cloudhub::https`, CA from `tlsCAFile` +
//! `tlsCAKeyFile`) and keeps the bootstrap token in the Secret `kubeedge/tokensecret`
//! (`cloudhub::tokensecret`); that needs the Kubernetes API. With it off, neither runs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use cloudhub::metrics::HubMetrics;
use cloudhub::{CloudHub, CloudHubOptions, HubEvent};
use ke_config::cli::ConfigFlags;
use ke_config::cloudcore::CloudCoreConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The KubeEdge cloud daemon.
#[derive(Debug, Parser)]
#[command(name = "cloudcore", version = concat!("KubeEdge-rs v", env!("CARGO_PKG_VERSION")), about)]
struct Cli {
    #[command(flatten)]
    config: ConfigFlags,
}

fn main() -> std::process::ExitCode {
    let cfg = match Cli::parse().config.resolve_or_exit::<CloudCoreConfig>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    ke_metrics::daemon::run("cloudcore", None, run(cfg))
}

fn listen_addr(address: &str, port: u32, what: &str) -> anyhow::Result<SocketAddr> {
    let ip: IpAddr = address
        .parse()
        .with_context(|| format!("{what}.address {address:?} is not an IP address"))?;
    let port = u16::try_from(port).with_context(|| format!("{what}.port {port} is out of range"))?;
    Ok(SocketAddr::new(ip, port))
}

async fn run(cfg: CloudCoreConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = HubMetrics::default();
    metrics.register(&mut registry);
    let controller_metrics = cloudhub::metrics::ControllerMetrics::default();
    controller_metrics.register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));
    if !cfg.metrics_address.is_empty() {
        let at = ke_metrics::serve(&cfg.metrics_address, registry.clone(), cancel.clone()).await?;
        info!(%at, "metrics at http://{at}/metrics");
    }

    let hub_cfg = &cfg.modules.cloudhub;
    let (events_tx, events) = mpsc::channel(4096);
    let ha = if hub_cfg.enable && hub_cfg.ha.enable {
        Some(start_ha(&cfg).await?)
    } else {
        None
    };
    let hub = if hub_cfg.enable {
        let tls = ke_pki::tls::server_config(
            hub_cfg.tls_ca_file.as_ref(),
            hub_cfg.tls_cert_file.as_ref(),
            hub_cfg.tls_private_key_file.as_ref(),
        )
        .context("loading cloudhub TLS files (modules.cloudhub.tlsCAFile/tlsCertFile/tlsPrivateKeyFile)")?;
        let mut opts = CloudHubOptions::new(tls);
        if hub_cfg.websocket.enable {
            opts.websocket = Some(listen_addr(
                &hub_cfg.websocket.address,
                hub_cfg.websocket.port,
                "modules.cloudhub.websocket",
            )?);
        }
        if hub_cfg.quic.enable {
            opts.quic = Some(listen_addr(
                &hub_cfg.quic.address,
                hub_cfg.quic.port,
                "modules.cloudhub.quic",
            )?);
        }
        if hub_cfg.unix_socket.enable {
            opts.unix_socket = hub_cfg.unix_socket.path().map(PathBuf::from);
        }
        opts.keepalive_interval = hub_cfg.keepalive_interval();
        opts.write_timeout = hub_cfg.write_timeout();
        opts.node_limit = usize::try_from(hub_cfg.node_limit).unwrap_or(0);
        opts.max_pending_per_node = hub_cfg.max_pending_per_node as usize;
        opts.allow_legacy_certs = hub_cfg.allow_legacy_edge_cert;
        opts.queue_store = Some(PathBuf::from(&hub_cfg.queue_store)).filter(|p| !p.as_os_str().is_empty());
        opts.ha = ha;
        let (hub, at) = CloudHub::start(opts, events_tx, metrics, cancel.clone()).await?;
        info!(websocket = ?at.websocket, quic = ?at.quic, unix = ?at.unix_socket, "cloudhub started");
        Some(hub)
    } else {
        drop(events_tx);
        None
    };

    let mut tasks = Vec::new();
    if hub_cfg.enable && hub_cfg.https.enable {
        tasks.push(start_cert_bootstrap(&cfg, cancel.clone()).await?);
    }

    let ec = &cfg.modules.edgecontroller;
    let dc = &cfg.modules.devicecontroller;
    let client = if (ec.enable || dc.enable) && hub.is_some() {
        edgecontroller::kubeclient::client(&cfg.kube_api_config)
            .await
            .context("controllers: Kubernetes client from kubeAPIConfig")?
    } else {
        None
    };
    match (client, hub.clone()) {
        (Some(client), Some(hub)) => {
            let (ec_tx, ec_rx) = mpsc::channel(4096);
            // `modules.devicecontroller.buffer.updateDeviceStatus`: the edge → devicecontroller
            // inbox (v1.2's channel of the same name; default 1024).
            let dc_buffer = usize::try_from(dc.buffer.update_device_status)
                .unwrap_or(0)
                .max(1);
            let (dc_tx, dc_rx) = mpsc::channel(dc_buffer);
            if ec.enable {
                let mut opts = edgecontroller::Options::from_config(ec);
                opts.metrics = controller_metrics.clone();
                info!("edgecontroller started");
                tasks.push(tokio::spawn(edgecontroller::EdgeController::run(
                    client.clone(),
                    hub.clone(),
                    ec_rx,
                    opts,
                    cancel.clone(),
                )));
            } else {
                tasks.push(tokio::spawn(log_events(ec_rx)));
            }
            if dc.enable {
                info!("devicecontroller started");
                tasks.push(tokio::spawn(devicecontroller::DeviceController::run(
                    client,
                    hub,
                    dc_rx,
                    usize::try_from(dc.load.update_device_status_workers)
                        .unwrap_or(0)
                        .max(1),
                    controller_metrics.controller("devicecontroller"),
                    cancel.clone(),
                )));
            } else {
                drop(dc_rx);
            }
            tasks.push(tokio::spawn(route(events, ec_tx, dc.enable.then_some(dc_tx))));
        }
        (None, Some(_)) if ec.enable || dc.enable => {
            warn!(
                "controllers: no Kubernetes API (kubeAPIConfig.kubeConfig and master are empty and not in a cluster); edge messages are only logged"
            );
            tasks.push(tokio::spawn(log_events(events)));
        }
        _ => tasks.push(tokio::spawn(log_events(events))),
    }

    ke_metrics::daemon::shutdown_signal().await;
    info!("shutting down");
    cancel.cancel();
    if let Some(hub) = hub {
        hub.shutdown().await;
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// `modules.cloudhub.ha`: the Kubernetes client, the shared CA (Secret `casecret`, files written
/// when absent) and the Lease identity.
async fn start_ha(cfg: &CloudCoreConfig) -> anyhow::Result<cloudhub::ha::HaSetup> {
    let hub = &cfg.modules.cloudhub;
    let qps = hub.ha.lease_qps;
    let client = edgecontroller::kubeclient::client_limited(&cfg.kube_api_config, f64::from(qps), qps)
        .await
        .context("modules.cloudhub.ha: Kubernetes client from kubeAPIConfig")?
        .context(
            "modules.cloudhub.ha needs the Kubernetes API (the Leases and the CA Secret live there): \
             set kubeAPIConfig.kubeConfig or master",
        )?;
    let ha = &hub.ha;
    let identity = if ha.identity.is_empty() {
        host_name().unwrap_or_else(|| format!("cloudcore-{}", std::process::id()))
    } else {
        ha.identity.clone()
    };
    let sans = if ha.advertise_address.is_empty() {
        ["127.0.0.1".to_owned()].into_iter().chain(host_name()).collect()
    } else {
        ha.advertise_address.clone()
    };
    let files = cloudhub::casecret::CaFiles {
        ca_cert: hub.tls_ca_file.as_ref(),
        ca_key: hub.tls_ca_key_file.as_ref(),
        server_cert: hub.tls_cert_file.as_ref(),
        server_key: hub.tls_private_key_file.as_ref(),
        sans,
    };
    let outcome = cloudhub::casecret::ensure(&client, &ha.namespace, &files)
        .await
        .context("modules.cloudhub.ha: sharing the CA")?;
    info!(?outcome, %identity, namespace = %ha.namespace, "HA: CA shared through Secret casecret");
    Ok(cloudhub::ha::HaSetup {
        client,
        options: cloudhub::ha::HaOptions {
            identity,
            namespace: ha.namespace.clone(),
            lease_duration: ha.lease_duration(),
        },
    })
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// `modules.cloudhub.https`: the certificate-bootstrap endpoint and the token Secret it needs.
async fn start_cert_bootstrap(
    cfg: &CloudCoreConfig,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let hub = &cfg.modules.cloudhub;
    let ca = ke_pki::Ca::load(hub.tls_ca_file.as_ref(), hub.tls_ca_key_file.as_ref()).context(
        "certificate bootstrap (modules.cloudhub.https) needs the CA: modules.cloudhub.tlsCAFile and tlsCAKeyFile",
    )?;
    let key = Arc::new(ke_pki::token::TokenKey::from_ca(&ca));
    let tls =
        ke_pki::tls::bootstrap_server_config(hub.tls_cert_file.as_ref(), hub.tls_private_key_file.as_ref())
            .context("loading cloudhub's server certificate for modules.cloudhub.https")?;
    let client = edgecontroller::kubeclient::client(&cfg.kube_api_config)
        .await
        .context("certificate bootstrap: Kubernetes client from kubeAPIConfig")?
        .context(
            "modules.cloudhub.https needs the Kubernetes API to publish the token in Secret kubeedge/tokensecret: \
             set kubeAPIConfig.kubeConfig or master, or set modules.cloudhub.https.enable: false",
        )?;
    let at = cloudhub::https::serve(
        cloudhub::https::CertServerOptions {
            listen: listen_addr(&hub.https.address, hub.https.port, "modules.cloudhub.https")?,
            tls,
            ca: Arc::new(ca),
            token_key: key.clone(),
        },
        cancel.clone(),
    )
    .await?;
    info!(%at, "certificate bootstrap at https://{at} (GET /ca.crt, GET /edge.crt with a token)");
    Ok(tokio::spawn(cloudhub::tokensecret::run(
        client,
        key,
        ke_pki::token::DEFAULT_VALIDITY,
        cancel,
    )))
}

/// The cloud's message router: an edge message whose source is `twin` goes to devicecontroller
/// (when it runs), everything else to edgecontroller.
async fn route(
    mut events: mpsc::Receiver<HubEvent>,
    edge: mpsc::Sender<HubEvent>,
    device: Option<mpsc::Sender<ke_core::Message>>,
) {
    while let Some(ev) = events.recv().await {
        match (ev, &device) {
            (HubEvent::Upstream(m), Some(device)) if m.source() == ke_core::names::module::TWIN => {
                if device.send(m).await.is_err() {
                    return;
                }
            }
            (ev, _) => {
                if edge.send(ev).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Without controllers, edge traffic is only logged.
async fn log_events(mut events: mpsc::Receiver<HubEvent>) {
    while let Some(ev) = events.recv().await {
        match ev {
            HubEvent::Upstream(m) => debug!(msg = %m, "edge message (no controller consumes it)"),
            HubEvent::Connected(n) => info!(node = %n, "node connected"),
            HubEvent::Disconnected(n) => info!(node = %n, "node disconnected"),
            HubEvent::Orphaned(n) => info!(node = %n, "node orphaned (its cloudcore died)"),
            HubEvent::Acked { node, message } => debug!(%node, msg = %message, "delivered"),
        }
    }
}
