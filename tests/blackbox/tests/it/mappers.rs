//! The mappers against a real edgecore: `mapper-modbus` with a real Modbus server (pymodbus) in
//! internal MQTT mode (edgecore's embedded broker) and in external mode (a mosquitto started
//! here), and `mapper-bluetooth` with its simulated peripheral in internal mode.
//!
//! Devices are added the way the cloud adds them (a `membership` message through cloudcore's unix
//! socket) and desired values come from the cloud (`device/<id>/twin/cloud_updated` with version
//! vectors). An MQTT observer records what edgecore publishes: the mapper's readings must show
//! up in edgecore's twin documents and `twin/get` answers, and a cloud change must come out as a
//! delta that the mapper writes to the device.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ke_core::Message;
use ke_testkit::{Daemon, bin, eventually, free_tcp_port};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::cluster::{Cloud, Cluster, Edge, wait_metric};

const NODE: &str = "edge-mapper-1";
const WAIT: Duration = Duration::from_secs(20);

/// Sends a message for `NODE` through cloudcore's unix socket, as devicecontroller does. Neither
/// membership nor `cloud_updated` is answered (fire-and-forget lane), so the timeout is expected.
async fn from_cloud(cloud: &Cloud, resource: &str, content: Value) {
    let m = Message::new(
        "devicecontroller",
        "twin",
        "update",
        format!("node/{NODE}/{resource}"),
        content,
    );
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        ke_transport::unix::request(&cloud.sock, &m, 1 << 20),
    )
    .await;
}

/// Adds one device with one twin (`expected` value, `kind` type) to the node.
async fn add_device(cloud: &Cloud, id: &str, twin: &str, kind: &str, expected: &str) {
    let content = json!({"event_id": "", "timestamp": 0, "added_devices": [{
        "id": id, "name": id, "description": "mapper test", "state": "unknown",
        "twin": {twin: {"expected": {"value": expected}, "optional": true, "metadata": {"type": kind},
                        "expected_version": {"cloud": 1, "edge": 0}}}}],
        "removed_devices": null});
    from_cloud(cloud, "membership", content).await;
}

/// A desired value set in the cloud (the expected side's cloud version moves to `cloud_version`).
async fn desire(cloud: &Cloud, id: &str, twin: &str, kind: &str, value: &str, cloud_version: i64) {
    let content = json!({"event_id": format!("cloud-{value}"), "timestamp": 0, "twin": {twin: {
        "expected": {"value": value}, "optional": true, "metadata": {"type": kind},
        "expected_version": {"cloud": cloud_version, "edge": 0}}}});
    from_cloud(cloud, &format!("device/{id}/twin/cloud_updated"), content).await;
}

/// An MQTT client on the edge's broker recording what the edge publishes about devices.
struct Observer {
    client: AsyncClient,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Observer {
    async fn connect(port: u16) -> Option<Self> {
        let mut o = MqttOptions::new(format!("observer-{port}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        let (client, mut ev) = AsyncClient::new(o, 64);
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let s = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        s.lock().unwrap().push((p.topic.clone(), v));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let topics = [
            "$hw/events/device/+/twin/update/+",
            "$hw/events/device/+/twin/get/result",
            "$hw/events/node/+/membership/get/result",
            "$hw/events/node/+/membership/updated",
        ];
        let obs = Self { client, seen, task };
        for t in topics {
            obs.client.subscribe(t, QoS::AtLeastOnce).await.ok()?;
        }
        for _ in topics {
            tokio::time::timeout(Duration::from_secs(3), ack_rx.recv())
                .await
                .ok()??;
        }
        Some(obs)
    }

    async fn publish(&self, topic: &str, payload: Value) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_string())
            .await
            .unwrap();
    }

    /// Waits until a publication on `topic` satisfies `pred`; returns it.
    async fn wait(&self, topic: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(WAIT, what, || async {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .find(|(t, v)| t == topic && pred(v))
                .map(|(_, v)| v.clone())
        })
        .await
    }

    /// Asks until the twin answers a membership get: broker, eventbus and twin are all up.
    async fn twin_ready(&self) {
        let topic = format!("$hw/events/node/{NODE}/membership/get");
        eventually(WAIT, "the twin answers membership/get", || async {
            self.publish(&topic, json!({"event_id": "ready", "timestamp": 0}))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.seen
                .lock()
                .unwrap()
                .iter()
                .any(|(t, _)| *t == format!("{topic}/result"))
                .then_some(())
        })
        .await;
    }

    /// Edgecore's document shows `twin`'s current actual value = `value`.
    async fn actual_in_document(&self, dev: &str, twin: &str, value: &str) {
        self.wait(
            &format!("$hw/events/device/{dev}/twin/update/document"),
            &format!("{dev}.{twin} actual {value} in edgecore's twin document"),
            |v| v["twin"][twin]["current"]["actual"]["value"] == value,
        )
        .await;
    }

    /// Edgecore answers a `twin/get` with `twin`'s actual = `value` (asked until it does).
    async fn actual_in_twin_get(&self, dev: &str, twin: &str, value: &str) {
        let topic = format!("$hw/events/device/{dev}/twin/get");
        let event = format!("probe-{twin}-{value}");
        eventually(
            WAIT,
            &format!("twin/get shows {dev}.{twin} = {value}"),
            || async {
                self.publish(&topic, json!({"event_id": event, "timestamp": 0}))
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.seen
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(t, v)| {
                        *t == format!("{topic}/result")
                            && v["event_id"] == event.as_str()
                            && v["twin"][twin]["actual"]["value"] == value
                    })
                    .then_some(())
            },
        )
        .await;
    }
}

