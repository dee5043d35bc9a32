//! Black-box test of `mapper-bluetooth` with the simulated GATT peripheral (no radio here) and the
//! embedded MQTT broker in-process as the edge: immediate actions, configured and runtime
//! schedules with occurrence limits, runtime actions, and the watcher converging actual to expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ke_mqtt::{Broker, BrokerHandle, BrokerOptions, QoS};
use ke_testkit::{Daemon, eventually};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const DEV: &str = "sensor-tag-instance-01";
const TEMP: &str = "f000aa0104514000b000000000000000";
const ENABLE: &str = "f000aa0204514000b000000000000000";
const IO_CFG: &str = "f000aa6604514000b000000000000000";
const IO_DATA: &str = "f000aa6504514000b000000000000000";

/// The edge: broker + everything seen + a tiny twin that answers `twin/get` and applies `twin/update`.
struct Edge {
    handle: BrokerHandle,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    expected: Arc<Mutex<BTreeMap<String, String>>>,
    cancel: CancellationToken,
}

impl Edge {
    async fn start() -> (Self, String) {
        let broker = Broker::bind("127.0.0.1:0", BrokerOptions::default())
            .await
            .unwrap();
        let url = format!("tcp://{}", broker.local_addr());
        let handle = broker.handle();
        let cancel = CancellationToken::new();
        broker.spawn(cancel.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let expected: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let actual: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        for filter in ["$ke/device/#", "$hw/events/device/#"] {
            let mut rx = handle.subscribe(filter).unwrap();
            let (seen, expected, actual, h) =
                (seen.clone(), expected.clone(), actual.clone(), handle.clone());
            tokio::spawn(async move {
                while let Some((topic, payload)) = rx.recv().await {
                    let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                    if topic == format!("$hw/events/device/{DEV}/twin/update") {
                        for (k, t) in v["twin"].as_object().unwrap() {
                            if let Some(a) = t["actual"]["value"].as_str() {
                                actual.lock().unwrap().insert(k.clone(), a.to_owned());
                            }
                        }
                    }
                    if topic == format!("$hw/events/device/{DEV}/twin/get") {
                        let mut twin = serde_json::Map::new();
                        for (k, e) in expected.lock().unwrap().iter() {
                            let mut t = json!({"expected": {"value": e}, "optional": false, "metadata": {"type": "string"}});
                            if let Some(a) = actual.lock().unwrap().get(k) {
                                t["actual"] = json!({"value": a});
                            }
                            twin.insert(k.clone(), t);
                        }
                        let reply = json!({"event_id": "", "timestamp": 1, "twin": twin});
                        let _ = h.publish(
                            &format!("{topic}/result"),
                            serde_json::to_vec(&reply).unwrap(),
                            QoS::AtMostOnce,
                            false,
                        );
                    }
                    seen.lock().unwrap().push((topic, v));
                }
            });
        }
        (
            Self {
                handle,
                seen,
                expected,
                cancel,
            },
            url,
        )
    }

    fn on(&self, topic_suffix: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t.ends_with(topic_suffix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn runtime(&self, what: &str, body: &Value) {
        let topic = format!("$ke/device/bluetooth-mapper/{DEV}/{what}");
        self.handle
            .publish(&topic, serde_json::to_vec(body).unwrap(), QoS::AtMostOnce, false)
            .unwrap();
    }

    fn results(&self, event: &str) -> Vec<Value> {
        self.on(&format!("{DEV}/scheduler/result"))
            .into_iter()
            .filter(|r| r["EventName"] == event)
            .collect()
    }

    fn actual_reported(&self, prop: &str, value: &str) -> bool {
        self.on(&format!("{DEV}/twin/update"))
            .iter()
            .any(|m| m["twin"][prop]["actual"]["value"] == value)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn sim_state(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn char_value(path: &Path, uuid: &str) -> Option<Value> {
    sim_state(path).map(|s| s["characteristics"][uuid].clone())
}

fn written(path: &Path, uuid: &str, bytes: &[u8]) -> bool {
    sim_state(path).is_some_and(|s| {
        s["writes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w[0] == uuid && w[1] == json!(bytes))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_mapper_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (edge, url) = Edge::start().await;
    edge.expected
        .lock()
        .unwrap()
        .insert("io-data".into(), "Red".into());
    std::fs::copy(fixtures.join("cc2650-profile.json"), d.join("deviceProfile.json")).unwrap();
    std::fs::write(
        d.join("config.yaml"),
        format!(
            r"mqtt:
  mode: 0
  server: tcp://127.0.0.1:1
  internal-server: {url}
device-model-name: cc2650-sensortag
action-manager:
  actions:
    - name: IRTemperatureConfiguration
      perform-immediately: true
      device-property-name: temperature-enable
    - name: IRTemperatureData
      perform-immediately: false
      device-property-name: temperature
    - name: IOConfiguration
      perform-immediately: false
      device-property-name: io-config
    - name: IOData
      perform-immediately: false
      device-property-name: io-data
scheduler:
  schedules:
    - name: temperature
      interval: 50
      occurrence-limit: 3
      actions: [IRTemperatureData]
watcher:
  device-twin-attributes:
    - device-property-name: io-data
      actions: [IOConfiguration, IOData]
"
        ),
    )
    .unwrap();
    let state = d.join("peripheral-state.json");
    let mut mapper = Daemon::start(
        "mapper-bluetooth",
        Path::new(env!("CARGO_BIN_EXE_mapper-bluetooth")),
        &[
            "--config",
            d.join("config.yaml").to_str().unwrap(),
            "--profile",
            d.join("deviceProfile.json").to_str().unwrap(),
            "--simulate",
            fixtures.join("sensortag.json").to_str().unwrap(),
            "--simulate-state",
            state.to_str().unwrap(),
            "--watch-interval-ms",
            "100",
        ],
        d,
    );

    // perform-immediately: temperature-enable's default "ON" -> dataWrite ON = [1]
    eventually(WAIT, "temperature enabled", || async {
        (char_value(&state, ENABLE)? == json!([1])).then_some(())
    })
    .await;

    // the configured schedule: IRTemperatureData read + converted, 3 rounds
    eventually(WAIT, "3 temperature results", || async {
        (edge.results("IRTemperatureData").len() >= 3).then_some(())
    })
    .await;
    assert!(
        edge.results("IRTemperatureData")
            .iter()
            .all(|r| r["EventResult"] == "36.406250" && r["TimeStamp"].as_i64().unwrap() > 0)
    );
    // the read-only temperature characteristic is never written
    assert!(
        sim_state(&state).unwrap()["writes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w[0] != TEMP)
    );

    // the watcher converges io-data to "Red": IOConfiguration writes its default (1), IOData writes dataWrite[Red] = [1]
    eventually(WAIT, "io-data actual Red", || async {
        edge.actual_reported("io-data", "Red").then_some(())
    })
    .await;
    assert!(written(&state, IO_CFG, &[1]));
    assert!(written(&state, IO_DATA, &[1]));
    // a new expected value converges too
    edge.expected
        .lock()
        .unwrap()
        .insert("io-data".into(), "Buzzer".into());
    eventually(WAIT, "io-data actual Buzzer", || async {
        edge.actual_reported("io-data", "Buzzer").then_some(())
    })
    .await;
    assert_eq!(char_value(&state, IO_DATA).unwrap(), json!([4]));

    // runtime action (base64 value), performed immediately, then a runtime schedule with a limit
    edge.runtime(
        "action-manager/create",
        &json!([{"name": "Beep", "perform-immediately": true, "operation": {"action": "Write", "characteristic-uuid": IO_DATA, "value": "Aw=="}}]),
    );
    eventually(WAIT, "Beep written", || async {
        written(&state, IO_DATA, &[3]).then_some(())
    })
    .await;
    edge.runtime(
        "scheduler/create",
        &json!([{"name": "fast", "interval": 20, "occurrence-limit": 2, "actions": ["Beep"]}]),
    );
    eventually(WAIT, "2 Beep results", || async {
        (edge.results("Beep").len() >= 2).then_some(())
    })
    .await;
    assert!(edge.results("Beep").iter().all(|r| r["EventResult"] == "Aw=="));

    // watcher/create replaces what is watched: temperature-enable -> OFF via dataWrite[OFF] = [0]
    edge.expected
        .lock()
        .unwrap()
        .insert("temperature-enable".into(), "OFF".into());
    edge.runtime(
        "watcher/create",
        &json!({"device-twin-attributes": [{"device-property-name": "temperature-enable", "actions": ["IRTemperatureConfiguration"]}]}),
    );
    eventually(WAIT, "temperature-enable actual OFF", || async {
        edge.actual_reported("temperature-enable", "OFF").then_some(())
    })
    .await;
    assert_eq!(char_value(&state, ENABLE).unwrap(), json!([0]));

    // action-manager/delete: a schedule using the deleted action reports only the action that exists
    edge.runtime("action-manager/delete", &json!([{"name": "Beep"}]));
    edge.runtime("scheduler/create", &json!([{"name": "after", "interval": 20, "occurrence-limit": 1, "actions": ["Beep", "IRTemperatureData"]}]));
    // the configured schedule is limited to exactly 3, so a 4th temperature result is "after"'s
    eventually(WAIT, "4th temperature result", || async {
        (edge.results("IRTemperatureData").len() >= 4).then_some(())
    })
    .await;
    assert_eq!(edge.results("Beep").len(), 2, "the deleted action ran");

    assert!(mapper.running(), "{}", mapper.log());
    mapper.stop();
}

#[test]
fn help_and_no_radio_message() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mapper-bluetooth"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--simulate"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), "device-model-name: x\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mapper-bluetooth"))
        .args([
            "--config",
            dir.path().join("c.yaml").to_str().unwrap(),
            "--profile",
            dir.path().join("p.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no BLE radio backend"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
