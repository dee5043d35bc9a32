//! Modbus TCP end to end: reads reach the twin, desired values land in registers, profile changes
//! apply without a restart, an unreachable device goes offline and recovers.

use serde_json::json;

use crate::harness::{Edge, ModbusServer, WAIT, mapper, profile, write_profile};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_device_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let port = ke_testkit::free_tcp_port();
    let mut server = ModbusServer::start(&["--tcp", &port.to_string()], dir.path());
    server.ready().await;
    let edge = Edge::start().await;
    let cfg = json!({"ip": "127.0.0.1", "port": port, "slaveID": "1"});
    let profile_path = dir.path().join("deviceProfile.json");
    write_profile(&profile_path, &profile("pump-1", "modbus-tcp", &cfg, 0.1));
    let mark = edge.mark();
    let mut mapper = mapper(&edge, &profile_path, dir.path());
    let pid = mapper.pid();

    // startup: twin get, then every register kind reaches the twin, device online
    ke_testkit::eventually(WAIT, "twin/get from the mapper", || async {
        (!edge.since(mark, "$hw/events/device/pump-1/twin/get").is_empty()).then_some(())
    })
    .await;
    edge.state(mark, "pump-1", "online").await;
    edge.actual(mark, "pump-1", "temperature", "25").await; // input register 250 × 0.1
    edge.actual(mark, "pump-1", "counter", "131073").await; // 0x0001,0x0002 register-swapped
    edge.actual(mark, "pump-1", "setpoint", "40").await; // holding register
    edge.actual(mark, "pump-1", "power", "0").await; // coil
    edge.actual(mark, "pump-1", "alarm", "1").await; // discrete input
    edge.actual(mark, "pump-1", "label", "OK").await; // holding registers as text
    let update = &edge.since(mark, "$hw/events/device/pump-1/twin/update")[0];
    assert!(
        update["twin"]
            .as_object()
            .unwrap()
            .values()
            .all(|t| t["metadata"]["type"].is_string())
    );

    // a value changed on the device reaches the twin
    let mark = edge.mark();
    server.set("ir", 0, 300);
    edge.actual(mark, "pump-1", "temperature", "30").await;

    // desired values from the twin get result and from a delta land in the registers
    edge.publish(
        "$hw/events/device/pump-1/twin/get/result",
        &json!({"event_id":"", "timestamp": 1, "twin": {
            "setpoint": {"expected": {"value": "45"}, "actual": {"value": "40"}, "optional": false, "metadata": {"type": "int"}},
            "temperature": {"expected": {"value": "99"}, "optional": false, "metadata": {"type": "int"}}}}),
    );
    ke_testkit::eventually(WAIT, "hr[10] = 45", || async {
        (server.get("hr", 10) == Some(45)).then_some(())
    })
    .await;
    let mark = edge.mark();
    edge.publish(
        "$hw/events/device/pump-1/twin/update/delta",
        &json!({"event_id":"d1", "timestamp": 1, "twin": {}, "delta": {"setpoint": "55", "power": "1", "label": "GO"}}),
    );
    ke_testkit::eventually(WAIT, "hr[10] = 55", || async {
        (server.get("hr", 10) == Some(55)).then_some(())
    })
    .await;
    ke_testkit::eventually(WAIT, "coil 3 on", || async {
        (server.get("co", 3) == Some(1)).then_some(())
    })
    .await;
    ke_testkit::eventually(WAIT, "hr[20] = 'GO'", || async {
        (server.get("hr", 20) == Some(0x474F)).then_some(())
    })
    .await;
    edge.actual(mark, "pump-1", "setpoint", "55").await;
    edge.actual(mark, "pump-1", "power", "1").await;
    // the read-only input register was not written
    assert_eq!(server.get("ir", 0), Some(300));

    // profile change without restart: the temperature scale goes from 0.1 to 1
    let mark = edge.mark();
    write_profile(&profile_path, &profile("pump-1", "modbus-tcp", &cfg, 1.0));
    edge.actual(mark, "pump-1", "temperature", "300").await;
    assert!(mapper.running());
    assert_eq!(mapper.pid(), pid);

    // the device stops answering -> offline; it comes back -> online, values re-reported
    let mark = edge.mark();
    drop(server);
    edge.state(mark, "pump-1", "offline").await;
    let mark = edge.mark();
    let server = ModbusServer::start(&["--tcp", &port.to_string()], dir.path());
    server.ready().await;
    edge.state(mark, "pump-1", "online").await;
    edge.actual(mark, "pump-1", "temperature", "250").await; // fresh server, initial 250, scale 1
    assert!(mapper.running(), "{}", mapper.log());
    mapper.stop();
}
