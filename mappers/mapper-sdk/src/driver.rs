//! The polling driver shared by register-style mappers (Modbus today): a [`DeviceProtocol`] says
//! how to read and write one property; [`run`] does the rest.
//!
//! Per poll cycle, every bound property of every device is read; a value that differs from the
//! last one reported is published on `twin/update`. Desired values arrive on `twin/update/delta`
//! (and from the `twin/get/result` asked for each device at start and whenever the profile adds
//! or changes a device) and are written to the device, then read back and reported.
//! A device whose every read in a cycle fails with [`ProtocolErrorKind::Unreachable`] is reported
//! `offline` on `state/update`; the first successful cycle after that reports `online` (and
//! re-reports every value). A profile change takes effect at once, without a restart.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::mqtt::{Incoming, MqttClient};
use crate::profile::{DeviceBinding, DeviceProfile, PropertyBinding};
use crate::twin::{
    DeviceState, TwinDelta, TwinResult, actual_update, device_id_of, now_ms, state_update,
    state_update_topic, twin_get_topic, twin_update_topic,
};

/// Why a read or write failed; decides online/offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// No answer: connection refused, timeout, port gone. Counts towards `offline`.
    Unreachable,
    /// The device answered with an error (e.g. a Modbus exception). The device is online.
    Rejected,
    /// The profile or the value cannot be used (bad visitor, read-only register, unparsable value).
    Invalid,
}

/// A failed device operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// Classification.
    pub kind: ProtocolErrorKind,
    /// What happened, naming the device/property.
    pub message: String,
}

impl ProtocolError {
    /// Builds an error of `kind`.
    pub fn new(kind: ProtocolErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One device protocol (Modbus, ...). Implementations keep their own connections and must bound
/// every operation with a timeout.
pub trait DeviceProtocol: Send + Sync + 'static {
    /// True for the `protocols[].protocol` kinds (lower-cased) this mapper drives.
    fn handles_protocol(&self, kind: &str) -> bool;
    /// True for the `propertyVisitors[].protocol` kinds (lower-cased) this mapper reads.
    fn handles_visitor(&self, kind: &str) -> bool;
    /// Reads `property` of `device` and returns the twin value text.
    fn read(
        &self,
        device: &DeviceBinding,
        property: &PropertyBinding,
    ) -> impl Future<Output = Result<String, ProtocolError>> + Send;
    /// Writes the twin value text `value` to `property` of `device`.
    fn write(
        &self,
        device: &DeviceBinding,
        property: &PropertyBinding,
        value: &str,
    ) -> impl Future<Output = Result<(), ProtocolError>> + Send;
    /// Drops whatever is cached for `device_id` (its binding changed or it left the profile).
    fn forget(&self, device_id: &str) -> impl Future<Output = ()> + Send;
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Time between poll cycles (v1.2's Modbus mapper: 2 s).
    pub poll_interval: Duration,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
        }
    }
}

struct Driver<P> {
    protocol: Arc<P>,
    mqtt: MqttClient,
    devices: BTreeMap<String, DeviceBinding>,
    reported: HashMap<(String, String), String>,
    state: HashMap<String, DeviceState>,
}

/// Runs the driver until `cancel`. `incoming` must carry the client's subscriptions to
/// [`crate::twin::DELTA_FILTER`] and [`crate::twin::GET_RESULT_FILTER`].
pub async fn run<P: DeviceProtocol>(
    protocol: Arc<P>,
    mqtt: MqttClient,
    mut incoming: mpsc::Receiver<Incoming>,
    mut profile: watch::Receiver<Arc<DeviceProfile>>,
    options: DriverOptions,
    cancel: CancellationToken,
) {
    let mut d = Driver {
        protocol,
        mqtt,
        devices: BTreeMap::new(),
        reported: HashMap::new(),
        state: HashMap::new(),
    };
    let current = profile.borrow_and_update().clone();
    d.apply_profile(&current).await;
    let mut tick = tokio::time::interval(options.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => d.poll_all().await,
            changed = profile.changed() => {
                if changed.is_err() { break }
                let p = profile.borrow_and_update().clone();
                d.apply_profile(&p).await;
                d.poll_all().await;
            }
            msg = incoming.recv() => match msg {
                Some(m) => d.on_message(m).await,
                None => break,
            },
        }
    }
}

