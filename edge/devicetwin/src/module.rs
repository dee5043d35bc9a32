//! The module: options, health, the main loop and one handler per message kind.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use futures_util::FutureExt as _;
use ke_beehive::{Beehive, Module, ModuleContext};
use ke_core::Message;
use ke_core::message::{new_id, now_millis};
use ke_core::names::{group, module, op, res};
use ke_store::Store;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::db;
use crate::error::{Error, Result};
use crate::state::{self, Attr, Device};
use crate::types::{
    BaseMessage, DeviceAttrUpdate, DeviceStateMsg, ErrorResult, MembershipDetail, MembershipUpdate,
    MsgDevice, StateUpdate, TwinDelta, TwinDocument, TwinUpdate,
};

/// v1.2's reason for a twin update that is not JSON.
pub const REASON_UNMARSHAL: &str = "Unmarshal update request body failed, Please check the request";
/// v1.2's reason for a twin update without `twin`.
pub const REASON_NO_TWIN: &str = "Update twin error, the update request body not have key:twin";
/// v1.2's reason for a bad twin key.
pub const REASON_BAD_KEY: &str = "The key of twin must only include upper or lowercase letters, number, english, and special letter - _ . , : / @ # and the length of key should be less than 128 bytes";
/// v1.2's reason for a bad twin value.
pub const REASON_BAD_VALUE: &str = "The value of twin must only include upper or lowercase letters, number, english, and special letter - _ . , : / @ # and the length of value should be less than 512 bytes";
/// v1.2's reason for an update of an unknown device.
pub const REASON_NO_DEVICE: &str = "Update rejected due to the device is not existed";

/// Sub-modules of v1.2's twin, kept as names for [`Health`].
pub const SUBMODULES: [&str; 4] = ["membership", "twin", "device", "communication"];

/// How the twin is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTwinOptions {
    /// `modules.devicetwin.enable`.
    pub enabled: bool,
    /// This node (`modules.edged.hostnameOverride`): the `<node>` of membership topics and of the
    /// `membership/detail` request.
    pub node_name: String,
    /// How often unconfirmed messages to the cloud are sent again while connected (v1.2: 60 s).
    pub resend_interval: Duration,
    /// Most unconfirmed cloud messages kept; beyond it the oldest is dropped (with a warning).
    pub max_pending: usize,
    /// Module that carries messages to the cloud (`websocket`).
    pub cloud_module: String,
    /// Module that publishes on MQTT (`eventbus`).
    pub eventbus_module: String,
}

impl Default for DeviceTwinOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            node_name: String::new(),
            resend_interval: Duration::from_secs(60),
            max_pending: 1024,
            cloud_module: module::EDGEHUB.to_owned(),
            eventbus_module: module::EVENTBUS.to_owned(),
        }
    }
}

/// Counters of one sub-module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubHealth {
    /// Messages handled.
    pub handled: u64,
    /// Messages whose change could not be stored.
    pub failed: u64,
    /// Messages whose handling panicked (the twin reloaded its state from SQLite and went on).
    pub panicked: u64,
}

/// Health of the twin's sub-modules, readable while it runs. v1.2 ran four goroutines with
/// heartbeats and restarted the silent ones; here one task owns the state, so "alive" is the
/// module itself and the interesting signal is what failed.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<&'static str, SubHealth>>>);

impl Health {
    /// Counters by sub-module (see [`SUBMODULES`]).
    pub fn snapshot(&self) -> BTreeMap<&'static str, SubHealth> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for s in SUBMODULES {
            m.entry(s).or_default();
        }
        m
    }

    /// True when no store write failed and no handler panicked.
    pub fn is_healthy(&self) -> bool {
        self.snapshot().values().all(|s| s.failed == 0 && s.panicked == 0)
    }

    fn with(&self, sub: &'static str, f: impl FnOnce(&mut SubHealth)) {
        f(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(sub)
            .or_default());
    }
}

