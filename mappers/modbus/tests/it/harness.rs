//! Shared test plumbing: the pymodbus server process, the broker-side observer, the mapper process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ke_mqtt::{Broker, BrokerHandle, BrokerOptions, QoS};
use ke_testkit::{Daemon, eventually};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Python interpreter that has pymodbus: `$KE_PYTHON`, else hack/test.sh's venv, else `python3`.
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KE_PYTHON") {
        return p.into();
    }
    let state = std::env::var("KE_STATE_DIR").unwrap_or_else(|_| "/var/lib/kubeedge-dev".into());
    let venv = Path::new(&state).join("pyvenv/bin/python3");
    if venv.exists() { venv } else { "python3".into() }
}

/// A pymodbus server process, killed (by PID) on drop.
pub(crate) struct ModbusServer {
    child: Child,
    stdin: ChildStdin,
    state: PathBuf,
}

impl ModbusServer {
    /// `mode` is `["--tcp", "<port>"]` or `["--rtu", "<pty>"]`.
    pub(crate) fn start(mode: &[&str], dir: &Path) -> Self {
        let state = dir.join(format!("modbus-state-{}.json", mode.join("-").replace('/', "_")));
        let _ = std::fs::remove_file(&state);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(mode)
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python (pymodbus): run hack/test.sh once or set KE_PYTHON");
        let stdin = child.stdin.take().unwrap();
        Self { child, stdin, state }
    }

    /// Sets one value in the server's data area (`co`, `di`, `hr`, `ir`).
    pub(crate) fn set(&mut self, area: &str, addr: u16, value: u16) {
        writeln!(self.stdin, "set {area} {addr} {value}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The server's current value at `area[addr]`, once it has written its state file.
    pub(crate) fn get(&self, area: &str, addr: usize) -> Option<u64> {
        let text = std::fs::read_to_string(&self.state).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v[area][addr].as_u64()
    }

    /// Waits until the server serves (its state file exists).
    pub(crate) async fn ready(&self) {
        eventually(WAIT, "pymodbus server up", || async {
            self.get("hr", 0).map(|_| ())
        })
        .await;
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The edge side: an embedded broker and a record of everything published under `$hw/events/device/`.
pub(crate) struct Edge {
    pub(crate) url: String,
    pub(crate) handle: BrokerHandle,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    cancel: CancellationToken,
}

impl Edge {
    pub(crate) async fn start() -> Self {
        let broker = Broker::bind("127.0.0.1:0", BrokerOptions::default())
            .await
            .unwrap();
        let url = format!("tcp://{}", broker.local_addr());
        let handle = broker.handle();
        let cancel = CancellationToken::new();
        broker.spawn(cancel.clone());
        let mut rx = handle.subscribe("$hw/events/device/#").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Some((topic, payload)) = rx.recv().await {
                let v = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                s.lock().unwrap().push((topic, v));
            }
        });
        Self {
            url,
            handle,
            seen,
            cancel,
        }
    }

    /// Number of messages seen so far (a cursor for [`Edge::since`]).
    pub(crate) fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Messages on `topic` seen after `mark`.
    pub(crate) fn since(&self, mark: usize, topic: &str) -> Vec<Value> {
        self.seen.lock().unwrap()[mark..]
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits for a `twin/update` after `mark` reporting `prop` = `value`.
    pub(crate) async fn actual(&self, mark: usize, dev: &str, prop: &str, value: &str) {
        let topic = format!("$hw/events/device/{dev}/twin/update");
        eventually(WAIT, &format!("{dev}.{prop} actual = {value}"), || async {
            self.since(mark, &topic)
                .iter()
                .any(|m| m["twin"][prop]["actual"]["value"] == value)
                .then_some(())
        })
        .await;
    }

    /// Waits for a `state/update` after `mark` with `state`.
    pub(crate) async fn state(&self, mark: usize, dev: &str, state: &str) {
        let topic = format!("$hw/events/device/{dev}/state/update");
        eventually(WAIT, &format!("{dev} state {state}"), || async {
            self.since(mark, &topic)
                .iter()
                .any(|m| m["state"] == state)
                .then_some(())
        })
        .await;
    }

    /// Publishes as edgecore would.
    pub(crate) fn publish(&self, topic: &str, payload: &Value) {
        self.handle
            .publish(
                topic,
                serde_json::to_vec(payload).unwrap(),
                QoS::AtMostOnce,
                false,
            )
            .unwrap();
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The device profile the tests use: one device `dev` on `protocol_config`, model `pump-model`,
/// in the v1.2 cloud's exact shape. `temp_scale` lets a test change the profile.
pub(crate) fn profile(dev: &str, kind: &str, protocol_config: &Value, temp_scale: f64) -> String {
    let visitor = |prop: &str, cfg: Value| serde_json::json!({"name": prop, "propertyName": prop, "modelName": "pump-model", "protocol": "modbus", "visitorConfig": cfg});
    serde_json::json!({
        "deviceInstances": [{"id": dev, "name": dev, "protocol": format!("{kind}-{dev}"), "model": "pump-model"}],
        "deviceModels": [{"name": "pump-model", "properties": [
            {"name": "temperature", "dataType": "int", "accessMode": "ReadOnly", "defaultValue": 0, "maximum": 1000, "unit": "degree celsius"},
            {"name": "counter", "dataType": "int", "accessMode": "ReadOnly", "defaultValue": 0},
            {"name": "setpoint", "dataType": "int", "accessMode": "ReadWrite", "defaultValue": 0},
            {"name": "power", "dataType": "int", "accessMode": "ReadWrite", "defaultValue": 0},
            {"name": "alarm", "dataType": "string", "accessMode": "ReadOnly", "defaultValue": ""},
            {"name": "label", "dataType": "string", "accessMode": "ReadWrite", "defaultValue": ""}
        ]}],
        "protocols": [{"name": format!("{kind}-{dev}"), "protocol": kind, "protocol_config": protocol_config}],
        "propertyVisitors": [
            visitor("temperature", serde_json::json!({"register": "InputRegister", "offset": 0, "limit": 1, "scale": temp_scale, "isSwap": false, "isRegisterSwap": false})),
            visitor("counter", serde_json::json!({"register": "InputRegister", "offset": 2, "limit": 2, "scale": 1, "isSwap": false, "isRegisterSwap": true})),
            visitor("setpoint", serde_json::json!({"register": "HoldingRegister", "offset": 10, "limit": 1, "scale": 1})),
            visitor("power", serde_json::json!({"register": "CoilRegister", "offset": 3, "limit": 1, "scale": 1})),
            visitor("alarm", serde_json::json!({"register": "DiscreteInputRegister", "offset": 1, "limit": 1, "scale": 1})),
            visitor("label", serde_json::json!({"register": "HoldingRegister", "offset": 20, "limit": 2, "scale": 1}))
        ]
    })
    .to_string()
}

/// Writes the profile atomically (as a ConfigMap volume update does: new file, then rename).
pub(crate) fn write_profile(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Starts `mapper-modbus` on `profile` against `edge`.
pub(crate) fn mapper(edge: &Edge, profile: &Path, dir: &Path) -> Daemon {
    Daemon::start(
        "mapper-modbus",
        Path::new(env!("CARGO_BIN_EXE_mapper-modbus")),
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--mqtt-server",
            &edge.url,
            "--poll-interval-ms",
            "200",
            "--timeout-ms",
            "500",
        ],
        dir,
    )
}
