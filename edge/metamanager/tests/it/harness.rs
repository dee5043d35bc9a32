use std::path::PathBuf;
use std::time::Duration;

use ke_beehive::{Beehive, Core, Mailbox};
use ke_core::Message;
use ke_core::names::{group, module, op, res};
use ke_store::Store;
use metamanager::{MetaManager, MetaManagerOptions};
use serde_json::Value;

/// Upper bound for "a message must arrive": generous, only a hang ever reaches it.
const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) struct Harness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) hive: Beehive,
    pub(crate) core: Option<Core>,
    pub(crate) store: Store,
    /// Fake edgehub: module `websocket`, group `hub` — everything sent to the cloud lands here.
    pub(crate) cloud: Mailbox,
    pub(crate) edged: Mailbox,
}

impl Harness {
    pub(crate) fn start(opts: MetaManagerOptions) -> Self {
        let dir = ok(tempfile::tempdir());
        Self::start_in(dir, opts)
    }

    pub(crate) fn start_in(dir: tempfile::TempDir, opts: MetaManagerOptions) -> Self {
        let store = ok(Store::open(dir.path().join("kubeedge/edgecore.db")));
        let hive = Beehive::default();
        let cloud = ok(hive.register(module::EDGEHUB, group::HUB));
        let edged = ok(hive.register(module::EDGED, group::EDGED));
        let mut core = Core::new(hive.clone());
        assert_eq!(core.register(MetaManager::new(opts, store.clone())), Ok(true));
        core.start();
        Self {
            dir,
            hive,
            core: Some(core),
            store,
            cloud,
            edged,
        }
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("kubeedge/edgecore.db")
    }

    /// Stops the module and closes the database; returns the directory for a restart.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(core) = self.core.take() {
            core.shutdown().await;
        }
        assert!(self.store.close().await, "module must not keep the store alive");
        self.dir
    }

    /// Delivers `msg` to group `meta` as edgehub does.
    pub(crate) async fn deliver(&self, msg: Message) {
        assert_eq!(ok(self.hive.send_to_group(group::META, msg).await), 1);
    }

    pub(crate) async fn set_connected(&self, up: bool) {
        let content = if up {
            res::CLOUD_CONNECTED
        } else {
            res::CLOUD_DISCONNECTED
        };
        self.deliver(Message::new(
            module::EDGEHUB_EVENTS,
            group::META,
            op::PUBLISH,
            res::NODE_CONNECTION,
            content,
        ))
        .await;
    }

    /// edged's synchronous call to metaManager.
    pub(crate) async fn edged_call(&self, operation: &str, resource: &str, content: Value) -> Message {
        let req = Message::new(module::EDGED, group::META, operation, resource, content);
        ok(self.hive.send_sync(module::META_MANAGER, req, WAIT).await)
    }

    /// The row as another process sees it: a separate connection, positional columns.
    pub(crate) fn db_row(&self, key: &str) -> Option<(String, String, String)> {
        let c = ok(rusqlite::Connection::open(self.db_path()));
        let mut st = ok(c.prepare("SELECT * FROM meta WHERE `key` = ?1"));
        let mut rows = ok(st.query_map([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))));
        rows.next().map(ok)
    }
}

pub(crate) async fn recv(mb: &mut Mailbox) -> Message {
    match tokio::time::timeout(WAIT, mb.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("mailbox {} closed", mb.module()),
        Err(_) => panic!("nothing arrived at {} in {WAIT:?}", mb.module()),
    }
}

/// A cloud object message as edgehub delivers it.
pub(crate) fn cloud_msg(operation: &str, resource: &str, content: Value) -> Message {
    Message::new(
        module::EDGECONTROLLER,
        group::RESOURCE,
        operation,
        resource,
        content,
    )
    .with_resource_version("42")
}

pub(crate) fn pod(ns: &str, name: &str, image: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": image}]}
    })
}

/// Asserts `m` is the ack of `of`.
pub(crate) fn assert_ack(m: &Message, of: &Message) {
    assert_eq!(m.operation(), op::RESPONSE, "{m}");
    assert_eq!(m.parent_id(), of.id(), "{m}");
    assert_eq!(m.content, Value::String("OK".into()));
    assert_eq!(
        (m.source(), m.group(), m.resource()),
        (of.source(), of.group(), of.resource())
    );
}
