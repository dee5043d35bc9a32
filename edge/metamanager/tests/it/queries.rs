//! Local and remote queries.

use std::time::Duration;

use ke_core::Message;
use ke_core::names::{group, module, op};
use metamanager::MetaManagerOptions;
use serde_json::{Value, json};

use crate::harness::{Harness, assert_ack, cloud_msg, ok, pod, recv};

fn strings(v: &Value) -> Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("content is not an array: {v}"))
        .iter()
        .map(|s| {
            let text = s
                .as_str()
                .unwrap_or_else(|| panic!("element is not a string: {s}"));
            ok(serde_json::from_str(text))
        })
        .collect()
}

#[tokio::test]
async fn local_queries_answer_from_the_db() {
    let mut h = Harness::start(MetaManagerOptions::default());
    let pods = [("default", "a"), ("kube-system", "b")];
    for (ns, name) in pods {
        h.deliver(cloud_msg(
            op::INSERT,
            &format!("{ns}/pod/{name}"),
            pod(ns, name, "i"),
        ))
        .await;
        recv(&mut h.cloud).await;
        recv(&mut h.edged).await;
    }
    // List: every namespace (v1.2 semantics), strings of stored JSON, source metaManager.
    let req = Message::new(module::EDGED, group::META, op::QUERY, "default/pod", Value::Null);
    let reply = ok(h
        .hive
        .send_sync(module::META_MANAGER, req.clone(), Duration::from_secs(20))
        .await);
    assert_eq!(reply.parent_id(), req.id());
    assert_eq!(
        (reply.operation(), reply.source()),
        (op::RESPONSE, module::META_MANAGER)
    );
    assert_eq!(
        strings(&reply.content),
        [pod("default", "a", "i"), pod("kube-system", "b", "i")]
    );

    let one = h.edged_call(op::QUERY, "kube-system/pod/b", Value::Null).await;
    assert_eq!(strings(&one.content), [pod("kube-system", "b", "i")]);
    let none = h.edged_call(op::QUERY, "default/pod/zzz", Value::Null).await;
    assert_eq!(none.content, json!([]));

    // Asynchronous request: the answer goes to the requesting module.
    let req = Message::new(
        module::EDGED,
        group::META,
        op::QUERY,
        "default/pod/a",
        Value::Null,
    );
    h.deliver(req.clone()).await;
    let answer = recv(&mut h.edged).await;
    assert_eq!((answer.parent_id(), answer.operation()), (req.id(), op::RESPONSE));
    assert!(
        h.cloud.try_recv().is_none(),
        "local queries never reach the cloud"
    );
    h.stop().await;
}

