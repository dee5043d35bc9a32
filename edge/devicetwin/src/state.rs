//! The in-memory device model and the pure twin merge rules (`shared/spec/mqtt.md` §4–§6).
//!
//! Every function here works on a *copy* of a device: the caller persists the copy in one SQLite
//! transaction and only then replaces the live state, so a failed write or a rejected request
//! leaves nothing half-applied.

use std::collections::BTreeMap;

use crate::types::{
    MsgAttr, MsgDevice, MsgTwin, TwinDoc, TwinValue, TwinVersion, TypeMetadata, ValueMetadata,
};

/// `attr_type` of a tombstoned twin.
pub(crate) const DELETED: &str = "deleted";
/// Default value type.
pub(crate) const STRING: &str = "string";

/// One side (expected or actual) of a stored twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side {
    pub(crate) value: String,
    /// Edge time of storage; `None` only for actual values of twins added by membership (v1.2
    /// shows them without metadata).
    pub(crate) ts: Option<i64>,
}

impl Side {
    fn msg(&self) -> TwinValue {
        TwinValue {
            value: Some(self.value.clone()),
            metadata: self.ts.map(|timestamp| ValueMetadata { timestamp }),
        }
    }
}

/// A stored twin property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Twin {
    pub(crate) expected: Option<Side>,
    pub(crate) actual: Option<Side>,
    pub(crate) expected_version: TwinVersion,
    pub(crate) actual_version: TwinVersion,
    pub(crate) optional: bool,
    pub(crate) kind: String,
    /// JSON of the twin metadata without `type` (column `metadata`), normally `{}`.
    pub(crate) metadata: String,
}

impl Twin {
    fn new(kind: &str, optional: bool) -> Self {
        Self {
            expected: None,
            actual: None,
            expected_version: TwinVersion::default(),
            actual_version: TwinVersion::default(),
            optional,
            kind: kind.to_owned(),
            metadata: "{}".to_owned(),
        }
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.kind == DELETED
    }

    fn tombstone(&mut self) {
        self.expected = None;
        self.actual = None;
        self.kind = DELETED.to_owned();
    }

    /// What devices see: no versions; `None` for a tombstone.
    pub(crate) fn msg(&self) -> Option<MsgTwin> {
        (!self.is_deleted()).then(|| MsgTwin {
            expected: self.expected.as_ref().map(Side::msg),
            actual: self.actual.as_ref().map(Side::msg),
            optional: Some(self.optional),
            metadata: Some(TypeMetadata {
                kind: self.kind.clone(),
            }),
            expected_version: None,
            actual_version: None,
        })
    }

    /// What the cloud sees: values and versions.
    pub(crate) fn msg_with_versions(&self) -> MsgTwin {
        MsgTwin {
            expected: self.expected.as_ref().map(Side::msg),
            actual: self.actual.as_ref().map(Side::msg),
            optional: Some(self.optional),
            metadata: Some(TypeMetadata {
                kind: self.kind.clone(),
            }),
            expected_version: Some(self.expected_version),
            actual_version: Some(self.actual_version),
        }
    }
}

/// A stored attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) value: String,
    pub(crate) optional: bool,
    pub(crate) kind: String,
    pub(crate) metadata: String,
}

impl Attr {
    pub(crate) fn from_msg(a: &MsgAttr) -> Self {
        let kind = a.metadata.as_ref().map(|m| m.kind.as_str()).unwrap_or_default();
        Self {
            value: a.value.clone(),
            optional: a.optional.unwrap_or(true),
            kind: if kind.is_empty() { STRING } else { kind }.to_owned(),
            metadata: "{}".to_owned(),
        }
    }

    pub(crate) fn msg(&self) -> MsgAttr {
        MsgAttr {
            value: self.value.clone(),
            optional: Some(self.optional),
            metadata: Some(TypeMetadata {
                kind: self.kind.clone(),
            }),
        }
    }
}

/// A device bound to this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Device {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) state: String,
    pub(crate) last_online: String,
    pub(crate) attrs: BTreeMap<String, Attr>,
    pub(crate) twins: BTreeMap<String, Twin>,
}