/// cloudcore + edgecore (device twin on) with the given `eventbus:` section.
async fn start(c: &Cluster, eventbus: &str) -> (Cloud, Edge) {
    let cloud = c.cloud_config("");
    let edge = c.edge_full(NODE, &cloud, false, eventbus, true);
    wait_metric(
        &cloud.metrics,
        "cloudhub_connected_nodes",
        |v| v == 1.0,
        "edge connected",
    )
    .await;
    (cloud, edge)
}

async fn observer(port: u16) -> Observer {
    let obs = eventually(WAIT, "MQTT observer connected", || Observer::connect(port)).await;
    obs.twin_ready().await;
    obs
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Python interpreter that has pymodbus: `$KE_PYTHON`, else hack/test.sh's venv, else `python3`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KE_PYTHON") {
        return p.into();
    }
    let state = std::env::var("KE_STATE_DIR").unwrap_or_else(|_| "/var/lib/kubeedge-dev".into());
    let venv = Path::new(&state).join("pyvenv/bin/python3");
    if venv.exists() { venv } else { "python3".into() }
}

/// `mappers/modbus/tests/modbus_server.py` on a TCP port, killed by PID on drop.
struct ModbusServer {
    child: Child,
    _stdin: ChildStdin,
    state: PathBuf,
}

impl ModbusServer {
    async fn start(port: u16, dir: &Path) -> Self {
        let state = dir.join("modbus-state.json");
        let mut child = Command::new(python())
            .arg(repo().join("mappers/modbus/tests/modbus_server.py"))
            .args(["--tcp", &port.to_string(), "--state"])
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python (pymodbus): run hack/test.sh once or set KE_PYTHON");
        let stdin = child.stdin.take().unwrap();
        let s = Self {
            child,
            _stdin: stdin,
            state,
        };
        eventually(WAIT, "pymodbus server up", || async { s.holding(0) }).await;
        s
    }

    /// Holding register `addr` as the server holds it (from its state file).
    fn holding(&self, addr: usize) -> Option<u64> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&self.state).ok()?).ok()?;
        v["hr"][addr].as_u64()
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cloud's device profile for one Modbus TCP device: `setpoint` = holding register 10
/// (read-write, the server starts it at 40), `temperature` = input register 0 × 0.1 (25).
fn modbus_profile(dev: &str, port: u16) -> String {
    let visitor = |prop: &str, cfg: Value| json!({"name": prop, "propertyName": prop, "modelName": "pump-model", "protocol": "modbus", "visitorConfig": cfg});
    json!({
        "deviceInstances": [{"id": dev, "name": dev, "protocol": format!("modbus-tcp-{dev}"), "model": "pump-model"}],
        "deviceModels": [{"name": "pump-model", "properties": [
            {"name": "setpoint", "dataType": "int", "accessMode": "ReadWrite", "defaultValue": 0},
            {"name": "temperature", "dataType": "int", "accessMode": "ReadOnly", "defaultValue": 0, "maximum": 1000}
        ]}],
        "protocols": [{"name": format!("modbus-tcp-{dev}"), "protocol": "modbus-tcp",
                       "protocol_config": {"ip": "127.0.0.1", "port": port, "slaveID": 1}}],
        "propertyVisitors": [
            visitor("setpoint", json!({"register": "HoldingRegister", "offset": 10, "limit": 1, "scale": 1})),
            visitor("temperature", json!({"register": "InputRegister", "offset": 0, "limit": 1, "scale": 0.1}))
        ]
    })
    .to_string()
}

