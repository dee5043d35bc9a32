//! Status from edged to the cloud, and the periodic pod status resync.

use std::time::Duration;

use ke_core::Message;
use ke_core::names::{group, module, op};
use metamanager::MetaManagerOptions;
use serde_json::{Value, json};

use crate::harness::{Harness, cloud_msg, pod, recv};

fn status(name: &str, phase: &str) -> Value {
    json!({"UID": format!("uid-{name}"), "Name": name, "Status": {"phase": phase}})
}

async fn add_pod(h: &mut Harness, ns: &str, name: &str) {
    h.deliver(cloud_msg(
        op::INSERT,
        &format!("{ns}/pod/{name}"),
        pod(ns, name, "i"),
    ))
    .await;
    recv(&mut h.edged).await;
    recv(&mut h.cloud).await;
}

fn sync_msg() -> Message {
    Message::new(
        module::META_MANAGER,
        group::META,
        op::META_INTERNAL_SYNC,
        "default/podstatus",
        Value::Null,
    )
}

#[tokio::test]
async fn pod_status_is_forwarded_once_and_resynced_per_namespace() {
    // Timer disabled: only the explicit meta-internal-sync messages below resync.
    let opts = MetaManagerOptions {
        pod_status_sync_interval: Duration::ZERO,
        ..MetaManagerOptions::default()
    };
    let mut h = Harness::start(opts);
    add_pod(&mut h, "a", "p1").await;
    add_pod(&mut h, "a", "p2").await;
    add_pod(&mut h, "b", "p3").await;
    for (ns, name) in [("a", "p1"), ("a", "p2"), ("b", "p3"), ("c", "gone")] {
        let reply = h
            .edged_call(
                op::UPDATE,
                &format!("{ns}/podstatus/{name}"),
                status(name, "Running"),
            )
            .await;
        assert_eq!(
            (reply.operation(), reply.content_str()),
            (op::RESPONSE, Some("OK"))
        );
        let up = recv(&mut h.cloud).await;
        assert_eq!(
            (up.source(), up.group(), up.operation(), up.resource()),
            (
                module::EDGED,
                group::META,
                op::UPDATE,
                format!("{ns}/podstatus/{name}").as_str()
            )
        );
    }
    // Same status again: answered, not sent up.
    let reply = h
        .edged_call(op::UPDATE, "a/podstatus/p1", status("p1", "Running"))
        .await;
    assert_eq!(reply.content_str(), Some("OK"));
    assert!(h.cloud.try_recv().is_none());

    // Disconnected: the resync sends nothing but drops the status of the pod that is gone.
    h.deliver(sync_msg()).await;
    let _ = h.edged_call(op::QUERY, "x/pod", Value::Null).await; // barrier
    assert!(h.cloud.try_recv().is_none());
    assert_eq!(h.db_row("c/podstatus/gone"), None);
    assert!(h.db_row("a/podstatus/p1").is_some());

    h.set_connected(true).await;
    h.deliver(sync_msg()).await;
    let first = recv(&mut h.cloud).await;
    let second = recv(&mut h.cloud).await;
    for (m, ns, want) in [
        (
            &first,
            "a",
            json!([status("p1", "Running"), status("p2", "Running")]),
        ),
        (&second, "b", json!([status("p3", "Running")])),
    ] {
        assert_eq!(
            (m.source(), m.group(), m.operation(), m.resource()),
            (
                module::META_MANAGER,
                group::RESOURCE,
                op::UPDATE,
                format!("{ns}/podstatus").as_str()
            )
        );
        assert_eq!(m.content, want);
    }
    assert!(h.cloud.try_recv().is_none());
    h.stop().await;
}

#[tokio::test]
async fn resync_timer_fires_when_connected() {
    let opts = MetaManagerOptions {
        pod_status_sync_interval: Duration::from_millis(50),
        ..MetaManagerOptions::default()
    };
    let mut h = Harness::start(opts);
    add_pod(&mut h, "default", "p").await;
    h.edged_call(op::UPDATE, "default/podstatus/p", status("p", "Pending"))
        .await;
    assert_eq!(recv(&mut h.cloud).await.source(), module::EDGED);
    h.set_connected(true).await;
    let bulk = recv(&mut h.cloud).await;
    assert_eq!(
        (bulk.source(), bulk.resource()),
        (module::META_MANAGER, "default/podstatus")
    );
    assert_eq!(bulk.content, json!([status("p", "Pending")]));
    h.stop().await;
}

#[tokio::test]
async fn node_status_always_goes_up_and_the_clouds_ok_is_not_stored() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let ns = json!({"UID": "38796d14-1df3-11e8-8e5a-286ed488f209", "Status": {"phase": "Running"}});
    for _ in 0..2 {
        let reply = h
            .edged_call(op::UPDATE, "default/nodestatus/n1", ns.clone())
            .await;
        assert_eq!(reply.content_str(), Some("OK"));
        let up = recv(&mut h.cloud).await;
        assert_eq!((up.resource(), &up.content), ("default/nodestatus/n1", &ns));
        // The cloud's "OK" to it arrives as an unclaimed response: dropped, not stored.
        h.deliver(cloud_msg(op::RESPONSE, "default/node/n1", json!("OK")).with_parent(up.id()))
            .await;
    }
    let _ = h.edged_call(op::QUERY, "x/pod", Value::Null).await; // barrier
    assert_eq!(h.db_row("default/node/n1"), None);
    assert!(h.db_row("default/nodestatus/n1").is_some());
    assert!(h.edged.try_recv().is_none() && h.cloud.try_recv().is_none());
    h.stop().await;
}
