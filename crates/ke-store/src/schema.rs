//! The exact KubeEdge v1.2.1 DDL (`shared/ground-truth/edgecore-db-schema.sql`).
//!
//! The constants are the text SQLite keeps in `sqlite_master.sql`; tables are created with the
//! same text plus `IF NOT EXISTS` after `CREATE TABLE` (SQLite removes that clause when it stores
//! the statement, so `sqlite_master` matches the ground truth byte for byte).

/// The `meta` table used by metaManager.
pub const META_DDL: &str = "CREATE TABLE `meta` (
    `key` varchar(256) NOT NULL PRIMARY KEY,
    `type` varchar(32) NOT NULL DEFAULT '' ,
    `value` text
)";

/// The `device` table used by the device twin.
pub const DEVICE_DDL: &str = "CREATE TABLE `device` (
    `id` varchar(64) NOT NULL PRIMARY KEY,
    `name` text,
    `description` text,
    `state` text,
    `last_online` text
)";

/// The `device_attr` table used by the device twin.
pub const DEVICE_ATTR_DDL: &str = "CREATE TABLE `device_attr` (
    `id` integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    `deviceid` text,
    `name` text,
    `description` text,
    `value` text,
    `optional` bool,
    `attr_type` text,
    `metadata` text
)";

/// The `device_twin` table used by the device twin.
pub const DEVICE_TWIN_DDL: &str = "CREATE TABLE `device_twin` (
    `id` integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    `deviceid` text,
    `name` text,
    `description` text,
    `expected` text,
    `actual` text,
    `expected_meta` text,
    `actual_meta` text,
    `expected_version` text,
    `actual_version` text,
    `optional` bool,
    `attr_type` text,
    `metadata` text
)";

/// Device twin tables in the order v1.2.1 creates them.
pub const DEVICE_TABLES: [(&str, &str); 3] = [
    ("device", DEVICE_DDL),
    ("device_attr", DEVICE_ATTR_DDL),
    ("device_twin", DEVICE_TWIN_DDL),
];

/// `CREATE TABLE IF NOT EXISTS …` for one of the constants above.
pub(crate) fn create_if_missing(ddl: &str) -> String {
    ddl.replacen("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ", 1)
}