impl Device {
    /// The entry of `membership/get/result`: no twins.
    pub(crate) fn msg_without_twins(&self) -> MsgDevice {
        MsgDevice {
            id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            state: self.state.clone(),
            last_online: self.last_online.clone(),
            attributes: self
                .attrs
                .iter()
                .map(|(k, a)| (k.clone(), Some(a.msg())))
                .collect(),
            twin: BTreeMap::new(),
        }
    }

    /// Every live twin, without versions (`twin/get/result`).
    pub(crate) fn twin_msgs(&self) -> BTreeMap<String, Option<MsgTwin>> {
        self.twins
            .iter()
            .filter_map(|(k, t)| t.msg().map(|m| (k.clone(), Some(m))))
            .collect()
    }

    /// The `twin` and `delta` maps of `twin/update/delta`; `None` when nothing differs.
    pub(crate) fn delta(&self) -> Option<(BTreeMap<String, MsgTwin>, BTreeMap<String, String>)> {
        let mut twin = BTreeMap::new();
        let mut delta = BTreeMap::new();
        for (k, t) in &self.twins {
            let (Some(exp), Some(m)) = (&t.expected, t.msg()) else {
                continue;
            };
            twin.insert(k.clone(), m);
            if !exp.value.is_empty() && t.actual.as_ref().map(|a| &a.value) != Some(&exp.value) {
                delta.insert(k.clone(), exp.value.clone());
            }
        }
        (!delta.is_empty()).then_some((twin, delta))
    }
}

/// Why a local twin update is refused as a whole (code 400 on the device's result topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

/// What a local (MQTT) update changed.
#[derive(Debug, Default)]
pub(crate) struct LocalOutcome {
    /// `twin/update/result`: changed sides only, no versions; `null` for deletions.
    pub(crate) result: BTreeMap<String, Option<MsgTwin>>,
    /// `twin/update/document`.
    pub(crate) document: BTreeMap<String, TwinDoc>,
    /// `edge_updated` to the cloud: changed sides with their versions.
    pub(crate) cloud: BTreeMap<String, Option<MsgTwin>>,
}

/// Characters v1.2 allows in twin keys and values (`^[a-zA-Z0-9-_.,:/@#]{1,N}$`).
fn valid_chars(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@#".contains(&b))
}

/// A twin key as v1.2 accepts it.
pub(crate) fn valid_key(key: &str) -> bool {
    valid_chars(key, 128)
}

/// A non-empty twin value as v1.2 accepts it.
pub(crate) fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_chars(v, 512)
}

/// Types a twin may declare.
pub(crate) fn valid_kind(kind: &str) -> bool {
    matches!(kind, "" | STRING | "int" | "float" | "boolean" | DELETED)
}

/// Whether `v` is a value of type `kind` (empty values are always accepted).
pub(crate) fn value_fits(kind: &str, v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    match kind {
        "int" => v.parse::<i64>().is_ok(),
        "float" => v.parse::<f64>().is_ok(),
        "boolean" => matches!(v, "true" | "false"),
        _ => true,
    }
}

fn side_value(v: Option<&TwinValue>) -> Option<&str> {
    v.and_then(|v| v.value.as_deref())
}

