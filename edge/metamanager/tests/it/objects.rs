//! Cloud objects: store → forward → ack.

use ke_core::names::{group, module, op};
use metamanager::MetaManagerOptions;
use serde_json::{Value, json};

use crate::harness::{Harness, assert_ack, cloud_msg, ok, pod, recv};

#[tokio::test]
async fn insert_is_stored_then_forwarded_then_acked() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let ins = cloud_msg(
        op::INSERT,
        "default/pod/nginx",
        pod("default", "nginx", "nginx:1"),
    );
    h.deliver(ins.clone()).await;

    let fwd = recv(&mut h.edged).await;
    assert_eq!(fwd, ins, "the original message is forwarded unchanged");
    let ack = recv(&mut h.cloud).await;
    assert_ack(&ack, &ins);
    // The ack is observed: the row must already be committed, visible to another connection.
    let (key, kind, value) = h
        .db_row("default/pod/nginx")
        .unwrap_or_else(|| panic!("row missing at ack time"));
    assert_eq!((key.as_str(), kind.as_str()), ("default/pod/nginx", "pod"));
    assert_eq!(ok(serde_json::from_str::<Value>(&value)), ins.content);
    h.stop().await;
}

#[tokio::test]
async fn duplicates_are_acked_but_not_forwarded_and_changes_are() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let cm =
        json!({"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}});
    let first = cloud_msg(op::INSERT, "default/configmap/cfg", cm.clone());
    h.deliver(first.clone()).await;
    assert_eq!(recv(&mut h.edged).await.id(), first.id());
    assert_ack(&recv(&mut h.cloud).await, &first);

    // Redelivery of the same message, then an update with the same content.
    h.deliver(first.clone()).await;
    assert_ack(&recv(&mut h.cloud).await, &first);
    let same = cloud_msg(op::UPDATE, "default/configmap/cfg", cm);
    h.deliver(same.clone()).await;
    assert_ack(&recv(&mut h.cloud).await, &same);

    // A real change is forwarded; being the next thing edged sees proves the duplicates were not.
    let changed = cloud_msg(
        op::UPDATE,
        "default/configmap/cfg",
        json!({"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "2"}}),
    );
    h.deliver(changed.clone()).await;
    assert_eq!(recv(&mut h.edged).await.id(), changed.id());
    assert_ack(&recv(&mut h.cloud).await, &changed);
    let row = h.db_row("default/configmap/cfg").map(|r| r.2).unwrap_or_default();
    assert_eq!(
        row,
        r#"{"data":{"a":"2"},"kind":"ConfigMap","metadata":{"name":"cfg","namespace":"default"}}"#
    );
    assert!(h.edged.try_recv().is_none() && h.cloud.try_recv().is_none());
    h.stop().await;
}

#[tokio::test]
async fn delete_removes_forwards_and_acks() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let ins = cloud_msg(op::INSERT, "default/pod/p", pod("default", "p", "busybox"));
    h.deliver(ins).await;
    recv(&mut h.edged).await;
    recv(&mut h.cloud).await;

    let del = cloud_msg(op::DELETE, "default/pod/p", pod("default", "p", "busybox"));
    h.deliver(del.clone()).await;
    assert_eq!(recv(&mut h.edged).await, del);
    let ack = recv(&mut h.cloud).await;
    assert_ack(&ack, &del);
    assert_eq!(
        h.db_row("default/pod/p"),
        None,
        "row still there when the delete was acked"
    );
    h.stop().await;
}

#[tokio::test]
async fn service_lists_become_rows_and_go_to_edgemesh() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let mut mesh = ok(h.hive.register(module::EDGEMESH, group::MESH));
    let list = cloud_msg(
        op::UPDATE,
        "namespace/servicelist/service",
        json!([
            {"metadata": {"name": "s1", "namespace": "a"}, "spec": {"ports": [{"port": 80}]}},
            {"metadata": {"name": "s2", "namespace": "b"}}
        ]),
    );
    h.deliver(list.clone()).await;
    assert_eq!(recv(&mut mesh).await.id(), list.id());
    assert_ack(&recv(&mut h.cloud).await, &list);
    assert_eq!(
        h.db_row("a/service/s1"),
        Some((
            "a/service/s1".into(),
            "service".into(),
            r#"{"metadata":{"name":"s1","namespace":"a"},"spec":{"ports":[{"port":80}]}}"#.into()
        ))
    );
    assert!(h.db_row("b/service/s2").is_some());

    let podlist = cloud_msg(op::UPDATE, "a/podlist/s1", json!([pod("a", "p1", "x")]));
    h.deliver(podlist.clone()).await;
    assert_eq!(recv(&mut mesh).await.id(), podlist.id());
    assert_ack(&recv(&mut h.cloud).await, &podlist);
    let row = h.db_row("a/podlist/s1").unwrap_or_default();
    assert_eq!(row.1, "podlist");
    assert_eq!(ok(serde_json::from_str::<Value>(&row.2)), podlist.content);

    // Service objects go to edgemesh; with edgemesh gone the object is still stored and acked.
    h.hive.cleanup(module::EDGEMESH);
    let svc = cloud_msg(op::INSERT, "a/service/s3", json!({"metadata": {"name": "s3"}}));
    h.deliver(svc.clone()).await;
    assert_ack(&recv(&mut h.cloud).await, &svc);
    assert!(h.db_row("a/service/s3").is_some());
    assert!(h.edged.try_recv().is_none(), "services never go to edged");
    h.stop().await;
}

#[tokio::test]
async fn malformed_messages_get_an_error_with_the_request_as_parent_and_no_ack() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let bad = cloud_msg(op::INSERT, "nonamespace", json!({}));
    h.deliver(bad.clone()).await;
    let err = recv(&mut h.cloud).await;
    assert_eq!(err.operation(), op::ERROR);
    assert_eq!(
        err.parent_id(),
        bad.id(),
        "v1.2 bug fixed: parent is the request id"
    );
    assert_eq!(err.source(), module::META_MANAGER);
    assert!(
        err.content_str().is_some_and(|t| t.contains("nonamespace")),
        "{}",
        err.content
    );

    let bad_list = cloud_msg(
        op::UPDATE,
        "namespace/servicelist/service",
        json!({"not": "a list"}),
    );
    h.deliver(bad_list.clone()).await;
    let err = recv(&mut h.cloud).await;
    assert_eq!((err.operation(), err.parent_id()), (op::ERROR, bad_list.id()));

    // From edged (synchronous): the error comes back to the caller.
    let reply = h.edged_call(op::UPDATE, "broken", Value::Null).await;
    assert_eq!(reply.operation(), op::ERROR);
    assert!(h.edged.try_recv().is_none() && h.cloud.try_recv().is_none());
    h.stop().await;
}