impl<P: DeviceProtocol> Driver<P> {
    async fn apply_profile(&mut self, profile: &DeviceProfile) {
        let proto = self.protocol.clone();
        let new: BTreeMap<String, DeviceBinding> = profile
            .bindings(|k| proto.handles_protocol(k), |k| proto.handles_visitor(k))
            .into_iter()
            .map(|b| (b.id.clone(), b))
            .collect();
        let gone: Vec<String> = self
            .devices
            .iter()
            .filter(|(id, old)| new.get(*id) != Some(*old))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.protocol.forget(id).await;
            self.reported.retain(|(dev, _), _| dev != id);
            if !new.contains_key(id) {
                self.state.remove(id);
                tracing::info!(device = %id, "device left the profile");
            }
        }
        let fresh: Vec<String> = new
            .iter()
            .filter(|(id, b)| self.devices.get(*id) != Some(*b))
            .map(|(id, _)| id.clone())
            .collect();
        self.devices = new;
        for id in fresh {
            tracing::info!(device = %id, "driving device");
            let req = serde_json::json!({"event_id": "", "timestamp": now_ms()});
            self.publish(&twin_get_topic(&id), &req).await;
        }
    }

    async fn poll_all(&mut self) {
        let ids: Vec<String> = self.devices.keys().cloned().collect();
        for id in ids {
            self.poll_device(&id).await;
        }
    }

    async fn poll_device(&mut self, id: &str) {
        let Some(dev) = self.devices.get(id).cloned() else {
            return;
        };
        if dev.properties.is_empty() {
            return;
        }
        let mut reachable = false;
        for (name, prop) in &dev.properties {
            match self.protocol.read(&dev, prop).await {
                Ok(v) => {
                    reachable = true;
                    self.report(&dev, name, prop, v).await;
                }
                Err(e) => {
                    if e.kind != ProtocolErrorKind::Unreachable {
                        reachable = true;
                    }
                    tracing::debug!(device = %id, property = %name, "read failed: {e}");
                    if e.kind == ProtocolErrorKind::Unreachable {
                        // the rest of this device's reads would only time out as well
                        break;
                    }
                }
            }
        }
        let new = if reachable {
            DeviceState::Online
        } else {
            DeviceState::Offline
        };
        if self.state.get(id) != Some(&new) {
            tracing::info!(device = %id, state = new.as_str(), "device state");
            self.state.insert(id.to_owned(), new);
            if new == DeviceState::Offline {
                self.reported.retain(|(dev, _), _| dev != id);
            }
            let msg = state_update(new);
            self.publish(&state_update_topic(id), &msg).await;
        }
    }

    async fn report(&mut self, dev: &DeviceBinding, name: &str, prop: &PropertyBinding, v: String) {
        let key = (dev.id.clone(), name.to_owned());
        if self.reported.get(&key) == Some(&v) {
            return;
        }
        let msg = actual_update(name, &v, &prop.property.data_type);
        self.publish(&twin_update_topic(&dev.id), &msg).await;
        self.reported.insert(key, v);
    }

    async fn on_message(&mut self, m: Incoming) {
        let Some(id) = device_id_of(&m.topic).map(str::to_owned) else {
            return;
        };
        if !self.devices.contains_key(&id) {
            return;
        }
        let wanted: Vec<(String, String)> = if m.topic.ends_with("/twin/update/delta") {
            match serde_json::from_slice::<TwinDelta>(&m.payload) {
                Ok(d) => d.delta.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(topic = %m.topic, "bad delta payload: {e}");
                    return;
                }
            }
        } else if m.topic.ends_with("/twin/get/result") {
            match serde_json::from_slice::<TwinResult>(&m.payload) {
                Ok(r) if r.code.is_none() => r
                    .twin
                    .into_iter()
                    .filter_map(|(k, t)| {
                        let t = t?;
                        let exp = t.expected_value()?;
                        (t.actual_value() != Some(exp)).then(|| (k, exp.to_owned()))
                    })
                    .collect(),
                Ok(r) => {
                    tracing::info!(device = %id, code = ?r.code, reason = ?r.reason, "twin get refused");
                    return;
                }
                Err(e) => {
                    tracing::warn!(topic = %m.topic, "bad twin get result: {e}");
                    return;
                }
            }
        } else {
            return;
        };
        for (name, value) in wanted {
            self.write_desired(&id, &name, &value).await;
        }
    }

    async fn write_desired(&mut self, id: &str, name: &str, value: &str) {
        let Some(dev) = self.devices.get(id).cloned() else {
            return;
        };
        let Some(prop) = dev.properties.get(name) else {
            tracing::debug!(device = %id, property = %name, "desired value for a property without visitor");
            return;
        };
        if !prop.property.writable() {
            tracing::debug!(device = %id, property = %name, "desired value for a read-only property ignored");
            return;
        }
        match self.protocol.write(&dev, prop, value).await {
            Ok(()) => {
                tracing::info!(device = %id, property = %name, %value, "desired value written");
                if let Ok(v) = self.protocol.read(&dev, prop).await {
                    self.report(&dev, name, prop, v).await;
                }
            }
            Err(e) => tracing::warn!(device = %id, property = %name, %value, "write failed: {e}"),
        }
    }

    async fn publish<T: serde::Serialize>(&self, topic: &str, payload: &T) {
        if let Err(e) = self.mqtt.publish_json(topic, payload).await {
            tracing::warn!(%topic, "publish failed: {e}");
        }
    }
}
