//! SQL on the `device`, `device_attr` and `device_twin` tables (`shared/spec/edge-storage.md` §6).
//!
//! Runs inside [`ke_store::Store::call`], i.e. on the store's single writer thread. Every change
//! of one message is one `BEGIN IMMEDIATE … COMMIT`: a device is never half written. Unset text
//! columns are written as `''` (Go's zero string), except the values and value metadata of a
//! tombstoned twin, which are `NULL` as in v1.2.

use std::collections::BTreeMap;

use ke_store::rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::state::{Attr, Device, Side, Twin};
use crate::types::{TwinVersion, ValueMetadata};

type Sql<T> = ke_store::rusqlite::Result<T>;

/// Every device with its attributes and twins.
pub(crate) fn load_all(conn: &mut Connection) -> Sql<BTreeMap<String, Device>> {
    let mut devices = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, IFNULL(name,''), IFNULL(description,''), IFNULL(state,''), IFNULL(last_online,'') FROM device",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Device {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            state: r.get(3)?,
            last_online: r.get(4)?,
            ..Device::default()
        })
    })?;
    for d in rows {
        let d = d?;
        devices.insert(d.id.clone(), d);
    }
    let mut stmt = conn.prepare(
        "SELECT IFNULL(deviceid,''), IFNULL(name,''), IFNULL(value,''), IFNULL(optional,1), IFNULL(attr_type,''), IFNULL(metadata,'') FROM device_attr ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            Attr {
                value: r.get(2)?,
                optional: r.get::<_, i64>(3)? != 0,
                kind: r.get(4)?,
                metadata: r.get(5)?,
            },
        ))
    })?;
    for row in rows {
        let (dev, name, attr) = row?;
        if let Some(d) = devices.get_mut(&dev) {
            d.attrs.insert(name, attr);
        }
    }
    let mut stmt = conn.prepare(
        "SELECT IFNULL(deviceid,''), IFNULL(name,''), expected, actual, expected_meta, actual_meta, \
         IFNULL(expected_version,''), IFNULL(actual_version,''), IFNULL(optional,1), IFNULL(attr_type,''), IFNULL(metadata,'') \
         FROM device_twin ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let twin = Twin {
            expected: side(r.get(2)?, r.get(4)?),
            actual: side(r.get(3)?, r.get(5)?),
            expected_version: version(&r.get::<_, String>(6)?),
            actual_version: version(&r.get::<_, String>(7)?),
            optional: r.get::<_, i64>(8)? != 0,
            kind: r.get(9)?,
            metadata: r.get(10)?,
        };
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, twin))
    })?;
    for row in rows {
        let (dev, name, twin) = row?;
        if let Some(d) = devices.get_mut(&dev) {
            d.twins.insert(name, twin);
        }
    }
    Ok(devices)
}

/// A side is present when its value or its metadata was written. v1.2 dropped the actual
/// metadata when loading; it is kept here.
fn side(value: Option<String>, meta: Option<String>) -> Option<Side> {
    let value = value.unwrap_or_default();
    let meta = meta.unwrap_or_default();
    if value.is_empty() && meta.is_empty() {
        return None;
    }
    let ts = serde_json::from_str::<ValueMetadata>(&meta)
        .ok()
        .map(|m| m.timestamp)
        .filter(|t| *t != 0);
    Some(Side { value, ts })
}

fn version(text: &str) -> TwinVersion {
    serde_json::from_str(text).unwrap_or_default()
}

fn version_text(v: &TwinVersion) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn meta_text(s: &Side) -> String {
    s.ts.map(|timestamp| serde_json::to_string(&ValueMetadata { timestamp }).unwrap_or_default())
        .unwrap_or_default()
}