/// Applies a `twin/update` from a device or application to `dev`. Local changes bump the `edge`
/// component of the side's version and are never refused because of versions.
pub(crate) fn apply_local(
    dev: &mut Device,
    update: &BTreeMap<String, Option<MsgTwin>>,
    now: i64,
) -> Result<LocalOutcome, Invalid> {
    let mut out = LocalOutcome::default();
    for (key, msg) in update {
        let Some(m) = msg else {
            // Delete: only live, optional twins.
            if let Some(t) = dev.twins.get_mut(key).filter(|t| !t.is_deleted() && t.optional) {
                let last = t.msg();
                t.tombstone();
                out.result.insert(key.clone(), None);
                out.cloud.insert(key.clone(), None);
                out.document.insert(key.clone(), TwinDoc { last, current: None });
            }
            continue;
        };
        let live = dev.twins.get(key).filter(|t| !t.is_deleted()).cloned();
        let (mut twin, last) = match live {
            Some(t) => {
                let last = t.msg();
                (t, last)
            }
            None => {
                let kind = m.kind().unwrap_or_default();
                if kind == DELETED {
                    continue; // deleting a twin that is not there
                }
                if !valid_kind(kind) {
                    return Err(Invalid(format!(
                        "the type {kind:?} of twin {key} is not one of int, float, boolean, string"
                    )));
                }
                let kind = if kind.is_empty() { STRING } else { kind };
                let mut t = Twin::new(kind, m.optional.unwrap_or(true));
                // Re-creating a tombstone keeps its versions: they only ever grow.
                if let Some(old) = dev.twins.get(key) {
                    t.expected_version = old.expected_version;
                    t.actual_version = old.actual_version;
                }
                (t, None)
            }
        };
        let created = last.is_none();
        let mut changed = MsgTwin {
            optional: Some(twin.optional),
            ..MsgTwin::default()
        };
        let mut cloud = changed.clone();
        let mut any = created;
        for expected in [true, false] {
            let Some(v) = side_value(if expected {
                m.expected.as_ref()
            } else {
                m.actual.as_ref()
            }) else {
                continue;
            };
            let (side, version) = if expected {
                (&mut twin.expected, &mut twin.expected_version)
            } else {
                (&mut twin.actual, &mut twin.actual_version)
            };
            if side.as_ref().is_some_and(|s| s.value == v) {
                continue;
            }
            // v1.2 skipped this check for the first value of a side on an existing twin.
            if !value_fits(&twin.kind, v) {
                return Err(Invalid(format!(
                    "the value {v:?} of twin {key} is not of type {}",
                    twin.kind
                )));
            }
            *side = Some(Side {
                value: v.to_owned(),
                ts: Some(now),
            });
            // Saturating: a cloud message may set the edge version to i64::MAX; wrapping would
            // make versions go backwards (found by the twin_payload fuzz target).
            version.edge = version.edge.saturating_add(1);
            let (msg, ver) = (side.as_ref().map(Side::msg), Some(*version));
            if expected {
                changed.expected = msg.clone();
                cloud.expected = msg;
                cloud.expected_version = ver;
            } else {
                changed.actual = msg.clone();
                cloud.actual = msg;
                cloud.actual_version = ver;
            }
            any = true;
        }
        if m.optional == Some(false) && twin.optional {
            twin.optional = false;
            changed.optional = Some(false);
            cloud.optional = Some(false);
            any = true;
        }
        if !any {
            continue;
        }
        let meta = Some(TypeMetadata {
            kind: twin.kind.clone(),
        });
        changed.metadata = meta.clone();
        cloud.metadata = meta;
        out.result.insert(key.clone(), Some(changed));
        out.cloud.insert(key.clone(), Some(cloud));
        out.document.insert(
            key.clone(),
            TwinDoc {
                last,
                current: twin.msg(),
            },
        );
        dev.twins.insert(key.clone(), twin);
    }
    Ok(out)
}

/// What a cloud change (`cloud_updated`, membership add) changed.
#[derive(Debug, Default)]
pub(crate) struct CloudOutcome {
    /// `twin/update/document`.
    pub(crate) document: BTreeMap<String, TwinDoc>,
    /// Twins whose change was refused (stale or missing version); their edge state goes back.
    pub(crate) rejected: Vec<String>,
    /// Whether anything must be written (values or versions).
    pub(crate) dirty: bool,
}

