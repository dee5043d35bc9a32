//! Modbus RTU over a pty pair made by socat: the pymodbus server on one end, the mapper on the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{Edge, ModbusServer, WAIT, mapper, profile, write_profile};

/// `socat pty,link=A pty,link=B`, killed by PID on drop.
struct PtyPair {
    child: Child,
    a: PathBuf,
    b: PathBuf,
}

impl PtyPair {
    async fn start(dir: &Path) -> Self {
        let a = dir.join("ttyA");
        let b = dir.join("ttyB");
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("socat (Debian package `socat`; hack/test.sh installs it)");
        ke_testkit::eventually(Duration::from_secs(10), "socat ptys", || async {
            (a.exists() && b.exists()).then_some(())
        })
        .await;
        Self { child, a, b }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtu_device_over_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let pty = PtyPair::start(dir.path()).await;
    let server = ModbusServer::start(&["--rtu", pty.a.to_str().unwrap()], dir.path());
    server.ready().await;
    let edge = Edge::start().await;
    let cfg = json!({"serialPort": pty.b.to_str().unwrap(), "baudRate": 9600, "dataBits": 8, "parity": "none", "stopBits": 1, "slaveID": 1});
    let profile_path = dir.path().join("deviceProfile.json");
    write_profile(&profile_path, &profile("meter-1", "modbus-rtu", &cfg, 0.1));
    let mark = edge.mark();
    let mut mapper = mapper(&edge, &profile_path, dir.path());

    edge.state(mark, "meter-1", "online").await;
    edge.actual(mark, "meter-1", "temperature", "25").await;
    edge.actual(mark, "meter-1", "counter", "131073").await;
    edge.actual(mark, "meter-1", "alarm", "1").await;

    let mark = edge.mark();
    edge.publish(
        "$hw/events/device/meter-1/twin/update/delta",
        &json!({"event_id":"d1", "timestamp": 1, "twin": {}, "delta": {"setpoint": "77"}}),
    );
    ke_testkit::eventually(WAIT, "hr[10] = 77 over RTU", || async {
        (server.get("hr", 10) == Some(77)).then_some(())
    })
    .await;
    edge.actual(mark, "meter-1", "setpoint", "77").await;

    // the server stops answering on the line -> offline
    let mark = edge.mark();
    drop(server);
    edge.state(mark, "meter-1", "offline").await;
    assert!(mapper.running(), "{}", mapper.log());
    mapper.stop();
}