/// Writes devices and removes others, all in one transaction.
pub(crate) fn save(conn: &mut Connection, put: &[&Device], remove: &[String]) -> Sql<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for id in remove {
        tx.execute("DELETE FROM device_twin WHERE deviceid = ?1", [id])?;
        tx.execute("DELETE FROM device_attr WHERE deviceid = ?1", [id])?;
        tx.execute("DELETE FROM device WHERE id = ?1", [id])?;
    }
    for d in put {
        write_device(&tx, d)?;
    }
    tx.commit()
}

fn write_device(tx: &Transaction<'_>, d: &Device) -> Sql<()> {
    tx.execute(
        "INSERT INTO device (id, name, description, state, last_online) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT(id) DO UPDATE SET name = ?2, description = ?3, state = ?4, last_online = ?5",
        params![d.id, d.name, d.description, d.state, d.last_online],
    )?;
    // Attributes: drop the ones that are gone, update in place (keeping row ids), insert new.
    let stored: Vec<String> = {
        let mut s = tx.prepare("SELECT IFNULL(name,'') FROM device_attr WHERE deviceid = ?1")?;
        s.query_map([&d.id], |r| r.get(0))?.collect::<Sql<_>>()?
    };
    for name in stored.iter().filter(|n| !d.attrs.contains_key(*n)) {
        tx.execute(
            "DELETE FROM device_attr WHERE deviceid = ?1 AND name = ?2",
            params![d.id, name],
        )?;
    }
    for (name, a) in &d.attrs {
        let n = tx.execute(
            "UPDATE device_attr SET value = ?3, optional = ?4, attr_type = ?5, metadata = ?6 WHERE deviceid = ?1 AND name = ?2",
            params![d.id, name, a.value, a.optional, a.kind, a.metadata],
        )?;
        if n == 0 {
            tx.execute(
                "INSERT INTO device_attr (deviceid, name, description, value, optional, attr_type, metadata) VALUES (?1, ?2, '', ?3, ?4, ?5, ?6)",
                params![d.id, name, a.value, a.optional, a.kind, a.metadata],
            )?;
        }
    }
    let stored: Vec<String> = {
        let mut s = tx.prepare("SELECT IFNULL(name,'') FROM device_twin WHERE deviceid = ?1")?;
        s.query_map([&d.id], |r| r.get(0))?.collect::<Sql<_>>()?
    };
    for name in stored.iter().filter(|n| !d.twins.contains_key(*n)) {
        tx.execute(
            "DELETE FROM device_twin WHERE deviceid = ?1 AND name = ?2",
            params![d.id, name],
        )?;
    }
    for (name, t) in &d.twins {
        // Tombstones: NULL values and metadata; unset sides of live twins: ''.
        let (exp, exp_meta, act, act_meta): (Option<String>, Option<String>, Option<String>, Option<String>) =
            if t.is_deleted() {
                (None, None, None, None)
            } else {
                (
                    Some(t.expected.as_ref().map(|s| s.value.clone()).unwrap_or_default()),
                    Some(t.expected.as_ref().map(meta_text).unwrap_or_default()),
                    Some(t.actual.as_ref().map(|s| s.value.clone()).unwrap_or_default()),
                    Some(t.actual.as_ref().map(meta_text).unwrap_or_default()),
                )
            };
        let values = params![
            d.id,
            name,
            exp,
            act,
            exp_meta,
            act_meta,
            version_text(&t.expected_version),
            version_text(&t.actual_version),
            t.optional,
            t.kind,
            t.metadata
        ];
        let n = tx.execute(
            "UPDATE device_twin SET expected = ?3, actual = ?4, expected_meta = ?5, actual_meta = ?6, expected_version = ?7, \
             actual_version = ?8, optional = ?9, attr_type = ?10, metadata = ?11 WHERE deviceid = ?1 AND name = ?2",
            values,
        )?;
        if n == 0 {
            tx.execute(
                "INSERT INTO device_twin (deviceid, name, description, expected, actual, expected_meta, actual_meta, \
                 expected_version, actual_version, optional, attr_type, metadata) VALUES (?1, ?2, '', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                values,
            )?;
        }
    }
    Ok(())
}
