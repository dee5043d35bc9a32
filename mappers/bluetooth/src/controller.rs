//! The controller: selects the device, connects it over a [`Central`], runs the config's
//! immediate actions and schedules, the twin watcher, and the runtime topics
//! (`$ke/device/bluetooth-mapper/<id>/{watcher/create, action-manager/create|delete,
//! scheduler/create|delete}`). One task owns the action manager and the peripheral; schedules
//! ask it to perform actions through a channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mapper_sdk::twin::{self, TwinResult};
use mapper_sdk::{DeviceProfile, Incoming, MqttClient};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::action::{self, ActionManager, Kind, RuntimeAction, Target};
use crate::config::{Config, NameOnly, Schedule, WatcherConfig};
use crate::error::{Error, Result};
use crate::gatt::Central;
use crate::scheduler;

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How often the watcher asks for the twin (v1.2 looped continuously).
    pub watch_interval: Duration,
    /// Pause between BLE connection attempts.
    pub reconnect_interval: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            watch_interval: Duration::from_secs(1),
            reconnect_interval: Duration::from_secs(5),
        }
    }
}

/// The runtime topic prefix of a device.
pub fn runtime_prefix(id: &str) -> String {
    format!("$ke/device/bluetooth-mapper/{id}")
}

type PerformRequest = (String, oneshot::Sender<Result<String>>);

enum Outcome {
    Stopped,
    Reselect,
}

/// Runs the mapper until `cancel`. When a profile change selects another device, everything is
/// torn down and started again for the new device (no process restart).
pub async fn run<C: Central>(
    central: C,
    config: Config,
    mut profile: watch::Receiver<Arc<DeviceProfile>>,
    options: ControllerOptions,
    cancel: CancellationToken,
) -> Result<()> {
    loop {
        let token = cancel.child_token();
        let outcome = run_once(&central, &config, &mut profile, &options, token.clone()).await;
        token.cancel();
        match outcome? {
            Outcome::Stopped => return Ok(()),
            Outcome::Reselect => tracing::info!("device selection changed; starting again"),
        }
    }
}

