//! Fuzzes the device twin's payload decoders and merge rules: the `ke_core::twin` JSON types
//! (re-exported as `devicetwin::types`) and a live `devicetwin::DeviceTwin` module on a real beehive
//! and SQLite store, fed what devices/mappers publish on MQTT (via the eventbus) and what the cloud
//! sends (membership, `cloud_updated`, attribute updates, acks).
//!
//! Input: up to 16 lines, each one message:
//! * `mqtt <topic> <payload>`: an MQTT publication, as the eventbus forwards it (only topics the
//!   eventbus subscribes to and routes to the twin, e.g. `$hw/events/device/<id>/twin/update`);
//! * `cloud <operation> <resource> <content>`: a cloud message (content: JSON, else a string);
//! * `link up` / `link down`: edgehub's connection events;
//! * `ack <n>`: the cloud's response to the n-th message the twin sent it in this input.
//!
//! Every input starts from the same two devices (the cloud's full list replaced, then re-added), so
//! a crash reproduces from its input alone. Checks, besides never panicking:
//! * every payload that decodes as one of the twin types re-encodes and decodes to the same value;
//! * the twin answers every message (no hang) and counts no panicked or failed message;
//! * everything it publishes on MQTT is JSON of the type its topic promises (what devices parse),
//!   and a delta lists exactly desired values that differ from the reported ones.
#![no_main]

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use devicetwin::types::{
    BaseMessage, DeviceAttrUpdate, DeviceStateMsg, ErrorResult, MembershipDetail, MembershipUpdate,
    StateUpdate, TwinDelta, TwinDocument, TwinUpdate,
};
use devicetwin::{DeviceTwin, DeviceTwinOptions, Health};
use ke_beehive::{Beehive, Core, Mailbox};
use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_mqtt::topic::{is_valid_topic, topic_matches};
use ke_store::Store;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::runtime::Runtime;

const NODE: &str = "edge-node-1";
const MAX_LINES: usize = 16;
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The devices every input starts from: a string twin with an attribute (the v1.2 transcript's
/// sensor) and int/float/boolean twins.
const BASELINE: &str = r#"{"event_id":"","timestamp":0,"added_devices":[
 {"id":"sensor-tag-01","name":"sensor-tag-01","description":"IntegrationTest","state":"unknown",
  "attributes":{"model":{"value":"CC2650","optional":true,"metadata":{"type":"string"}}},
  "twin":{"temperature":{"expected":{"value":"20","metadata":{"timestamp":1700000000}},"actual":{"value":"19","metadata":{"timestamp":1700000000}},
   "optional":true,"metadata":{"type":"string"},"expected_version":{"cloud":1,"edge":1},"actual_version":{"cloud":1,"edge":1}}}},
 {"id":"led-1","name":"led-1","state":"online",
  "twin":{"brightness":{"expected":{"value":"10"},"optional":false,"metadata":{"type":"int"},"expected_version":{"cloud":1,"edge":0}},
   "ratio":{"actual":{"value":"0.5"},"metadata":{"type":"float"},"actual_version":{"cloud":0,"edge":1}},
   "power":{"expected":{"value":"true"},"actual":{"value":"false"},"metadata":{"type":"boolean"},"expected_version":{"cloud":2,"edge":0},"actual_version":{"cloud":0,"edge":2}}}}
],"removed_devices":null}"#;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
});

/// The twin on its beehive; `bus` and `hub` stand for the eventbus and edgehub.
struct Env {
    hive: Beehive,
    _core: Core,
    bus: Mailbox,
    hub: Mailbox,
    health: Health,
    sentinel: u64,
}

static ENV: LazyLock<Mutex<Env>> = LazyLock::new(|| Mutex::new(RUNTIME.block_on(Env::start())));

/// A per-process SQLite directory on tmpfs when there is one (the store syncs every write).
fn db_dir() -> std::path::PathBuf {
    let base = std::path::Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    // Leftovers of earlier runs whose process is gone.
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("kubeedge-fuzz-twin-")
                && !std::path::Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("kubeedge-fuzz-twin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the database directory");
    dir
}