/// The whole Modbus flow against an edgecore whose broker (embedded or mosquitto) is on `port`.
async fn modbus_against_edgecore(eventbus: &str, port: u16) {
    let c = Cluster::new(&[NODE]);
    let modbus_port = free_tcp_port();
    let server = ModbusServer::start(modbus_port, c.path()).await;
    let (mut cloud, mut edge) = start(&c, eventbus).await;
    let obs = observer(port).await;
    let dev = "pump-1";

    // The cloud adds the device (setpoint desired 40, what the register holds), then the mapper
    // starts on the profile the cloud would write for it.
    add_device(&cloud, dev, "setpoint", "int", "40").await;
    obs.wait(
        &format!("$hw/events/node/{NODE}/membership/updated"),
        "membership/updated",
        |v| v["added_devices"][0]["id"] == dev,
    )
    .await;
    let profile = c.path().join("deviceProfile.json");
    std::fs::write(&profile, modbus_profile(dev, modbus_port)).unwrap();
    let mut mapper = Daemon::start(
        "mapper-modbus",
        &bin("mapper-modbus"),
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--mqtt-server",
            &format!("tcp://127.0.0.1:{port}"),
            "--poll-interval-ms",
            "200",
            "--timeout-ms",
            "500",
        ],
        c.path(),
    );

    // The registers' values reach edgecore's twin: in its documents and in its twin/get answers
    // (`temperature` is not in the cloud's twin: edgecore creates it from the mapper's report).
    obs.actual_in_document(dev, "setpoint", "40").await;
    obs.actual_in_twin_get(dev, "setpoint", "40").await;
    obs.actual_in_twin_get(dev, "temperature", "25").await;

    // A desired value from the cloud: edgecore publishes a delta, the mapper writes the holding
    // register, reads it back and reports it; edgecore's twin then holds it as actual.
    desire(&cloud, dev, "setpoint", "int", "77", 2).await;
    obs.wait(
        &format!("$hw/events/device/{dev}/twin/update/delta"),
        "delta setpoint 77 from edgecore",
        |v| v["delta"]["setpoint"] == "77",
    )
    .await;
    eventually(WAIT, "holding register 10 = 77 in pymodbus", || async {
        (server.holding(10) == Some(77)).then_some(())
    })
    .await;
    obs.actual_in_document(dev, "setpoint", "77").await;
    obs.actual_in_twin_get(dev, "setpoint", "77").await;

    assert!(mapper.running(), "mapper-modbus died:\n{}", mapper.log());
    assert!(edge.daemon.running(), "edgecore died:\n{}", edge.daemon.log());
    mapper.stop();
    // The membership and cloud_updated requests above still wait for a reply that never comes
    // (up to cloudhub's request timeout, 60 s): cloudcore exits at SIGTERM all the same, within
    // the 10 s grace `Daemon::stop` gives before SIGKILL.
    assert_eq!(cloud.daemon.stop(), "exit status: 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_mapper_with_edgecore_internal_broker() {
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    modbus_against_edgecore(&eventbus, port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_mapper_with_edgecore_external_mosquitto() {
    const MOSQUITTO: &str = "/usr/sbin/mosquitto";
    if !Path::new(MOSQUITTO).exists() {
        eprintln!("SKIPPED: {MOSQUITTO} not installed (hack/test.sh installs it)");
        return;
    }
    let port = free_tcp_port();
    let mut broker = tokio::process::Command::new(MOSQUITTO)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let eventbus = format!("  eventbus:\n    mqttMode: 2\n    mqttServerExternal: tcp://127.0.0.1:{port}\n");
    modbus_against_edgecore(&eventbus, port).await;
    // Stop mosquitto by its PID.
    broker.kill().await.unwrap();
}

/// `mapper-bluetooth` with the simulated CC2650 SensorTag against edgecore's embedded broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_mapper_with_edgecore_internal_broker() {
    let port = free_tcp_port();
    let eventbus = format!("  eventbus:\n    mqttMode: 0\n    mqttServerInternal: tcp://127.0.0.1:{port}\n");
    let mqtt = format!("  mode: 0\n  internal-server: tcp://127.0.0.1:{port}\n");
    bluetooth_against_edgecore(&eventbus, &mqtt, port).await;
}

/// The same with edgecore and the mapper both on an external mosquitto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluetooth_mapper_with_edgecore_external_mosquitto() {
    const MOSQUITTO: &str = "/usr/sbin/mosquitto";
    if !Path::new(MOSQUITTO).exists() {
        eprintln!("SKIPPED: {MOSQUITTO} not installed (hack/test.sh installs it)");
        return;
    }
    let port = free_tcp_port();
    let mut broker = tokio::process::Command::new(MOSQUITTO)
        .args(["-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let eventbus = format!("  eventbus:\n    mqttMode: 2\n    mqttServerExternal: tcp://127.0.0.1:{port}\n");
    let mqtt = format!("  mode: 1\n  server: tcp://127.0.0.1:{port}\n");
    bluetooth_against_edgecore(&eventbus, &mqtt, port).await;
    broker.kill().await.unwrap();
}

/// Its watcher reads the twin from edgecore, drives the peripheral to the desired `io-data` and
/// reports it as actual. `mqtt` is the mapper config's `mqtt:` section body.
async fn bluetooth_against_edgecore(eventbus: &str, mqtt: &str, port: u16) {
    const DEV: &str = "sensor-tag-instance-01";
    const IO_DATA: &str = "f000aa6504514000b000000000000000";
    let c = Cluster::new(&[NODE]);
    let (cloud, mut edge) = start(&c, eventbus).await;
    let obs = observer(port).await;
    add_device(&cloud, DEV, "io-data", "string", "Red").await;
    obs.wait(
        &format!("$hw/events/node/{NODE}/membership/updated"),
        "membership/updated",
        |v| v["added_devices"][0]["id"] == DEV,
    )
    .await;

    let d = c.path();
    let fixtures = repo().join("mappers/bluetooth/tests/fixtures");
    std::fs::copy(fixtures.join("cc2650-profile.json"), d.join("deviceProfile.json")).unwrap();
    std::fs::write(
        d.join("bt-config.yaml"),
        format!(
            "mqtt:
{mqtt}device-model-name: cc2650-sensortag
action-manager:
  actions:
    - name: IOConfiguration
      perform-immediately: false
      device-property-name: io-config
    - name: IOData
      perform-immediately: false
      device-property-name: io-data
watcher:
  device-twin-attributes:
    - device-property-name: io-data
      actions: [IOConfiguration, IOData]
"
        ),
    )
    .unwrap();
    let state = d.join("peripheral-state.json");
    let io_data = || -> Option<Value> {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()?;
        Some(s["characteristics"][IO_DATA].clone())
    };
    let mut mapper = Daemon::start(
        "mapper-bluetooth",
        &bin("mapper-bluetooth"),
        &[
            "--config",
            d.join("bt-config.yaml").to_str().unwrap(),
            "--profile",
            d.join("deviceProfile.json").to_str().unwrap(),
            "--simulate",
            fixtures.join("sensortag.json").to_str().unwrap(),
            "--simulate-state",
            state.to_str().unwrap(),
            "--watch-interval-ms",
            "200",
        ],
        d,
    );

    // Desired "Red" from the cloud's membership: written to the peripheral (dataWrite Red = [1])
    // and reported as actual to edgecore's twin.
    obs.actual_in_document(DEV, "io-data", "Red").await;
    eventually(WAIT, "io-data = [1] on the peripheral", || async {
        (io_data() == Some(json!([1]))).then_some(())
    })
    .await;
    obs.actual_in_twin_get(DEV, "io-data", "Red").await;

    // A new desired value from the cloud converges the same way (Buzzer = [4]).
    desire(&cloud, DEV, "io-data", "string", "Buzzer", 2).await;
    obs.actual_in_document(DEV, "io-data", "Buzzer").await;
    eventually(WAIT, "io-data = [4] on the peripheral", || async {
        (io_data() == Some(json!([4]))).then_some(())
    })
    .await;

    assert!(mapper.running(), "mapper-bluetooth died:\n{}", mapper.log());
    assert!(edge.daemon.running(), "edgecore died:\n{}", edge.daemon.log());
    mapper.stop();
}