/// Applies a change from the cloud: a side is taken iff it carries a version that is not older
/// than the stored one in both components; then the stored version becomes the incoming one.
/// `actual_ts` is false for membership adds, whose actual values v1.2 shows without metadata.
pub(crate) fn apply_cloud(
    dev: &mut Device,
    update: &BTreeMap<String, Option<MsgTwin>>,
    now: i64,
    actual_ts: bool,
) -> CloudOutcome {
    let mut out = CloudOutcome::default();
    for (key, msg) in update {
        let deleting = msg.as_ref().is_none_or(|m| m.kind() == Some(DELETED));
        if deleting {
            if let Some(t) = dev.twins.get_mut(key).filter(|t| !t.is_deleted()) {
                let last = t.msg();
                t.tombstone();
                if let Some(m) = msg {
                    t.expected_version = m.expected_version.unwrap_or(t.expected_version);
                    t.actual_version = m.actual_version.unwrap_or(t.actual_version);
                }
                out.document.insert(key.clone(), TwinDoc { last, current: None });
                out.dirty = true;
            }
            continue;
        }
        let Some(m) = msg else { continue };
        let stored = dev.twins.get(key);
        let live = stored.filter(|t| !t.is_deleted()).cloned();
        let created = live.is_none();
        let last = live.as_ref().and_then(Twin::msg);
        let mut twin = match live {
            Some(t) => t,
            None => {
                let kind = m.kind().unwrap_or_default();
                if !valid_kind(kind) {
                    out.rejected.push(key.clone());
                    continue;
                }
                let mut t = Twin::new(
                    if kind.is_empty() { STRING } else { kind },
                    m.optional.unwrap_or(true),
                );
                if let Some(old) = stored {
                    t.expected_version = old.expected_version;
                    t.actual_version = old.actual_version;
                }
                t
            }
        };
        let mut ok = true;
        let mut changed = created;
        for expected in [true, false] {
            let (given, incoming) = if expected {
                (m.expected.as_ref(), m.expected_version)
            } else {
                (m.actual.as_ref(), m.actual_version)
            };
            let Some(v) = side_value(given) else { continue };
            let (side, version) = if expected {
                (&mut twin.expected, &mut twin.expected_version)
            } else {
                (&mut twin.actual, &mut twin.actual_version)
            };
            let Some(incoming) = incoming.filter(|r| version.accepts(r)) else {
                ok = false;
                break;
            };
            if *version != incoming {
                *version = incoming;
                out.dirty = true;
            }
            if side.as_ref().is_some_and(|s| s.value == v) {
                continue;
            }
            *side = Some(Side {
                value: v.to_owned(),
                ts: (expected || actual_ts).then_some(now),
            });
            changed = true;
        }
        if !ok {
            out.rejected.push(key.clone());
            continue;
        }
        if m.optional == Some(false) && twin.optional {
            twin.optional = false;
            changed = true;
        }
        if changed {
            out.dirty = true;
            out.document.insert(
                key.clone(),
                TwinDoc {
                    last,
                    current: twin.msg(),
                },
            );
        }
        dev.twins.insert(key.clone(), twin);
    }
    out
}

/// A new device from a membership entry (twins through [`apply_cloud`]).
pub(crate) fn device_from_msg(d: &MsgDevice, now: i64) -> (Device, CloudOutcome) {
    let mut dev = Device {
        id: d.id.clone(),
        name: d.name.clone(),
        description: d.description.clone(),
        state: d.state.clone(),
        last_online: d.last_online.clone(),
        attrs: d
            .attributes
            .iter()
            .filter_map(|(k, a)| a.as_ref().map(|a| (k.clone(), Attr::from_msg(a))))
            .collect(),
        twins: BTreeMap::new(),
    };
    // Tombstones given at creation are kept as tombstones (emitted as `null`).
    for (k, t) in &d.twin {
        if let Some(t) = t.as_ref().filter(|t| t.kind() == Some(DELETED)) {
            let mut tw = Twin::new(DELETED, t.optional.unwrap_or(true));
            tw.expected_version = t.expected_version.unwrap_or_default();
            tw.actual_version = t.actual_version.unwrap_or_default();
            dev.twins.insert(k.clone(), tw);
        }
    }
    let live: BTreeMap<_, _> = d
        .twin
        .iter()
        .filter(|(_, t)| t.as_ref().is_some_and(|t| t.kind() != Some(DELETED)))
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    let out = apply_cloud(&mut dev, &live, now, false);
    (dev, out)
}

