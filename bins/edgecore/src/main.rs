//! edgecore: the KubeEdge edge daemon.
//!
//! Reads `edgecore.yaml` (KubeEdge v1.2 format, see `ke-config`), builds the beehive bus and runs the
//! enabled modules on it. Modules present so far: EdgeHub (`websocket`), MetaManager (`metaManager`, on the
//! SQLite database at `database.dataSource`), DeviceTwin (`twin`, on the same database handle), Edged
//! (`edged`, pods on the CRI runtime at `modules.edged.remoteRuntimeEndpoint`; needs `runtimeType: remote`)
//! and EventBus (`eventbus`, MQTT per `mqttMode`). The others (edgemesh, servicebus) join the same `Core` as
//! they land.
//!
//! Certificate bootstrap (v1.3): with `modules.edgehub.token` set and `tlsCaFile`, `tlsCertFile` or
//! `tlsPrivateKeyFile` missing, edgecore first fetches the CA (pinned by the token's hash) and a
//! certificate for `hostnameOverride` from `modules.edgehub.httpServer`, writes the files, then starts
//! as usual; any failure (bad/expired token, hash mismatch, unreachable cloud, clock skew) stops it with
//! the reason.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::Parser;
use devicetwin::{DeviceTwin, DeviceTwinOptions};
use edged::{Edged, EdgedOptions};
use edgehub::{EdgeHub, EdgeHubMetrics, EdgeHubOptions, LinkKind};
use eventbus::{EventBus, EventBusOptions, MqttMode};
use ke_beehive::{Beehive, Core};
use ke_config::cli::ConfigFlags;
use ke_config::edgecore::{CgroupDriver, EdgeCoreConfig};
use ke_store::{Store, StoreOptions};
use metamanager::{MetaManager, MetaManagerOptions};
use tracing::info;

/// The KubeEdge edge daemon.
#[derive(Debug, Parser)]
#[command(name = "edgecore", version = concat!("KubeEdge-rs v", env!("CARGO_PKG_VERSION")), about)]
struct Cli {
    #[command(flatten)]
    config: ConfigFlags,
}

fn main() -> std::process::ExitCode {
    let cfg = match Cli::parse().config.resolve_or_exit::<EdgeCoreConfig>() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Two worker threads are plenty for an edge node and keep the idle footprint small.
    ke_metrics::daemon::run("edgecore", Some(2), run(cfg))
}

fn edgehub_options(cfg: &EdgeCoreConfig) -> anyhow::Result<EdgeHubOptions> {
    let h = &cfg.modules.edgehub;
    let (kind, server, handshake) = if h.quic.enable {
        (LinkKind::Quic, h.quic.server.clone(), h.quic.handshake_timeout())
    } else {
        (
            LinkKind::WebSocket,
            h.websocket.server.clone(),
            h.websocket.handshake_timeout(),
        )
    };
    let tls = ke_pki::tls::client_config(
        h.tls_ca_file.as_ref(),
        h.tls_cert_file.as_ref(),
        h.tls_private_key_file.as_ref(),
    )
    .context("loading edgehub TLS files (modules.edgehub.tlsCaFile/tlsCertFile/tlsPrivateKeyFile)")?;
    Ok(EdgeHubOptions {
        enabled: h.enable,
        server,
        kind,
        node_id: cfg.modules.edged.hostname_override.clone(),
        project_id: h.project_id.clone(),
        tls,
        heartbeat: h.heartbeat(),
        limits: ke_transport::LinkLimits {
            handshake_timeout: handshake,
            ..Default::default()
        },
        backoff_min: std::time::Duration::from_secs(1),
    })
}

/// With `modules.edgehub.token` set and a TLS file missing, fetches the CA and this node's
/// certificate from `modules.edgehub.httpServer` (v1.3 certificate bootstrap, `edgehub::bootstrap`).
async fn bootstrap_certificates(cfg: &EdgeCoreConfig) -> anyhow::Result<()> {
    let h = &cfg.modules.edgehub;
    if h.token.is_empty() {
        return Ok(());
    }
    let (server_host, server_port) = h
        .http_server_addr()
        .context("modules.edgehub.httpServer must be https://host[:port]")?;
    let opts = edgehub::bootstrap::BootstrapOptions {
        token: h.token.clone(),
        server_host,
        server_port,
        node: cfg.modules.edged.hostname_override.clone(),
        ca_file: h.tls_ca_file.clone().into(),
        cert_file: h.tls_cert_file.clone().into(),
        key_file: h.tls_private_key_file.clone().into(),
        timeout: std::time::Duration::from_secs(30),
    };
    edgehub::bootstrap::ensure_certificates(&opts)
        .await
        .context("certificate bootstrap with modules.edgehub.token")?;
    Ok(())
}

