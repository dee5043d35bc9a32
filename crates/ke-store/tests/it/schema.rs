use std::collections::BTreeMap;
use std::path::PathBuf;

use ke_store::{Store, StoreOptions, rusqlite};

fn ground_truth() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ground-truth/edgecore-db-schema.sql");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read ground truth {}: {e}", path.display()));
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| (table_name(s), s.to_owned()))
        .collect()
}

fn table_name(ddl: &str) -> String {
    let rest = ddl.trim_start_matches("CREATE TABLE").trim_start();
    rest.split(['(', ' '])
        .next()
        .unwrap_or("")
        .trim_matches('`')
        .to_owned()
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn schema_of(path: &std::path::Path) -> BTreeMap<String, String> {
    let c = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut st = c
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
        .unwrap_or_else(|e| panic!("{e}"));
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn tables_match_the_v1_2_ground_truth() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The parent directory does not exist yet: open creates it.
    let path = dir.path().join("var/lib/kubeedge/edgecore.db");
    let store = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let want = ground_truth();
    assert_eq!(
        want.keys().map(String::as_str).collect::<Vec<_>>(),
        ["device", "device_attr", "device_twin", "meta", "sqlite_sequence"]
    );
    let got = schema_of(&path);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "same set of tables"
    );
    for (name, ddl) in &want {
        assert_eq!(normalise(&got[name]), normalise(ddl), "DDL of {name}");
        // Not only modulo whitespace: the text is byte-identical.
        assert_eq!(&got[name], ddl, "DDL text of {name}");
    }
    let mode: String = rusqlite::Connection::open(&path)
        .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode, "wal");
    assert!(store.close().await);

    // Reopening an existing database keeps it as it is ("create if not exists").
    let again = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema_of(&path), got);
    assert!(again.close().await);
}

#[tokio::test]
async fn disabled_modules_get_no_tables() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("meta-only.db");
    let opts = StoreOptions {
        device_tables: false,
        ..StoreOptions::default()
    };
    let store = Store::open_with(&path, opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(schema_of(&path).keys().collect::<Vec<_>>(), ["meta"]);
    assert!(store.close().await);
}

#[tokio::test]
async fn open_failure_names_the_directory() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
    let err = Store::open(file.join("edgecore.db"))
        .err()
        .unwrap_or_else(|| panic!("open under a regular file must fail"));
    assert!(matches!(err, ke_store::Error::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}