async fn run_once<C: Central>(
    central: &C,
    config: &Config,
    profile: &mut watch::Receiver<Arc<DeviceProfile>>,
    options: &ControllerOptions,
    cancel: CancellationToken,
) -> Result<Outcome> {
    // 1. the device the config selects
    let target = loop {
        let p = profile.borrow_and_update().clone();
        match action::target(config, &p) {
            Ok(t) => break t,
            Err(e) => tracing::warn!("{e}; waiting for the device profile"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(Outcome::Stopped),
            r = profile.changed() => if r.is_err() { return Ok(Outcome::Stopped) },
        }
    };
    tracing::info!(device = %target.id, name = %target.ble_name, "selected device");

    // 2. the peripheral
    let peripheral = loop {
        match central.connect(&target.ble_name, target.mac.as_deref()).await {
            Ok(p) => break p,
            Err(e) => tracing::warn!(device = %target.id, "connect: {e}; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(Outcome::Stopped),
            () = tokio::time::sleep(options.reconnect_interval) => {}
        }
    };
    tracing::info!(device = %target.id, "peripheral connected");

    // 3. MQTT
    let prefix = runtime_prefix(&target.id);
    let topics: Vec<String> = [
        "watcher/create",
        "scheduler/create",
        "scheduler/delete",
        "action-manager/create",
        "action-manager/delete",
    ]
    .iter()
    .map(|t| format!("{prefix}/{t}"))
    .chain([format!("{}/result", twin::twin_get_topic(&target.id))])
    .collect();
    let filters: Vec<&str> = topics.iter().map(String::as_str).collect();
    let client_id = format!("bluetooth-mapper-{}", target.id);
    let (mqtt, mut incoming) = MqttClient::start(config.mqtt.url(), &client_id, &filters, cancel.clone())?;

    let mut st = State {
        target,
        manager: ActionManager::from_config(config, &profile.borrow()),
        runtime: ActionManager::default(),
        watcher: config.watcher.clone(),
        schedules: HashMap::new(),
        mqtt,
        types: property_types(config, &profile.borrow()),
    };
    let (perf_tx, mut perf_rx) = mpsc::channel::<PerformRequest>(16);

    // 4. immediate actions, then the configured schedules
    let immediate: Vec<String> = st
        .manager
        .iter()
        .filter(|a| a.perform_immediately)
        .map(|a| a.name.clone())
        .collect();
    for name in immediate {
        st.perform_logged(&name, &peripheral, None).await;
    }
    for s in config.scheduler.schedules.clone() {
        st.start_schedule(s, &perf_tx, &cancel);
    }

    // 5. the loop
    let mut tick = tokio::time::interval(options.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(Outcome::Stopped),
            _ = tick.tick() => {
                if !st.watcher.device_twin_attributes.is_empty() {
                    let req = serde_json::json!({"event_id": "", "timestamp": twin::now_ms(), "twin": null});
                    st.publish(&twin::twin_get_topic(&st.target.id), &req).await;
                }
            }
            changed = profile.changed() => {
                if changed.is_err() { return Ok(Outcome::Stopped) }
                let p = profile.borrow_and_update().clone();
                if action::target(config, &p).ok().as_ref() != Some(&st.target) {
                    return Ok(Outcome::Reselect);
                }
                st.manager = ActionManager::from_config(config, &p);
                st.types = property_types(config, &p);
                tracing::info!("device profile reloaded; actions rebuilt");
            }
            req = perf_rx.recv() => if let Some((name, reply)) = req {
                let _ = reply.send(st.perform(&name, &peripheral, None).await);
            },
            msg = incoming.recv() => match msg {
                Some(m) => st.on_message(m, &peripheral, &perf_tx, &cancel).await,
                None => return Ok(Outcome::Stopped),
            },
        }
    }
}

fn property_types(config: &Config, profile: &DeviceProfile) -> HashMap<String, String> {
    profile
        .device_models
        .iter()
        .filter(|m| m.name.eq_ignore_ascii_case(&config.device_model_name))
        .flat_map(|m| m.properties.iter())
        .map(|p| (p.name.clone(), p.data_type.clone()))
        .collect()
}

struct State {
    target: Target,
    /// Actions from the config + profile (rebuilt on profile change).
    manager: ActionManager,
    /// Actions created on `action-manager/create` (kept across profile changes; win on name clash).
    runtime: ActionManager,
    watcher: WatcherConfig,
    schedules: HashMap<String, CancellationToken>,
    mqtt: MqttClient,
    types: HashMap<String, String>,
}

impl State {
    fn action(&self, name: &str) -> Option<(&ActionManager, &action::Action)> {
        self.runtime
            .get(name)
            .map(|a| (&self.runtime, a))
            .or_else(|| self.manager.get(name).map(|a| (&self.manager, a)))
    }

    async fn perform<G: crate::gatt::Gatt>(
        &self,
        name: &str,
        gatt: &G,
        value: Option<&[u8]>,
    ) -> Result<String> {
        let (m, _) = self
            .action(name)
            .ok_or_else(|| Error::UnknownAction(name.to_owned()))?;
        m.perform(name, gatt, value).await
    }

    async fn perform_logged<G: crate::gatt::Gatt>(&self, name: &str, gatt: &G, value: Option<&[u8]>) -> bool {
        match self.perform(name, gatt, value).await {
            Ok(r) => {
                tracing::info!(device = %self.target.id, action = %name, result = %r, "action performed");
                true
            }
            Err(e) => {
                tracing::warn!(device = %self.target.id, action = %name, "action failed: {e}");
                false
            }
        }
    }

    fn start_schedule(
        &mut self,
        s: Schedule,
        perf_tx: &mpsc::Sender<PerformRequest>,
        cancel: &CancellationToken,
    ) {
        if let Some(old) = self.schedules.remove(&s.name) {
            old.cancel();
        }
        let token = cancel.child_token();
        self.schedules.insert(s.name.clone(), token.clone());
        let perf_tx = perf_tx.clone();
        let mqtt = self.mqtt.clone();
        let topic = format!("{}/scheduler/result", runtime_prefix(&self.target.id));
        tracing::info!(schedule = %s.name, limit = s.occurrence_limit, "schedule started");
        tokio::spawn(async move {
            scheduler::run(
                &s,
                |name| {
                    let perf_tx = perf_tx.clone();
                    async move {
                        let (tx, rx) = oneshot::channel();
                        perf_tx
                            .send((name, tx))
                            .await
                            .map_err(|_| Error::Ble("controller stopped".into()))?;
                        rx.await.map_err(|_| Error::Ble("controller stopped".into()))?
                    }
                },
                |res| {
                    let (mqtt, topic) = (mqtt.clone(), topic.clone());
                    async move {
                        if let Err(e) = mqtt.publish_json(&topic, &res).await {
                            tracing::warn!(%topic, "publish failed: {e}");
                        }
                    }
                },
                token,
            )
            .await;
        });
    }

    async fn on_message<G: crate::gatt::Gatt>(
        &mut self,
        m: Incoming,
        gatt: &G,
        perf_tx: &mpsc::Sender<PerformRequest>,
        cancel: &CancellationToken,
    ) {
        if let Err(e) = self.dispatch(&m, gatt, perf_tx, cancel).await {
            tracing::warn!("{e}");
        }
    }

    async fn dispatch<G: crate::gatt::Gatt>(
        &mut self,
        m: &Incoming,
        gatt: &G,
        perf_tx: &mpsc::Sender<PerformRequest>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let parse_err = |source| Error::Payload {
            topic: m.topic.clone(),
            source,
        };
        let prefix = runtime_prefix(&self.target.id);
        let Some(rest) = m.topic.strip_prefix(&prefix) else {
            if m.topic.ends_with("/twin/get/result") {
                let r: TwinResult = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                self.converge(&r, gatt).await;
            }
            return Ok(());
        };
        match rest {
            "/watcher/create" => {
                self.watcher = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                tracing::info!(
                    attributes = self.watcher.device_twin_attributes.len(),
                    "watcher replaced"
                );
            }
            "/scheduler/create" => {
                let list: Vec<Schedule> = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                for s in list {
                    self.start_schedule(s, perf_tx, cancel);
                }
            }
            "/scheduler/delete" => {
                let list: Vec<NameOnly> = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                for n in list {
                    if let Some(t) = self.schedules.remove(&n.name) {
                        t.cancel();
                        tracing::info!(schedule = %n.name, "schedule deleted");
                    }
                }
            }
            "/action-manager/create" => {
                let list: Vec<RuntimeAction> = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                for r in list {
                    let a = ActionManager::from_runtime(&r)?;
                    let name = a.name.clone();
                    self.runtime.insert(a);
                    tracing::info!(action = %name, "action created");
                    if r.perform_immediately {
                        self.perform_logged(&name, gatt, None).await;
                    }
                }
            }
            "/action-manager/delete" => {
                let list: Vec<NameOnly> = serde_json::from_slice(&m.payload).map_err(parse_err)?;
                for n in list {
                    let a = self
                        .runtime
                        .remove(&n.name)
                        .or_else(|| self.manager.remove(&n.name));
                    if a.is_some() {
                        tracing::info!(action = %n.name, "action deleted");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The watcher step: run the actions of every diverged attribute; when all succeed, report
    /// actual = expected.
    async fn converge<G: crate::gatt::Gatt>(&mut self, r: &TwinResult, gatt: &G) {
        if r.code.is_some() {
            tracing::debug!(code = ?r.code, reason = ?r.reason, "twin get refused");
            return;
        }
        for step in crate::watcher::plan(&self.watcher, &r.twin) {
            let mut ok = true;
            for name in &step.actions {
                let value = self
                    .action(name)
                    .filter(|(_, a)| a.kind == Kind::Write)
                    .and_then(|(_, a)| a.data_write.get(&step.expected).cloned());
                ok &= self.perform_logged(name, gatt, value.as_deref()).await;
            }
            if !ok {
                continue; // retried on the next twin get
            }
            let data_type = self
                .types
                .get(&step.property)
                .cloned()
                .unwrap_or_else(|| "string".into());
            let update = twin::actual_update(&step.property, &step.expected, &data_type);
            self.publish(&twin::twin_update_topic(&self.target.id), &update)
                .await;
            tracing::info!(property = %step.property, value = %step.expected, "twin converged");
        }
    }

    async fn publish<T: serde::Serialize>(&self, topic: &str, payload: &T) {
        if let Err(e) = self.mqtt.publish_json(topic, payload).await {
            tracing::warn!(%topic, "publish failed: {e}");
        }
    }
}