/// `modules.edged` as edged options; refuses what this edged cannot run (dockershim).
fn edged_options(cfg: &EdgeCoreConfig) -> anyhow::Result<EdgedOptions> {
    let e = &cfg.modules.edged;
    if e.runtime_type != "remote" {
        anyhow::bail!(
            "modules.edged.runtimeType is {:?}: only a remote CRI runtime is supported (no dockershim). \
             Set modules.edged.runtimeType: remote and modules.edged.remoteRuntimeEndpoint: \
             unix:///run/containerd/containerd.sock (hack/setup-containerd.sh sets containerd up), \
             or modules.edged.enable: false",
            e.runtime_type
        );
    }
    Ok(EdgedOptions {
        enabled: true,
        node_name: e.hostname_override.clone(),
        node_ip: e.node_ip.clone(),
        runtime_endpoint: e.remote_runtime_endpoint.clone(),
        runtime_request_timeout: e.runtime_request_timeout(),
        pod_sandbox_image: e.pod_sandbox_image.clone(),
        register_node_namespace: e.register_node_namespace.clone(),
        register_node: e.register_node,
        node_status_update_frequency: e.node_status_update_frequency(),
        cgroup_root: match e.cgroup_driver {
            CgroupDriver::Cgroupfs => Some("/kubepods".to_owned()),
            CgroupDriver::Systemd => None,
        },
        read_only_address: (!e.read_only_address.is_empty()).then(|| e.read_only_address.clone()),
        max_dead_containers_per_pod: e.maximum_dead_containers_per_pod,
        // Validated as percentages.
        image_gc_high_threshold: u8::try_from(e.image_gc_high_threshold.clamp(0, 100)).unwrap_or(100),
        image_gc_low_threshold: u8::try_from(e.image_gc_low_threshold.clamp(0, 100)).unwrap_or(0),
        ..Default::default()
    })
}

async fn run(cfg: EdgeCoreConfig) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let hub_metrics = EdgeHubMetrics::default();
    hub_metrics.register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));

    let mut core = Core::new(Beehive::default());
    let cancel = core.cancellation_token();
    if !cfg.metrics_address.is_empty() {
        let at = ke_metrics::serve(&cfg.metrics_address, registry.clone(), cancel.clone()).await?;
        info!(%at, "metrics at http://{at}/metrics");
    }
    if cfg.modules.edgehub.enable {
        bootstrap_certificates(&cfg).await?;
        core.register(EdgeHub::new(edgehub_options(&cfg)?, hub_metrics))?;
    }
    let mm = &cfg.modules.metamanager;
    let twin_on = cfg.modules.devicetwin.enable;
    let store = if mm.enable || twin_on {
        let path = cfg.database.data_source.clone();
        let opts = StoreOptions {
            meta_table: mm.enable,
            device_tables: twin_on,
            ..Default::default()
        };
        // Opening runs the schema migration on the store's own thread; keep it off the runtime.
        let store = tokio::task::spawn_blocking(move || Store::open_with(&path, opts))
            .await?
            .with_context(|| {
                format!(
                    "opening the edge database {} (database.dataSource)",
                    cfg.database.data_source
                )
            })?;
        Some(store)
    } else {
        None
    };
    if let (true, Some(store)) = (mm.enable, &store) {
        core.register(MetaManager::new(
            MetaManagerOptions {
                enabled: true,
                context_send_module: mm.context_send_module.clone(),
                context_send_group: mm.context_send_group.clone(),
                pod_status_sync_interval: mm.pod_status_sync_interval(),
                remote_query_timeout: cfg.modules.edgehub.heartbeat(),
                ..Default::default()
            },
            store.clone(),
        ))?;
    }
    if let (true, Some(store)) = (twin_on, &store) {
        // Same handle as metaManager: the database keeps a single writer.
        core.register(DeviceTwin::new(
            DeviceTwinOptions {
                enabled: true,
                node_name: cfg.modules.edged.hostname_override.clone(),
                ..Default::default()
            },
            store.clone(),
        ))?;
    }
    if cfg.modules.edged.enable {
        core.register(
            Edged::new(edged_options(&cfg)?)
                .context("starting edged (modules.edged.remoteRuntimeEndpoint)")?,
        )?;
    }
    let eb = &cfg.modules.eventbus;
    if eb.enable {
        let opts = EventBusOptions {
            enabled: true,
            mode: MqttMode::from_kubeedge(i64::from(eb.mqtt_mode))?,
            internal_server: eb.mqtt_server_internal.clone(),
            external_server: eb.mqtt_server_external.clone(),
            qos: eb.mqtt_qos,
            retain: eb.mqtt_retain,
            session_queue_size: usize::try_from(eb.mqtt_session_queue_size).unwrap_or(100),
            node_name: cfg.modules.edged.hostname_override.clone(),
            ..Default::default()
        };
        // Binding now makes a busy MQTT port a start-up error rather than a log line.
        core.register(
            EventBus::bind(opts)
                .await
                .context("starting the eventbus (modules.eventbus)")?,
        )?;
    }
    core.start();
    info!(node = %cfg.modules.edged.hostname_override, "edgecore started");
    ke_metrics::daemon::shutdown_signal().await;
    info!("shutting down");
    core.shutdown().await;
    if let Some(store) = store {
        store.close().await;
    }
    Ok(())
}