impl Env {
    async fn start() -> Self {
        let store = Store::open(db_dir().join("edgecore.db")).expect("open the store");
        let hive = Beehive::default();
        let bus = hive
            .register(module::EVENTBUS, group::BUS)
            .expect("register eventbus");
        let hub = hive
            .register(module::EDGEHUB, group::HUB)
            .expect("register edgehub");
        let mut core = Core::new(hive.clone());
        let twin = DeviceTwin::new(
            DeviceTwinOptions {
                node_name: NODE.into(),
                resend_interval: Duration::from_secs(3600),
                max_pending: 64,
                ..Default::default()
            },
            store,
        );
        let health = twin.health();
        core.register(twin).expect("register the twin");
        core.start();
        Self {
            hive,
            _core: core,
            bus,
            hub,
            health,
            sentinel: 0,
        }
    }

    async fn send(&self, m: Message) {
        self.hive
            .send_to_group(group::TWIN, m)
            .await
            .expect("the twin's mailbox takes the message");
    }

    fn mqtt(topic: &str, payload: &str) -> Message {
        Message::new(
            module::BUS,
            group::USER,
            op::RESPONSE,
            eventbus::topic_resource(topic),
            payload,
        )
    }

    fn cloud(operation: &str, resource: &str, content: Value) -> Message {
        Message::new(
            module::DEVICECONTROLLER,
            group::TWIN,
            operation,
            resource,
            content,
        )
    }

    fn link(up: bool) -> Message {
        let c = if up {
            res::CLOUD_CONNECTED
        } else {
            res::CLOUD_DISCONNECTED
        };
        Message::new(
            module::EDGEHUB_EVENTS,
            group::TWIN,
            op::PUBLISH,
            res::NODE_CONNECTION,
            c,
        )
    }

    /// Sends `m`, then a membership/get whose answer proves everything before it was handled.
    /// Returns the ids of the messages sent to the cloud meanwhile; checks every publication.
    async fn step(&mut self, m: Message) -> Vec<String> {
        self.send(m).await;
        self.sentinel += 1;
        let marker = format!("fuzz-sentinel-{}", self.sentinel);
        let get = format!(r#"{{"event_id":"{marker}","timestamp":0}}"#);
        self.send(Self::mqtt(
            &format!("$hw/events/node/{NODE}/membership/get"),
            &get,
        ))
        .await;
        let mut to_cloud = Vec::new();
        let done = tokio::time::timeout(ANSWER_TIMEOUT, async {
            loop {
                tokio::select! {
                    Some(m) = self.hub.recv() => to_cloud.push(m.id().to_owned()),
                    Some(m) = self.bus.recv() => {
                        if check_publication(&m, &marker) {
                            break;
                        }
                    }
                }
            }
        })
        .await;
        assert!(done.is_ok(), "the twin did not answer within {ANSWER_TIMEOUT:?}");
        while let Some(m) = self.hub.try_recv() {
            to_cloud.push(m.id().to_owned());
        }
        to_cloud
    }
}

/// Decodes `text` as `T`; if it decodes, it must re-encode and decode to the same value.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) -> Option<T> {
    let v: T = serde_json::from_str(text).ok()?;
    let again = serde_json::to_string(&v).expect("a decoded payload must encode");
    let back: T = serde_json::from_str(&again)
        .unwrap_or_else(|e| panic!("re-encoded payload does not decode ({e}): {again}"));
    assert_eq!(back, v, "payload does not round-trip: {text}");
    Some(v)
}

fn all_types(text: &str) {
    let _ = round_trip::<BaseMessage>(text);
    let _ = round_trip::<TwinUpdate>(text);
    let _ = round_trip::<StateUpdate>(text);
    let _ = round_trip::<MembershipUpdate>(text);
    let _ = round_trip::<MembershipDetail>(text);
    let _ = round_trip::<DeviceAttrUpdate>(text);
    let _ = round_trip::<TwinDocument>(text);
    let _ = round_trip::<TwinDelta>(text);
    let _ = round_trip::<ErrorResult>(text);
    let _ = round_trip::<DeviceStateMsg>(text);
}

