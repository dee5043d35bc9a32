use ke_store::{MetaRow, Store, rusqlite};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = ok(tempfile::tempdir());
    let store = ok(Store::open(dir.path().join("edgecore.db")));
    (dir, store)
}

#[tokio::test]
async fn upsert_reports_changes_and_identical_writes_are_no_ops() {
    let (_dir, s) = temp_store();
    assert!(ok(s.insert_or_update("default/pod/a", "pod", r#"{"v":1}"#).await));
    assert!(!ok(s
        .insert_or_update("default/pod/a", "pod", r#"{"v":1}"#)
        .await));
    assert!(ok(s.insert_or_update("default/pod/a", "pod", r#"{"v":2}"#).await));
    // A type change with the same value is a change too.
    assert!(ok(s
        .insert_or_update("default/pod/a", "podx", r#"{"v":2}"#)
        .await));
    assert_eq!(
        ok(s.get("default/pod/a").await),
        Some(MetaRow::new("default/pod/a", "podx", r#"{"v":2}"#))
    );
    assert_eq!(ok(s.get("default/pod/missing").await), None);

    let rows = vec![
        MetaRow::new("ns1/service/s1", "service", "1"),
        MetaRow::new("ns2/service/s2", "service", "2"),
        MetaRow::new("ns1/service/s1", "service", "1"),
    ];
    assert_eq!(ok(s.insert_or_update_many(rows).await), 2);
    assert_eq!(
        ok(
            s.insert_or_update_many(vec![MetaRow::new("ns2/service/s2", "service", "2")])
                .await
        ),
        0
    );
}

#[tokio::test]
async fn queries_by_type_and_prefix_and_deletes() {
    let (_dir, s) = temp_store();
    for (k, t) in [
        ("b/pod/x", "pod"),
        ("a/pod/y", "pod"),
        ("a/configmap/c", "configmap"),
        ("a/podstatus/y", "podstatus"),
    ] {
        assert!(ok(s.insert_or_update(k, t, format!("\"{k}\"")).await));
    }
    let pods = ok(s.query_by_type("pod").await);
    assert_eq!(
        pods.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["a/pod/y", "b/pod/x"],
        "all namespaces, ordered by key"
    );
    assert_eq!(pods[0].value, "\"a/pod/y\"");
    let a_pods = ok(s.query_prefix("a/pod").await);
    assert_eq!(
        a_pods.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        ["a/pod/y", "a/podstatus/y"]
    );
    assert_eq!(ok(s.query_prefix("a/pod/").await).len(), 1);
    // LIKE metacharacters are not wildcards.
    assert!(ok(s.query_prefix("a/%").await).is_empty());

    assert!(ok(s.delete("a/pod/y").await));
    assert!(!ok(s.delete("a/pod/y").await));
    assert_eq!(
        ok(
            s.delete_many(vec!["b/pod/x".into(), "nope".into(), "a/configmap/c".into()])
                .await
        ),
        2
    );
    assert!(ok(s.query_by_type("pod").await).is_empty());
}

#[tokio::test]
async fn null_value_reads_as_empty_and_call_gives_raw_access() {
    let (_dir, s) = temp_store();
    ok(ok(s
        .call(|c| c.execute("INSERT INTO meta (`key`, `type`) VALUES ('k', 't')", []))
        .await));
    assert_eq!(ok(s.get("k").await), Some(MetaRow::new("k", "t", "")));
    // The device tables are there for the twin to use through `call`.
    let n = ok(ok(s
        .call(|c| {
            c.execute(
                "INSERT INTO device (id, name, description, state, last_online) VALUES ('d', 'd', '', 'online', '')",
                [],
            )?;
            c.query_row("SELECT count(*) FROM device", [], |r| r.get::<_, i64>(0))
        })
        .await));
    assert_eq!(n, 1);
    // Synchronous callers.
    let s2 = s.clone();
    let got = ok(
        std::thread::spawn(move || s2.call_blocking(|c| c.is_autocommit()))
            .join()
            .map_err(|_| "thread panicked"),
    );
    assert!(ok(got));
}

#[tokio::test]
async fn a_panicking_job_does_not_kill_the_writer() {
    let (_dir, s) = temp_store();
    let r: ke_store::Result<()> = s.call(|_| panic!("job panics on purpose")).await;
    assert!(matches!(r, Err(ke_store::Error::Closed { .. })), "{r:?}");
    assert!(ok(s.insert_or_update("k", "t", "v").await));
}

#[tokio::test]
async fn committed_writes_survive_a_crash_and_a_restart() {
    let dir = ok(tempfile::tempdir());
    let path = dir.path().join("edgecore.db");
    let s = ok(Store::open(&path));
    assert!(ok(s.insert_or_update("default/pod/p", "pod", "{}").await));
    assert!(ok(s
        .insert_or_update("default/configmap/c", "configmap", "{\"a\":1}")
        .await));
    assert!(ok(s.delete("default/pod/p").await));

    // Crash image: copy the files as they are on disk *now*, while the writer still holds the
    // database open (no clean close, no checkpoint), and open the copy.
    let crash = dir.path().join("crash");
    ok(std::fs::create_dir(&crash));
    for suffix in ["", "-wal"] {
        let from = dir.path().join(format!("edgecore.db{suffix}"));
        ok(std::fs::copy(&from, crash.join(format!("edgecore.db{suffix}"))));
    }
    let c = ok(rusqlite::Connection::open(crash.join("edgecore.db")));
    let rows: Vec<(String, String)> = ok(c
        .prepare("SELECT `key`, `value` FROM meta ORDER BY `key`")
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()));
    assert_eq!(rows, [("default/configmap/c".to_owned(), "{\"a\":1}".to_owned())]);
    drop(c);

    // Clean restart.
    let clone = s.clone();
    assert!(!clone.close().await, "another handle is alive: nothing closed");
    assert!(s.close().await);
    let s = ok(Store::open(&path));
    assert_eq!(
        ok(s.get("default/configmap/c").await).map(|r| r.value),
        Some("{\"a\":1}".to_owned())
    );
    assert_eq!(ok(s.get("default/pod/p").await), None);
    assert!(s.close().await);
}
