//! Turns kube-runtime watcher events (which only say "applied" or "deleted", and restart with a
//! full relist) into the Added / Modified / Deleted events v1.2's informers delivered.

use std::collections::{HashMap, HashSet};

use kube::runtime::watcher::Event;

/// What happened to one object, with the state remembered for it before.
#[derive(Debug, PartialEq)]
pub enum Change<K, V> {
    /// First seen.
    Added(K),
    /// Seen before; `old` is what was remembered.
    Modified {
        /// Previous remembered state.
        old: V,
        /// The object now.
        new: K,
    },
    /// Deleted: the object from the watch, or only the remembered state when the delete was
    /// noticed by a relist.
    Deleted {
        /// The key (`<ns>/<name>`).
        key: String,
        /// Remembered state.
        old: V,
        /// The object, when the watch delivered it.
        obj: Option<K>,
    },
}

/// Remembers a summary `V` per object key across watch restarts.
#[derive(Debug)]
pub struct Tracker<K, V> {
    known: HashMap<String, V>,
    relisting: Option<HashSet<String>>,
    /// The first full list has been seen (v1.2: the informer's cache has synced).
    synced: bool,
    key: fn(&K) -> String,
    summary: fn(&K) -> V,
}

impl<K, V> Tracker<K, V> {
    /// A tracker keyed by `key`, remembering `summary` of each object.
    pub fn new(key: fn(&K) -> String, summary: fn(&K) -> V) -> Self {
        Self {
            known: HashMap::new(),
            relisting: None,
            synced: false,
            key,
            summary,
        }
    }

    /// The remembered state of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.known.get(key)
    }

    /// True once the first full list has been seen: only then do [`Tracker::values`] stand for
    /// every object.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// All keys.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.known.keys()
    }

    /// All remembered states.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.known.values()
    }

    /// Feeds one watcher event; returns the changes it means.
    pub fn step(&mut self, ev: Event<K>) -> Vec<Change<K, V>> {
        match ev {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                let k = (self.key)(&obj);
                if let Some(seen) = self.relisting.as_mut() {
                    seen.insert(k);
                }
                vec![self.apply(obj)]
            }
            Event::Apply(obj) => vec![self.apply(obj)],
            Event::Delete(obj) => {
                let key = (self.key)(&obj);
                match self.known.remove(&key) {
                    Some(old) => vec![Change::Deleted {
                        key,
                        old,
                        obj: Some(obj),
                    }],
                    None => Vec::new(),
                }
            }
            Event::InitDone => {
                self.synced = true;
                let Some(seen) = self.relisting.take() else {
                    return Vec::new();
                };
                let gone: Vec<String> = self
                    .known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|key| {
                        let old = self.known.remove(&key)?;
                        Some(Change::Deleted { key, old, obj: None })
                    })
                    .collect()
            }
        }
    }

    fn apply(&mut self, obj: K) -> Change<K, V> {
        let key = (self.key)(&obj);
        let v = (self.summary)(&obj);
        match self.known.insert(key, v) {
            None => Change::Added(obj),
            Some(old) => Change::Modified { old, new: obj },
        }
    }
}

/// `<namespace>/<name>` of a Kubernetes object.
pub fn ns_name<K: kube::ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tracker<(String, u32), u32> {
        Tracker::new(|o| o.0.clone(), |o| o.1)
    }

    #[test]
    fn apply_then_apply_is_added_then_modified() {
        let mut t = t();
        assert_eq!(
            t.step(Event::Apply(("a".into(), 1))),
            vec![Change::Added(("a".into(), 1))]
        );
        assert_eq!(
            t.step(Event::Apply(("a".into(), 2))),
            vec![Change::Modified {
                old: 1,
                new: ("a".into(), 2)
            }]
        );
        assert_eq!(t.get("a"), Some(&2));
    }

    #[test]
    fn synced_only_after_the_first_full_list() {
        let mut t = t();
        assert!(!t.is_synced());
        t.step(Event::Init);
        t.step(Event::InitApply(("a".into(), 1)));
        assert!(!t.is_synced(), "half a list is not the whole picture");
        t.step(Event::InitDone);
        assert!(t.is_synced());
        t.step(Event::Init);
        assert!(t.is_synced(), "a relist does not unsync what was listed once");
    }

    #[test]
    fn relist_reports_what_disappeared() {
        let mut t = t();
        t.step(Event::Apply(("a".into(), 1)));
        t.step(Event::Apply(("b".into(), 1)));
        assert!(t.step(Event::Init).is_empty());
        assert_eq!(t.step(Event::InitApply(("a".into(), 1))).len(), 1);
        let gone = t.step(Event::InitDone);
        assert_eq!(
            gone,
            vec![Change::Deleted {
                key: "b".into(),
                old: 1,
                obj: None
            }]
        );
        assert!(t.get("b").is_none());
    }

    #[test]
    fn delete_of_unknown_is_nothing() {
        let mut t = t();
        assert!(t.step(Event::Delete(("x".into(), 1))).is_empty());
    }
}
