//! `mapper-modbus`: thin main — parse flags, init tracing, run the Modbus mapper until SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mapper_sdk::{DriverOptions, MqttClient, driver, process, twin, watch};
use modbus_mapper::ModbusProtocol;
use tokio_util::sync::CancellationToken;

/// KubeEdge Modbus mapper: polls Modbus TCP/RTU devices of the device profile into device twins
/// over MQTT and writes desired twin values to coils and holding registers.
#[derive(Debug, Parser)]
#[command(name = "mapper-modbus", version)]
struct Args {
    /// Device profile JSON (the `deviceProfile.json` key of ConfigMap `device-profile-config-<node>`).
    /// Watched: changes apply without a restart.
    #[arg(long, default_value = "/opt/kubeedge/deviceProfile.json")]
    profile: PathBuf,
    /// MQTT broker of the edge: `tcp://127.0.0.1:1883` (mosquitto, edgecore's default external mode)
    /// or `tcp://127.0.0.1:1884` (edgecore's internal broker).
    #[arg(long, default_value = "tcp://127.0.0.1:1883")]
    mqtt_server: String,
    /// MQTT client id (default `mapper-modbus-<pid>`).
    #[arg(long)]
    client_id: Option<String>,
    /// Milliseconds between poll cycles.
    #[arg(long, default_value_t = 2000)]
    poll_interval_ms: u64,
    /// Milliseconds a connect or a Modbus request may take before the device counts as unreachable.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// v1.2 `conf/conf.json` (`{"mqtt_ip","mqtt_port","dpl_name"}`); overrides --mqtt-server and --profile.
    #[arg(long)]
    conf: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct LegacyConf {
    mqtt_ip: String,
    mqtt_port: serde_json::Value,
    dpl_name: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::init_tracing();
    let mut args = Args::parse();
    if let Some(conf) = &args.conf {
        let text = std::fs::read_to_string(conf).with_context(|| format!("reading {}", conf.display()))?;
        let c: LegacyConf =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", conf.display()))?;
        let port = match &c.mqtt_port {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        args.mqtt_server = format!("tcp://{}:{port}", c.mqtt_ip);
        args.profile = c.dpl_name;
    }
    let cancel = CancellationToken::new();
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("mapper-modbus-{}", std::process::id()));
    let profile = watch::watch_profile(&args.profile, cancel.clone())?;
    let (mqtt, incoming) = MqttClient::start(
        &args.mqtt_server,
        &client_id,
        &[twin::DELTA_FILTER, twin::GET_RESULT_FILTER],
        cancel.clone(),
    )?;
    tracing::info!(profile = %args.profile.display(), mqtt = %args.mqtt_server, "mapper-modbus starting");
    let protocol = Arc::new(ModbusProtocol::new(Duration::from_millis(args.timeout_ms.max(1))));
    let options = DriverOptions {
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
    };
    let run = tokio::spawn(driver::run(
        protocol,
        mqtt,
        incoming,
        profile,
        options,
        cancel.clone(),
    ));
    process::shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    let _ = run.await;
    Ok(())
}