/// The device twin beehive module (name `twin`, group `twin`).
#[derive(Debug)]
pub struct DeviceTwin {
    opts: DeviceTwinOptions,
    store: Store,
    health: Health,
}

impl DeviceTwin {
    /// A twin keeping its devices in `store` (the handle metaManager uses too: one writer).
    pub fn new(opts: DeviceTwinOptions, store: Store) -> Self {
        Self {
            opts,
            store,
            health: Health::default(),
        }
    }

    /// The health handle (clone it before registering the module).
    pub fn health(&self) -> Health {
        self.health.clone()
    }
}

impl Module for DeviceTwin {
    fn name(&self) -> &str {
        module::TWIN
    }

    fn group(&self) -> &str {
        group::TWIN
    }

    fn enabled(&self) -> bool {
        self.opts.enabled
    }

    async fn run(self: Box<Self>, ctx: ModuleContext) {
        let ModuleContext {
            beehive,
            mut mailbox,
            cancel,
            ..
        } = ctx;
        let mut w = Worker {
            opts: self.opts,
            store: self.store,
            hive: beehive,
            health: self.health,
            devices: BTreeMap::new(),
            connected: false,
            pending: VecDeque::new(),
        };
        if let Err(e) = w.reload().await {
            tracing::error!(error = %e, "cannot load devices; starting with none");
        }
        let every = w.opts.resend_interval.max(Duration::from_millis(10));
        let mut resend = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let m = tokio::select! {
                _ = resend.tick() => { w.resend().await; continue; }
                m = mailbox.recv_until(&cancel) => match m { Some(m) => m, None => break },
            };
            let sub = classify(&m);
            let outcome = AssertUnwindSafe(w.handle(m)).catch_unwind().await;
            match outcome {
                Ok(Ok(())) => w.health.with(sub, |h| h.handled += 1),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, submodule = sub, "twin change not stored");
                    w.health.with(sub, |h| h.failed += 1);
                }
                Err(_) => {
                    tracing::error!(
                        submodule = sub,
                        "twin handler panicked; reloading devices from SQLite"
                    );
                    w.health.with(sub, |h| h.panicked += 1);
                    if let Err(e) = w.reload().await {
                        tracing::error!(error = %e, "cannot reload devices");
                    }
                }
            }
        }
    }
}

/// The v1.2 sub-module a message belongs to.
fn classify(m: &Message) -> &'static str {
    if m.resource() == res::NODE_CONNECTION || !m.parent_id().is_empty() {
        return "communication";
    }
    if m.source() == module::BUS {
        let topic = topic_of(m.resource()).unwrap_or_default();
        return if topic.starts_with("$hw/events/node/") {
            "membership"
        } else if topic.ends_with("/state/update") {
            "device"
        } else {
            "twin"
        };
    }
    if m.resource().contains("membership") {
        "membership"
    } else if m.operation() == op::UPDATED {
        "device"
    } else {
        "twin"
    }
}

