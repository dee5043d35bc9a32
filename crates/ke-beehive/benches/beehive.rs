//! Beehive throughput and sync latency.
//!
//! * `send/two_modules`: messages per second from one module to another (the receiver drains in
//!   its own task on a 2-worker runtime).
//! * `send_to_group/4_members`: fan-out of one message to four modules.
//! * `send_sync/round_trip`: latency of one `send_sync` answered by an echo module via
//!   `send_resp`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ke_beehive::{Beehive, Options};
use ke_core::Message;
use serde_json::json;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

fn sample() -> Message {
    Message::new(
        "edgecontroller",
        "resource",
        "update",
        "default/pod/nginx",
        json!({"metadata": {"name": "nginx", "namespace": "default"}, "spec": {"nodeName": "n1"}}),
    )
}

fn bench_send(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("send");
    g.throughput(Throughput::Elements(1));
    g.bench_function("two_modules", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let hive = Beehive::new(Options::default());
                let mut rx = hive.register("b", "gb").unwrap_or_else(|e| panic!("{e}"));
                let drain = tokio::spawn(async move {
                    for _ in 0..iters {
                        black_box(rx.recv().await);
                    }
                });
                let msg = sample();
                let start = Instant::now();
                for _ in 0..iters {
                    hive.send("b", msg.clone())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                drain.await.unwrap_or_else(|e| panic!("{e}"));
                start.elapsed()
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("send_to_group");
    g.throughput(Throughput::Elements(1));
    g.bench_function("4_members", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let hive = Beehive::new(Options::default());
                let mut drains = Vec::new();
                for i in 0..4 {
                    let mut rx = hive
                        .register(&format!("m{i}"), "bus")
                        .unwrap_or_else(|e| panic!("{e}"));
                    drains.push(tokio::spawn(async move {
                        for _ in 0..iters {
                            black_box(rx.recv().await);
                        }
                    }));
                }
                let msg = sample();
                let start = Instant::now();
                for _ in 0..iters {
                    hive.send_to_group("bus", msg.clone())
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                for d in drains {
                    d.await.unwrap_or_else(|e| panic!("{e}"));
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

fn bench_sync(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("send_sync");
    g.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let hive = Beehive::new(Options::default());
                let mut rx = hive.register("echo", "g").unwrap_or_else(|e| panic!("{e}"));
                let replier = hive.clone();
                let echo = tokio::spawn(async move {
                    while let Some(req) = rx.recv().await {
                        let _ = replier.send_resp(req.ack());
                    }
                });
                let msg = sample();
                let start = Instant::now();
                for _ in 0..iters {
                    let mut m = msg.clone();
                    m.header.id = ke_core::message::new_id();
                    black_box(
                        hive.send_sync("echo", m, Duration::from_secs(5))
                            .await
                            .unwrap_or_else(|e| panic!("{e}")),
                    );
                }
                let elapsed = start.elapsed();
                hive.cleanup("echo");
                echo.await.unwrap_or_else(|e| panic!("{e}"));
                elapsed
            })
        });
    });
    g.finish();
}

criterion_group!(benches, bench_send, bench_sync);
criterion_main!(benches);