/// Checks one publication of the twin; true when it is the answer carrying `marker`.
fn check_publication(m: &Message, marker: &str) -> bool {
    assert_eq!(m.operation(), op::PUBLISH, "{m}");
    let topic = m.resource();
    assert!(topic.starts_with("$hw/events/"), "published on {topic:?}");
    let text = m
        .content_str()
        .unwrap_or_else(|| panic!("non-string payload on {topic}"));
    let expect = |what: &str, ok: bool| assert!(ok, "payload on {topic} is not {what}: {text}");
    let decodes = |ok: bool| ok || serde_json::from_str::<ErrorResult>(text).is_ok_and(|e| e.code != 0);
    if topic.ends_with("/twin/update/document") {
        expect(
            "a TwinDocument",
            serde_json::from_str::<TwinDocument>(text).is_ok(),
        );
    } else if topic.ends_with("/twin/update/delta") {
        let d: TwinDelta =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("delta on {topic}: {e}: {text}"));
        assert!(!d.delta.is_empty(), "empty delta published: {text}");
        for (k, v) in &d.delta {
            let t = d
                .twin
                .get(k)
                .unwrap_or_else(|| panic!("delta key {k} not in twin: {text}"));
            assert_eq!(
                t.expected_value(),
                Some(v.as_str()),
                "delta {k} is not the desired value: {text}"
            );
            assert_ne!(
                t.actual_value(),
                Some(v.as_str()),
                "delta {k} equals the reported value: {text}"
            );
        }
    } else if topic.ends_with("/twin/update/result") || topic.ends_with("/twin/get/result") {
        expect(
            "a TwinUpdate or an error",
            decodes(serde_json::from_str::<TwinUpdate>(text).is_ok()),
        );
    } else if topic.ends_with("/state/update/result") {
        expect(
            "a DeviceStateMsg",
            serde_json::from_str::<DeviceStateMsg>(text).is_ok(),
        );
    } else if topic.ends_with("/membership/updated") {
        expect(
            "a MembershipUpdate",
            serde_json::from_str::<MembershipUpdate>(text).is_ok(),
        );
    } else if topic.ends_with("/membership/get/result") {
        let ok = serde_json::from_str::<MembershipDetail>(text);
        expect("a MembershipDetail or an error", decodes(ok.is_ok()));
        return ok.is_ok_and(|d| d.base.event_id == marker);
    } else if topic.ends_with("/updated") {
        expect(
            "a DeviceAttrUpdate",
            serde_json::from_str::<DeviceAttrUpdate>(text).is_ok(),
        );
    } else {
        panic!("publication on an unexpected topic {topic:?}: {text}");
    }
    false
}

/// Whether the eventbus would hand a publication on `topic` to the twin.
fn reaches_twin(topic: &str) -> bool {
    is_valid_topic(topic)
        && (topic.starts_with("$hw/events/device") || topic.starts_with("$hw/events/node"))
        && eventbus::SUBSCRIBED_TOPICS
            .iter()
            .any(|f| topic_matches(f, topic))
}

fn content(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut env = ENV.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    RUNTIME.block_on(async {
        // Same start for every input: offline, exactly the baseline devices.
        env.step(Env::link(false)).await;
        let empty = r#"{"event_id":"","timestamp":0,"devices":[]}"#;
        env.step(Env::cloud(op::GET, "membership/detail", content(empty)))
            .await;
        env.step(Env::cloud(op::UPDATE, "membership", content(BASELINE)))
            .await;

        let mut to_cloud: Vec<String> = Vec::new();
        for line in text.lines().take(MAX_LINES) {
            let mut words = line.splitn(2, ' ');
            let m = match (words.next(), words.next()) {
                (Some("mqtt"), Some(rest)) => {
                    let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                    all_types(payload);
                    if !reaches_twin(topic) {
                        continue;
                    }
                    Env::mqtt(topic, payload)
                }
                (Some("cloud"), Some(rest)) => {
                    let mut parts = rest.splitn(3, ' ');
                    let (Some(operation), Some(resource)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let body = parts.next().unwrap_or("");
                    all_types(body);
                    Env::cloud(operation, resource, content(body))
                }
                (Some("link"), Some(state)) => Env::link(state.trim() == "up"),
                (Some("ack"), Some(n)) if !to_cloud.is_empty() => {
                    let n = n.trim().parse::<usize>().unwrap_or(0) % to_cloud.len();
                    Env::cloud(op::RESPONSE, "", Value::String(res::ACK_OK.into()))
                        .with_parent(to_cloud[n].clone())
                }
                _ => {
                    all_types(line);
                    continue;
                }
            };
            to_cloud.extend(env.step(m).await);
        }
    });
    for (sub, h) in env.health.snapshot() {
        assert_eq!(h.panicked, 0, "twin sub-module {sub} panicked");
        assert_eq!(h.failed, 0, "twin sub-module {sub} failed to store a change");
    }
});
