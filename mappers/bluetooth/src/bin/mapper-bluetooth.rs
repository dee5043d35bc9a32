//! `mapper-bluetooth`: thin main — parse flags, init tracing, run the Bluetooth mapper until SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use bluetooth_mapper::config::Config;
use bluetooth_mapper::controller::{self, ControllerOptions};
use bluetooth_mapper::gatt::{SimCentral, SimPeripheral};
use clap::Parser;
use mapper_sdk::{process, watch};
use tokio_util::sync::CancellationToken;

/// KubeEdge Bluetooth LE mapper: actions, schedules and a twin watcher for one BLE device of the
/// device profile, driven over MQTT (v1.2 config schema and runtime topics).
#[derive(Debug, Parser)]
#[command(name = "mapper-bluetooth", version)]
struct Args {
    /// Mapper config (v1.2 schema: mqtt, device-model-name, action-manager, scheduler, watcher).
    #[arg(long, default_value = "configuration/config.yaml")]
    config: PathBuf,
    /// Device profile JSON (ConfigMap `device-profile-config-<node>`). Watched for changes.
    #[arg(long, default_value = "/opt/kubeedge/deviceProfile.json")]
    profile: PathBuf,
    /// Milliseconds between the watcher's twin gets.
    #[arg(long, default_value_t = 1000)]
    watch_interval_ms: u64,
    /// Use a simulated GATT peripheral described by this JSON file
    /// (`{"localName":"CC2650 SensorTag","characteristics":{"<uuid>":[bytes]}}`).
    /// Without it the radio is used, which needs a build with the `ble` feature.
    #[arg(long)]
    simulate: Option<PathBuf>,
    /// With --simulate: mirror the peripheral's state (values and every write) to this JSON file.
    #[arg(long)]
    simulate_state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    process::init_tracing();
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let cancel = CancellationToken::new();
    let profile = watch::watch_profile(&args.profile, cancel.clone())?;
    tracing::info!(config = %args.config.display(), profile = %args.profile.display(), mqtt = %config.mqtt.url(), "mapper-bluetooth starting");
    let options = ControllerOptions {
        watch_interval: Duration::from_millis(args.watch_interval_ms.max(10)),
        ..ControllerOptions::default()
    };
    let run = match &args.simulate {
        Some(sim) => {
            let peripheral = SimPeripheral::load(sim, args.simulate_state.clone())
                .with_context(|| format!("loading {}", sim.display()))?;
            tokio::spawn(controller::run(
                SimCentral { peripheral },
                config,
                profile,
                options,
                cancel.clone(),
            ))
        }
        None => radio(config, profile, options, cancel.clone()).await?,
    };
    tokio::select! {
        () = process::shutdown_signal() => tracing::info!("shutting down"),
        r = run => return r.context("controller task")?.map_err(Into::into),
    }
    cancel.cancel();
    Ok(())
}

type Running = tokio::task::JoinHandle<bluetooth_mapper::Result<()>>;

#[cfg(feature = "ble")]
async fn radio(
    config: Config,
    profile: tokio::sync::watch::Receiver<std::sync::Arc<mapper_sdk::DeviceProfile>>,
    options: ControllerOptions,
    cancel: CancellationToken,
) -> anyhow::Result<Running> {
    let central = bluetooth_mapper::ble::BluezCentral::new(Duration::from_secs(30)).await?;
    Ok(tokio::spawn(controller::run(
        central, config, profile, options, cancel,
    )))
}

#[cfg(not(feature = "ble"))]
async fn radio(
    _config: Config,
    _profile: tokio::sync::watch::Receiver<std::sync::Arc<mapper_sdk::DeviceProfile>>,
    _options: ControllerOptions,
    _cancel: CancellationToken,
) -> anyhow::Result<Running> {
    anyhow::bail!(
        "this build has no BLE radio backend (cargo feature `ble` is off); run with --simulate <peripheral.json> or rebuild with --features ble"
    )
}