/// A membership entry as devices see it: versions stripped, tombstones as `null`.
pub(crate) fn public_device(d: &MsgDevice) -> MsgDevice {
    let mut d = d.clone();
    d.twin = d
        .twin
        .into_iter()
        .map(|(k, t)| {
            let t = t
                .filter(|t| t.kind() != Some(DELETED))
                .map(MsgTwin::without_versions);
            (k, t)
        })
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(v: &str) -> Option<TwinValue> {
        Some(TwinValue {
            value: Some(v.into()),
            metadata: None,
        })
    }

    fn dev_with(key: &str, kind: &str, expected: &str, ver: TwinVersion) -> Device {
        let mut d = Device {
            id: "d".into(),
            ..Device::default()
        };
        let upd = BTreeMap::from([(
            key.to_owned(),
            Some(MsgTwin {
                expected: tv(expected),
                optional: Some(false),
                metadata: Some(TypeMetadata { kind: kind.into() }),
                expected_version: Some(ver),
                ..MsgTwin::default()
            }),
        )]);
        let out = apply_cloud(&mut d, &upd, 1, true);
        assert!(out.rejected.is_empty());
        d
    }

    #[test]
    fn key_and_value_characters() {
        assert!(valid_key("power-status"));
        assert!(valid_key("a.b,c:d/e@f#g_h"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(129)));
        assert!(valid_key(&"k".repeat(128)));
        assert!(valid_value(""));
        assert!(!valid_value("a b"));
        assert!(!valid_value(&"v".repeat(513)));
    }

    #[test]
    fn types() {
        assert!(value_fits("int", "-12"));
        assert!(!value_fits("int", "1.5"));
        assert!(value_fits("float", "1.5"));
        assert!(value_fits("boolean", "true"));
        assert!(!value_fits("boolean", "yes"));
        assert!(value_fits("string", "anything"));
        assert!(!valid_kind("Updated"));
    }

    #[test]
    fn local_change_bumps_edge_and_cloud_change_needs_a_newer_version() {
        let mut d = dev_with("p", "string", "ON", TwinVersion { cloud: 5, edge: 0 });
        let upd = BTreeMap::from([(
            "p".to_owned(),
            Some(MsgTwin {
                expected: tv("OFF"),
                ..MsgTwin::default()
            }),
        )]);
        let out = apply_local(&mut d, &upd, 2).unwrap();
        assert_eq!(d.twins["p"].expected_version, TwinVersion { cloud: 5, edge: 1 });
        assert_eq!(
            out.cloud["p"].as_ref().unwrap().expected_version,
            Some(TwinVersion { cloud: 5, edge: 1 })
        );
        // The v1.2 cloud always sends edge 0: refused now.
        let cloud = BTreeMap::from([(
            "p".to_owned(),
            Some(MsgTwin {
                expected: tv("ON"),
                expected_version: Some(TwinVersion { cloud: 6, edge: 0 }),
                ..MsgTwin::default()
            }),
        )]);
        let out = apply_cloud(&mut d, &cloud, 3, true);
        assert_eq!(out.rejected, ["p"]);
        assert_eq!(d.twins["p"].expected.as_ref().unwrap().value, "OFF");
        // A version that has seen the edge change is taken.
        let cloud = BTreeMap::from([(
            "p".to_owned(),
            Some(MsgTwin {
                expected: tv("ON"),
                expected_version: Some(TwinVersion { cloud: 6, edge: 1 }),
                ..MsgTwin::default()
            }),
        )]);
        let out = apply_cloud(&mut d, &cloud, 3, true);
        assert!(out.rejected.is_empty());
        assert_eq!(d.twins["p"].expected.as_ref().unwrap().value, "ON");
    }

    #[test]
    fn type_violations_refuse_the_whole_update_and_delete_needs_optional() {
        let mut d = dev_with("n", "int", "1", TwinVersion { cloud: 1, edge: 0 });
        let before = d.clone();
        let upd = BTreeMap::from([
            (
                "n".to_owned(),
                Some(MsgTwin {
                    actual: tv("abc"),
                    ..MsgTwin::default()
                }),
            ),
            (
                "other".to_owned(),
                Some(MsgTwin {
                    actual: tv("x"),
                    ..MsgTwin::default()
                }),
            ),
        ]);
        assert!(apply_local(&mut d.clone(), &upd, 2).is_err());
        // Not optional (cloud-created): a delete is ignored.
        let del = BTreeMap::from([("n".to_owned(), None)]);
        let out = apply_local(&mut d, &del, 2).unwrap();
        assert!(out.result.is_empty());
        assert_eq!(d, before);
    }

    #[test]
    fn delta_lists_expected_values_that_differ() {
        let mut d = dev_with("p", "string", "ON", TwinVersion { cloud: 1, edge: 0 });
        let (twin, delta) = d.delta().unwrap();
        assert!(twin.contains_key("p"));
        assert_eq!(delta["p"], "ON");
        let upd = BTreeMap::from([(
            "p".to_owned(),
            Some(MsgTwin {
                actual: tv("ON"),
                ..MsgTwin::default()
            }),
        )]);
        apply_local(&mut d, &upd, 2).unwrap();
        assert!(d.delta().is_none());
    }
}