#[tokio::test]
async fn remote_query_stores_acks_and_answers_and_then_serves_locally() {
    let mut h = Harness::start(MetaManagerOptions::default());
    h.set_connected(true).await;
    let hive = h.hive.clone();
    let req = Message::new(
        module::EDGED,
        group::META,
        op::QUERY,
        "default/configmap/cfg",
        Value::Null,
    );
    let caller = {
        let req = req.clone();
        tokio::spawn(async move {
            hive.send_sync(module::META_MANAGER, req, Duration::from_secs(20))
                .await
        })
    };
    // The fake cloud sees the re-id'd query, with the original source kept.
    let up = recv(&mut h.cloud).await;
    assert_ne!(up.id(), req.id());
    assert_eq!(
        (up.source(), up.group(), up.operation(), up.resource()),
        (module::EDGED, group::META, op::QUERY, "default/configmap/cfg")
    );
    assert!(up.header.sync);
    let cm =
        json!({"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}});
    let answer = cloud_msg(op::RESPONSE, "default/configmap/cfg", cm.clone()).with_parent(up.id());
    ok(h.hive.send_resp(answer.clone()));

    let reply = ok(ok(caller.await));
    assert_eq!(reply.parent_id(), req.id(), "re-parented to the edged request");
    assert_eq!(reply.content, cm, "the cloud's bare object");
    let ack = recv(&mut h.cloud).await;
    assert_ack(&ack, &answer);
    let row = h
        .db_row("default/configmap/cfg")
        .unwrap_or_else(|| panic!("answer not stored at ack time"));
    assert_eq!(
        (row.1.as_str(), ok(serde_json::from_str::<Value>(&row.2))),
        ("configmap", cm.clone())
    );

    // Stored now: served from the DB without asking the cloud.
    let again = h
        .edged_call(op::QUERY, "default/configmap/cfg", Value::Null)
        .await;
    assert_eq!(again.source(), module::META_MANAGER);
    assert_eq!(strings(&again.content), [cm]);
    assert!(h.cloud.try_recv().is_none());
    h.stop().await;
}

#[tokio::test]
async fn node_queries_always_go_to_the_cloud_while_connected() {
    let mut h = Harness::start(MetaManagerOptions::default());
    h.set_connected(true).await;
    let hive = h.hive.clone();
    let first = tokio::spawn(async move {
        let req = Message::new(
            module::EDGED,
            group::META,
            op::QUERY,
            "default/node/n1",
            Value::Null,
        );
        hive.send_sync(module::META_MANAGER, req, Duration::from_secs(20))
            .await
    });
    let up = recv(&mut h.cloud).await;
    let node = json!({"kind": "Node", "metadata": {"name": "n1"}});
    ok(h.hive
        .send_resp(cloud_msg(op::RESPONSE, "default/node/n1", node.clone()).with_parent(up.id())));
    assert_eq!(ok(ok(first.await)).content, node);
    recv(&mut h.cloud).await; // ack
    assert!(h.db_row("default/node/n1").is_some());

    let hive = h.hive.clone();
    let second = tokio::spawn(async move {
        let req = Message::new(
            module::EDGED,
            group::META,
            op::QUERY,
            "default/node/n1",
            Value::Null,
        );
        hive.send_sync(module::META_MANAGER, req, Duration::from_secs(20))
            .await
    });
    let up = recv(&mut h.cloud).await;
    assert_eq!(
        up.operation(),
        op::QUERY,
        "stored, but node is still asked remotely"
    );
    ok(h.hive
        .send_resp(cloud_msg(op::RESPONSE, "default/node/n1", node.clone()).with_parent(up.id())));
    assert_eq!(ok(ok(second.await)).content, node);
    h.stop().await;
}

#[tokio::test]
async fn remote_query_timeout_is_an_error_reply_not_a_hang() {
    let opts = MetaManagerOptions {
        remote_query_timeout: Duration::from_millis(200),
        ..MetaManagerOptions::default()
    };
    let mut h = Harness::start(opts);
    h.set_connected(true).await;
    let hive = h.hive.clone();
    let req = Message::new(
        module::EDGED,
        group::META,
        op::QUERY,
        "default/secret/s",
        Value::Null,
    );
    let caller = {
        let req = req.clone();
        tokio::spawn(async move {
            hive.send_sync(module::META_MANAGER, req, Duration::from_secs(20))
                .await
        })
    };
    let up = recv(&mut h.cloud).await;
    assert_eq!(up.resource(), "default/secret/s");
    // The cloud never answers.
    let reply = ok(ok(caller.await));
    assert_eq!(reply.operation(), op::ERROR);
    assert_eq!(reply.parent_id(), req.id());
    assert!(
        reply
            .content_str()
            .is_some_and(|t| t.contains("default/secret/s")),
        "{}",
        reply.content
    );
    assert_eq!(h.db_row("default/secret/s"), None);

    // Meanwhile and afterwards the module keeps serving.
    let pods = h.edged_call(op::QUERY, "default/pod", Value::Null).await;
    assert_eq!(pods.content, json!([]));
    h.stop().await;
}

#[tokio::test]
async fn disconnected_queries_use_the_db_or_fail() {
    let mut h = Harness::start(MetaManagerOptions::default());
    // Initially disconnected.
    let reply = h
        .edged_call(op::QUERY, "default/configmap/missing", Value::Null)
        .await;
    assert_eq!(
        (reply.operation(), reply.source()),
        (op::ERROR, module::META_MANAGER)
    );
    assert!(
        reply.content_str().is_some_and(|t| t.contains("disconnected")),
        "{}",
        reply.content
    );
    assert!(
        h.cloud.try_recv().is_none(),
        "nothing sent to a disconnected cloud"
    );

    let cm = json!({"metadata": {"name": "c"}});
    h.deliver(cloud_msg(op::INSERT, "default/configmap/c", cm.clone()))
        .await;
    recv(&mut h.cloud).await;
    recv(&mut h.edged).await;
    h.set_connected(true).await;
    h.set_connected(false).await;
    let reply = h.edged_call(op::QUERY, "default/configmap/c", Value::Null).await;
    assert_eq!(strings(&reply.content), [cm]);
    // node is asked remotely only while connected; offline it comes from the DB (empty list).
    let reply = h.edged_call(op::QUERY, "default/node", Value::Null).await;
    assert_eq!(reply.content, json!([]));
    h.stop().await;
}
