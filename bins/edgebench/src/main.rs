//! edgebench: edgecore's footprint and its device-twin throughput, measured on the real binaries.
//!
//! Starts a `cloudcore` and an `edgecore` (internal MQTT broker, DeviceTwin on, no edged) from the
//! binaries next to this one, waits until the edge is connected and idle, and prints its RSS. Then it
//! adds one device the way the cloud does (a `membership` message through cloudcore's unix socket) and
//! sends twin updates over MQTT with a window of outstanding requests, counting the
//! `…/twin/update/result` publications: each one means MQTT → DeviceTwin → SQLite commit → MQTT.
//! Prints updates/s, per-update latency and edgecore's RSS afterwards, next to the targets.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use ke_benchkit::{
    free_port, hub_socket, metric, pct, rss, sibling_bin, spawn, write_cloud_pki, write_cloudcore_config,
    write_edgecore_config,
};
use ke_core::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "edgecore idle RSS and twin updates/s against real processes")]
struct Args {
    /// Twin updates to send.
    #[arg(long, default_value_t = 5000)]
    updates: usize,
    /// Updates in flight at once.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// Seconds to let edgecore settle before reading its idle RSS.
    #[arg(long, default_value_t = 5)]
    settle: u64,
}

const NODE: &str = "bench-edge";
const DEVICE: &str = "bench-dev";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("edgebench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let res = run(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    res
}

async fn run(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let ca = write_cloud_pki(dir, "edgebench CA")?;
    ca.issue_node(NODE)?.write(&dir.join("certs"), NODE)?;
    let (ws, cm, em, mq) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let cloud_config = write_cloudcore_config(dir, ws, cm)?;
    let sock = hub_socket(dir);
    let d = dir.display();
    let edge_config = write_edgecore_config(dir, NODE, ws, em, mq, "    enable: false\n")?;
    let _cloud = spawn(
        &sibling_bin("cloudcore")?,
        &cloud_config,
        &dir.join("cloudcore.log"),
    )?;
    let edge = spawn(&sibling_bin("edgecore")?, &edge_config, &dir.join("edgecore.log"))?;
    let pid = edge.pid();
    let cloud_metrics = format!("127.0.0.1:{cm}");
    let t0 = Instant::now();
    while metric(&cloud_metrics, "cloudhub_connected_nodes").await != Some(1.0) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("the edge did not connect; logs in {d}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let (idle, idle_anon) = rss(pid);
    println!(
        "edgecore idle RSS {:.1} MB (RssAnon {:.1} MB) with edgehub, metaManager, eventbus (internal broker) and twin   (target <= 12 MB; KubeEdge v1.2.1: 51 MB)",
        idle as f64 / 1024.0,
        idle_anon as f64 / 1024.0
    );

    // One device, added the way the cloud adds it.
    let membership = Message::new(
        "devicecontroller",
        "twin",
        "update",
        format!("node/{NODE}/membership"),
        json!({"event_id": "", "timestamp": 0, "added_devices": [{"id": DEVICE, "name": DEVICE, "state": "unknown",
            "twin": {"value": {"expected": {"value": "0", "metadata": {"timestamp": 0}}, "optional": true,
            "metadata": {"type": "string"}, "expected_version": {"cloud": 1, "edge": 1}}}}], "removed_devices": null}),
    );
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        ke_transport::unix::request(&sock, &membership, 1 << 20),
    )
    .await;

    let mut o = MqttOptions::new("edgebench", "127.0.0.1", mq);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(u16::try_from(args.window.max(1)).unwrap_or(u16::MAX));
    let (client, mut ev) = AsyncClient::new(o, args.window * 2 + 16);
    let (tx, mut results) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    let poller = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = e {
                let id = serde_json::from_slice::<serde_json::Value>(&p.payload)
                    .ok()
                    .and_then(|v| v.get("event_id")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if tx.send((Instant::now(), id)).is_err() {
                    break;
                }
            }
        }
    });
    let topic = format!("$hw/events/device/{DEVICE}/twin/update");
    client
        .subscribe(format!("{topic}/result"), QoS::AtMostOnce)
        .await?;
    let body = |i: usize| {
        json!({"event_id": format!("u-{i}"), "timestamp": 0,
               "twin": {"value": {"actual": {"value": i.to_string()}, "metadata": {"type": "Updated"}}}})
        .to_string()
    };
    // Wait for the device to exist: the first update gets a result.
    let t_wait = Instant::now();
    loop {
        client.publish(&topic, QoS::AtLeastOnce, false, body(0)).await?;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), results.recv()).await {
            break;
        }
        if t_wait.elapsed() > Duration::from_secs(20) {
            bail!("the twin never answered; logs in {d}");
        }
    }
    while tokio::time::timeout(Duration::from_millis(300), results.recv())
        .await
        .is_ok()
    {}

    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(args.updates);
    let mut lat = Vec::with_capacity(args.updates);
    let start = Instant::now();
    let mut next = 1;
    while lat.len() < args.updates {
        while next <= args.updates && sent_at.len() < args.window {
            sent_at.insert(format!("u-{next}"), Instant::now());
            client
                .publish(&topic, QoS::AtLeastOnce, false, body(next))
                .await?;
            next += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), results.recv()).await {
            Ok(Some((at, id))) => {
                if let Some(t) = sent_at.remove(&id) {
                    lat.push(at - t);
                }
            }
            _ => bail!(
                "results stopped after {} of {} updates; logs in {d}",
                lat.len(),
                args.updates
            ),
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    let (after, after_anon) = rss(pid);
    println!(
        "twin updates through MQTT -> SQLite -> result: {} in {:.2?} = {:.0} updates/s (window {}); latency p50 {:.2?} p99 {:.2?} max {:.2?}",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        args.window,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    );
    println!(
        "edgecore RSS after the burst {:.1} MB (RssAnon {:.1} MB)",
        after as f64 / 1024.0,
        after_anon as f64 / 1024.0
    );
    poller.abort();
    Ok(())
}