#[tokio::test]
async fn data_survives_a_restart_and_is_served_from_the_db() {
    let mut h = Harness::start(MetaManagerOptions::default());
    for name in ["a", "b"] {
        let ins = cloud_msg(
            op::INSERT,
            &format!("default/pod/{name}"),
            pod("default", name, "img"),
        );
        h.deliver(ins).await;
        recv(&mut h.cloud).await;
    }
    let dir = h.stop().await;

    let h = Harness::start_in(dir, MetaManagerOptions::default());
    let reply = h.edged_call(op::QUERY, "default/pod", Value::Null).await;
    assert_eq!(reply.source(), module::META_MANAGER);
    let names: Vec<String> = reply
        .content
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|s| serde_json::from_str::<Value>(s).ok())
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["a", "b"]);
    h.stop().await;
}

#[tokio::test]
async fn edge_inserts_are_stored_and_answered_not_acked() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let reply = h
        .edged_call(op::INSERT, "default/volumeattachment/va1", json!({"spec": {}}))
        .await;
    assert_eq!(
        (reply.operation(), reply.content_str()),
        (op::RESPONSE, Some("OK"))
    );
    assert!(h.db_row("default/volumeattachment/va1").is_some());
    let reply = h
        .edged_call(op::DELETE, "default/volumeattachment/va1", Value::Null)
        .await;
    assert_eq!(reply.content_str(), Some("OK"));
    assert!(h.db_row("default/volumeattachment/va1").is_none());
    assert!(h.edged.try_recv().is_none() && h.cloud.try_recv().is_none());
    h.stop().await;
}

#[tokio::test]
async fn without_edged_objects_are_still_stored_and_acked() {
    let mut h = Harness::start(MetaManagerOptions::default());
    assert!(h.hive.cleanup(module::EDGED));
    let ins = cloud_msg(op::INSERT, "default/pod/lonely", pod("default", "lonely", "i"));
    h.deliver(ins.clone()).await;
    assert_ack(&recv(&mut h.cloud).await, &ins);
    assert!(h.db_row("default/pod/lonely").is_some());
    h.stop().await;
}