/// The MQTT topic of an eventbus message (URL-safe base64 of the topic; a plain topic is
/// accepted too).
fn topic_of(resource: &str) -> Option<String> {
    if resource.starts_with("$hw/") {
        return Some(resource.to_owned());
    }
    URL_SAFE
        .decode(resource)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

fn parse<T: DeserializeOwned>(content: &Value) -> serde_json::Result<T> {
    match content {
        Value::String(s) => serde_json::from_str(s),
        other => T::deserialize(other),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC; v1.2 used the local zone, which is UTC on edge images).
fn timestamp_text() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn base(event_id: impl Into<String>, timestamp: i64) -> BaseMessage {
    BaseMessage {
        event_id: event_id.into(),
        timestamp,
    }
}

fn device_topic(id: &str, suffix: &str) -> String {
    format!("$hw/events/device/{id}/{suffix}")
}

struct Worker {
    opts: DeviceTwinOptions,
    store: Store,
    hive: Beehive,
    health: Health,
    devices: BTreeMap<String, Device>,
    connected: bool,
    /// Messages sent (or to be sent) to the cloud and not confirmed yet, oldest first.
    pending: VecDeque<Message>,
}

impl Worker {
    async fn reload(&mut self) -> Result<()> {
        let devices = self
            .store
            .call(db::load_all)
            .await?
            .map_err(|source| Error::Sqlite {
                op: "load devices",
                source,
            })?;
        tracing::info!(devices = devices.len(), "device twin loaded");
        self.devices = devices;
        Ok(())
    }

    /// Writes `put` and deletes `remove` in one transaction.
    async fn persist(&self, put: Vec<Device>, remove: Vec<String>) -> Result<()> {
        self.store
            .call(move |c| {
                let refs: Vec<&Device> = put.iter().collect();
                db::save(c, &refs, &remove)
            })
            .await?
            .map_err(|source| Error::Sqlite {
                op: "save devices",
                source,
            })
    }

    async fn publish(&self, topic: &str, payload: &impl Serialize) {
        let text = match serde_json::to_string(payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(%topic, error = %e, "cannot encode payload");
                return;
            }
        };
        let m = Message::new(module::TWIN, group::USER, op::PUBLISH, topic, text);
        if let Err(e) = self.hive.send(&self.opts.eventbus_module, m).await {
            tracing::debug!(%topic, error = %e, "not published");
        }
    }

    async fn publish_error(&self, topic: &str, event_id: &str, code: i32, reason: &str) {
        let r = ErrorResult {
            base: base(event_id, now_millis()),
            code,
            reason: reason.to_owned(),
        };
        self.publish(topic, &r).await;
    }

    /// Queues a message for the cloud and sends it now if the link is up.
    async fn queue_for_cloud(&mut self, operation: &str, resource: String, content: Value) {
        let m = Message::new(module::TWIN, group::RESOURCE, operation, resource, content);
        if self.pending.len() >= self.opts.max_pending.max(1)
            && let Some(old) = self.pending.pop_front()
        {
            tracing::warn!(dropped = %old, "too many unconfirmed cloud messages: oldest dropped");
        }
        self.pending.push_back(m.clone());
        if self.connected {
            self.send_cloud(m).await;
        }
    }

    async fn send_cloud(&self, m: Message) {
        if let Err(e) = self.hive.send(&self.opts.cloud_module, m).await {
            tracing::debug!(error = %e, "not sent to the cloud (kept for resend)");
        }
    }

    async fn resend(&self) {
        if !self.connected {
            return;
        }
        for m in self.pending.clone() {
            self.send_cloud(m).await;
        }
    }

    async fn handle(&mut self, m: Message) -> Result<()> {
        // Communication: a cloud message answering one of ours confirms it.
        if !m.parent_id().is_empty() {
            let before = self.pending.len();
            self.pending.retain(|p| p.id() != m.parent_id());
            if self.pending.len() != before {
                return Ok(());
            }
        }
        if m.resource() == res::NODE_CONNECTION {
            return self.connection(&m).await;
        }
        if m.source() == module::BUS {
            return self.mqtt(&m).await;
        }
        self.cloud(&m).await
    }

    async fn connection(&mut self, m: &Message) -> Result<()> {
        match m.content_str() {
            Some(res::CLOUD_CONNECTED) => {
                self.connected = true;
                // As v1.2: ask for the full device list on every (re)connection. Not kept for
                // resend: the next connection asks again.
                let ask = serde_json::json!({
                    "event_type": "group_membership_event",
                    "event_id": "123",
                    "group_id": self.opts.node_name,
                    "operation": "detail",
                    "timestamp": now_millis(),
                })
                .to_string();
                let req = Message::new(module::TWIN, group::RESOURCE, op::GET, "membership/detail", ask);
                self.send_cloud(req).await;
                // What was changed while offline reaches the cloud now.
                self.resend().await;
            }
            Some(res::CLOUD_DISCONNECTED) => self.connected = false,
            other => tracing::debug!(?other, "unknown connection event"),
        }
        Ok(())
    }

    async fn mqtt(&mut self, m: &Message) -> Result<()> {
        let Some(topic) = topic_of(m.resource()) else {
            tracing::debug!(resource = m.resource(), "not an MQTT topic; dropped");
            return Ok(());
        };
        let payload = m.content_json_text();
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() < 5 || parts[0] != "$hw" || parts[1] != "events" {
            tracing::debug!(%topic, "not a twin topic; dropped");
            return Ok(());
        }
        let id = parts[3];
        let rest = parts[4..].join("/");
        match (parts[2], rest.as_str()) {
            ("device", "twin/update") => self.twin_update(id, &payload).await,
            ("device", "twin/get") => {
                self.twin_get(id, &payload).await;
                Ok(())
            }
            ("device", "twin/cloud_updated") => self.cloud_sync(id, &Value::String(payload)).await,
            ("device", "state/update") => self.state_update(id, &payload).await,
            ("node", "membership/get") => {
                self.membership_get(&payload).await;
                Ok(())
            }
            _ => {
                tracing::debug!(%topic, "no twin action for this topic; dropped");
                Ok(())
            }
        }
    }

    async fn cloud(&mut self, m: &Message) -> Result<()> {
        // Resources arrive without `node/<node>/`; accept them with it too.
        let r = m.resource();
        let r = match r.strip_prefix("node/") {
            Some(rest) => rest.split_once('/').map_or(r, |(_, tail)| tail),
            None => r,
        };
        if r == "membership" {
            return match parse::<MembershipUpdate>(&m.content) {
                Ok(u) => self.membership(u).await,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed membership update dropped");
                    Ok(())
                }
            };
        }
        if r.contains("membership/detail") {
            return match parse::<MembershipDetail>(&m.content) {
                Ok(d) => self.membership_detail(d).await,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed membership detail dropped");
                    Ok(())
                }
            };
        }
        let parts: Vec<&str> = r.split('/').collect();
        match parts.as_slice() {
            ["device", id, "twin", "cloud_updated"] => self.cloud_sync(id, &m.content).await,
            ["device", id] if m.operation() == op::UPDATED => self.attrs_update(id, &m.content).await,
            _ => {
                tracing::debug!(message = %m, "not a twin message; dropped");
                Ok(())
            }
        }
    }

    // ---- twin ----

    async fn twin_update(&mut self, id: &str, payload: &str) -> Result<()> {
        let result_topic = device_topic(id, "twin/update/result");
        // v1.2 publishes request errors on the topic of an empty device id with an empty
        // event id; devices listening on their own topic never saw them. Both are published.
        let req = match serde_json::from_str::<TwinUpdate>(payload) {
            Ok(r) => r,
            Err(_) => {
                self.request_error(&result_topic, "", REASON_UNMARSHAL).await;
                return Ok(());
            }
        };
        let event_id = req.base.event_id.clone();
        let Some(twins) = req.twin else {
            self.request_error(&result_topic, &event_id, REASON_NO_TWIN).await;
            return Ok(());
        };
        for (k, t) in &twins {
            if !state::valid_key(k) {
                self.request_error(&result_topic, &event_id, REASON_BAD_KEY).await;
                return Ok(());
            }
            let values = t.iter().flat_map(|t| [&t.expected, &t.actual]).flatten();
            if values
                .filter_map(|v| v.value.as_deref())
                .any(|v| !state::valid_value(v))
            {
                self.request_error(&result_topic, &event_id, REASON_BAD_VALUE)
                    .await;
                return Ok(());
            }
        }
        let Some(mut dev) = self.devices.get(id).cloned() else {
            self.publish_error(&result_topic, &event_id, 404, REASON_NO_DEVICE)
                .await;
            return Ok(());
        };
        let now = now_millis();
        let out = match state::apply_local(&mut dev, &twins, now) {
            Ok(o) => o,
            Err(state::Invalid(reason)) => {
                self.publish_error(&result_topic, &event_id, 400, &reason).await;
                return Ok(());
            }
        };
        if !out.result.is_empty() {
            if let Err(e) = self.persist(vec![dev.clone()], vec![]).await {
                self.publish_error(&result_topic, &event_id, 500, &e.to_string())
                    .await;
                return Err(e);
            }
            self.devices.insert(id.to_owned(), dev);
        }
        let result = TwinUpdate {
            base: base(&event_id, now),
            twin: Some(out.result),
        };
        self.publish(&result_topic, &result).await;
        self.after_change(id, &event_id, now, out.document).await;
        if !out.cloud.is_empty() {
            let up = TwinUpdate {
                base: base(new_id(), now_millis()),
                twin: Some(out.cloud),
            };
            self.edge_updated(id, &up).await;
        }
        Ok(())
    }

    async fn request_error(&self, result_topic: &str, event_id: &str, reason: &str) {
        self.publish_error("$hw/events/device//twin/update/result", "", 400, reason)
            .await;
        self.publish_error(result_topic, event_id, 400, reason).await;
    }

    /// Publishes the document (if anything changed) and the delta (if any desired value differs).
    async fn after_change(
        &self,
        id: &str,
        event_id: &str,
        now: i64,
        document: BTreeMap<String, crate::types::TwinDoc>,
    ) {
        if !document.is_empty() {
            let doc = TwinDocument {
                base: base(event_id, now),
                twin: document,
            };
            self.publish(&device_topic(id, "twin/update/document"), &doc)
                .await;
        }
        if let Some((twin, delta)) = self.devices.get(id).and_then(Device::delta) {
            let d = TwinDelta {
                base: base(new_id(), now_millis()),
                twin,
                delta,
            };
            self.publish(&device_topic(id, "twin/update/delta"), &d).await;
        }
    }

    async fn edge_updated(&mut self, id: &str, up: &TwinUpdate) {
        match serde_json::to_value(up) {
            Ok(v) => {
                self.queue_for_cloud(op::UPDATE, format!("device/{id}/twin/edge_updated"), v)
                    .await;
            }
            Err(e) => tracing::error!(error = %e, "cannot encode edge_updated"),
        }
    }

    async fn twin_get(&self, id: &str, payload: &str) {
        let topic = device_topic(id, "twin/get/result");
        let Ok(req) = serde_json::from_str::<BaseMessage>(payload) else {
            self.publish_error(
                &topic,
                "",
                400,
                "Unmarshal get request body failed, Please check the request",
            )
            .await;
            return;
        };
        let Some(dev) = self.devices.get(id) else {
            let reason = format!("Device {id} not found while getting twin");
            self.publish_error(&topic, &req.event_id, 404, &reason).await;
            return;
        };
        let r = TwinUpdate {
            base: base(req.event_id, now_millis()),
            twin: Some(dev.twin_msgs()),
        };
        self.publish(&topic, &r).await;
    }

    async fn cloud_sync(&mut self, id: &str, content: &Value) -> Result<()> {
        let up = match parse::<TwinUpdate>(content) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(device = id, error = %e, "malformed cloud_updated dropped");
                return Ok(());
            }
        };
        let (Some(twins), Some(mut dev)) = (up.twin, self.devices.get(id).cloned()) else {
            tracing::warn!(
                device = id,
                "cloud_updated for an unknown device or without twin; dropped"
            );
            return Ok(());
        };
        let now = now_millis();
        let out = state::apply_cloud(&mut dev, &twins, now, true);
        if out.dirty {
            self.persist(vec![dev.clone()], vec![]).await?;
            self.devices.insert(id.to_owned(), dev);
        }
        self.after_change(id, &up.base.event_id, now, out.document).await;
        self.report_rejected(id, &out.rejected).await;
        Ok(())
    }

    /// Sends the edge's state of refused twins back to the cloud.
    async fn report_rejected(&mut self, id: &str, rejected: &[String]) {
        let Some(dev) = self.devices.get(id) else { return };
        let twin: BTreeMap<_, _> = rejected
            .iter()
            .filter_map(|k| dev.twins.get(k).map(|t| (k.clone(), Some(t.msg_with_versions()))))
            .collect();
        if twin.is_empty() {
            return;
        }
        let up = TwinUpdate {
            base: base(new_id(), now_millis()),
            twin: Some(twin),
        };
        self.edge_updated(id, &up).await;
    }

    // ---- device ----

    async fn state_update(&mut self, id: &str, payload: &str) -> Result<()> {
        let Ok(req) = serde_json::from_str::<StateUpdate>(payload) else {
            tracing::debug!(device = id, "malformed state update ignored (as v1.2)");
            return Ok(());
        };
        if !matches!(req.state.as_str(), "online" | "offline" | "unknown") {
            tracing::debug!(device = id, state = %req.state, "unknown state ignored (as v1.2)");
            return Ok(());
        }
        let Some(mut dev) = self.devices.get(id).cloned() else {
            tracing::debug!(
                device = id,
                "state update for an unknown device ignored (as v1.2)"
            );
            return Ok(());
        };
        dev.state = req.state;
        dev.last_online = timestamp_text();
        self.persist(vec![dev.clone()], vec![]).await?;
        let msg = DeviceStateMsg {
            base: base(new_id(), now_millis()),
            device: MsgDevice {
                name: dev.name.clone(),
                state: dev.state.clone(),
                last_online: dev.last_online.clone(),
                ..MsgDevice::default()
            },
        };
        self.devices.insert(id.to_owned(), dev);
        self.publish(&device_topic(id, "state/update/result"), &msg).await;
        let text = serde_json::to_string(&msg).unwrap_or_default();
        self.queue_for_cloud(op::UPDATE, format!("device/{id}/state"), Value::String(text))
            .await;
        Ok(())
    }

    async fn attrs_update(&mut self, id: &str, content: &Value) -> Result<()> {
        let up = match parse::<DeviceAttrUpdate>(content) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(device = id, error = %e, "malformed device update dropped");
                return Ok(());
            }
        };
        let Some(mut dev) = self.devices.get(id).cloned() else {
            tracing::warn!(device = id, "attribute update for an unknown device dropped");
            return Ok(());
        };
        for (k, a) in &up.attributes {
            match a {
                Some(a) => dev.attrs.insert(k.clone(), Attr::from_msg(a)),
                None => dev.attrs.remove(k),
            };
        }
        self.persist(vec![dev.clone()], vec![]).await?;
        self.devices.insert(id.to_owned(), dev);
        let out = DeviceAttrUpdate {
            base: base(up.base.event_id, now_millis()),
            attributes: up.attributes,
        };
        self.publish(&device_topic(id, "updated"), &out).await;
        Ok(())
    }

    // ---- membership ----

    async fn membership_get(&self, payload: &str) {
        let topic = format!("$hw/events/node/{}/membership/get/result", self.opts.node_name);
        let Ok(req) = serde_json::from_str::<BaseMessage>(payload) else {
            self.publish_error(
                &topic,
                "",
                400,
                "Unmarshal membership get request body failed, Please check the request",
            )
            .await;
            return;
        };
        let r = MembershipDetail {
            base: base(req.event_id, now_millis()),
            devices: self.devices.values().map(Device::msg_without_twins).collect(),
        };
        self.publish(&topic, &r).await;
    }

    async fn membership(&mut self, u: MembershipUpdate) -> Result<()> {
        let now = now_millis();
        let mut put: Vec<Device> = Vec::new();
        let mut adds = Vec::new();
        let mut updates = Vec::new();
        for d in u.added_devices.iter().flatten().filter(|d| !d.id.is_empty()) {
            if let Some(old) = self.devices.get(&d.id) {
                // A re-sent add (every devicecontroller start): update in place.
                let mut dev = old.clone();
                if !d.name.is_empty() {
                    dev.name.clone_from(&d.name);
                }
                if !d.description.is_empty() {
                    dev.description.clone_from(&d.description);
                }
                let mut attrs_changed = BTreeMap::new();
                for (k, a) in &d.attributes {
                    if let Some(a) = a {
                        let new = Attr::from_msg(a);
                        if dev.attrs.get(k) != Some(&new) {
                            dev.attrs.insert(k.clone(), new);
                            attrs_changed.insert(k.clone(), Some(a.clone()));
                        }
                    }
                }
                let out = state::apply_cloud(&mut dev, &d.twin, now, true);
                put.push(dev);
                updates.push((d.id.clone(), attrs_changed, out));
            } else {
                let (dev, out) = state::device_from_msg(d, now);
                put.push(dev);
                adds.push((d.clone(), out));
            }
        }
        let removed: Vec<MsgDevice> = u
            .removed_devices
            .iter()
            .flatten()
            .filter(|d| self.devices.contains_key(&d.id))
            .cloned()
            .collect();
        let remove: Vec<String> = removed.iter().map(|d| d.id.clone()).collect();
        if put.is_empty() && remove.is_empty() {
            return Ok(());
        }
        // One transaction for the whole message.
        self.persist(put.clone(), remove.clone()).await?;
        for d in put {
            self.devices.insert(d.id.clone(), d);
        }
        for id in &remove {
            self.devices.remove(id);
        }
        for (d, out) in adds {
            self.after_change(&d.id, "", now, out.document).await;
            let attributes: BTreeMap<_, _> = d
                .attributes
                .iter()
                .filter(|(_, a)| a.is_some())
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect();
            if !attributes.is_empty() {
                let a = DeviceAttrUpdate {
                    base: base("", now_millis()),
                    attributes,
                };
                self.publish(&device_topic(&d.id, "updated"), &a).await;
            }
            let m = MembershipUpdate {
                base: base(new_id(), now_millis()),
                added_devices: Some(vec![state::public_device(&d)]),
                removed_devices: None,
            };
            self.publish(&self.membership_topic(), &m).await;
            self.report_rejected(&d.id, &out.rejected).await;
        }
        for (id, attrs, out) in updates {
            self.after_change(&id, "", now, out.document).await;
            if !attrs.is_empty() {
                let a = DeviceAttrUpdate {
                    base: base("", now_millis()),
                    attributes: attrs,
                };
                self.publish(&device_topic(&id, "updated"), &a).await;
            }
            self.report_rejected(&id, &out.rejected).await;
        }
        for d in removed {
            let m = MembershipUpdate {
                base: base(new_id(), now_millis()),
                added_devices: None,
                removed_devices: Some(vec![state::public_device(&d)]),
            };
            self.publish(&self.membership_topic(), &m).await;
        }
        Ok(())
    }

    /// The cloud's full device list: devices not listed are removed (v1.2 never got one).
    async fn membership_detail(&mut self, d: MembershipDetail) -> Result<()> {
        let listed: std::collections::BTreeSet<&str> = d.devices.iter().map(|d| d.id.as_str()).collect();
        let removed: Vec<MsgDevice> = self
            .devices
            .values()
            .filter(|dev| !listed.contains(dev.id.as_str()))
            .map(|dev| MsgDevice {
                id: dev.id.clone(),
                name: dev.name.clone(),
                ..MsgDevice::default()
            })
            .collect();
        self.membership(MembershipUpdate {
            base: d.base.clone(),
            added_devices: Some(d.devices),
            removed_devices: Some(removed),
        })
        .await
    }

    fn membership_topic(&self) -> String {
        format!("$hw/events/node/{}/membership/updated", self.opts.node_name)
    }
}
