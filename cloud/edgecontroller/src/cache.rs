//! Shared caches fed by the downstream watches, read by the synccontroller.
//!
//! [`crate::downstream::Downstream`] applies every watcher event to the [`Cache`] of its kind
//! before acting on it; [`crate::sync::SyncController`] reads the same caches instead of listing
//! nodes, pods and objects from the API server every pass. A cache is keyed by
//! (namespace, name) and holds the last object seen.
//!
//! A cache lags the API server. Two facts let a reader judge how far:
//! * [`Cache::is_ready`]: the first full list has been applied (before that the cache is not
//!   known complete: absence means nothing);
//! * [`Cache::caught_up`]: the cache has applied an event at or past a resourceVersion. Watch
//!   events arrive in resourceVersion order and a relist is a consistent snapshot (applied at
//!   once, on `InitDone`), so once an event of version ≥ `rv` is applied, every change of this
//!   kind up to `rv` is in the cache — an object that existed at `rv` and is absent now was
//!   deleted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Secret, Service};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// (namespace, name); namespace `""` for cluster-scoped objects.
pub type Key = (String, String);

#[derive(Debug)]
struct State<K> {
    objects: HashMap<Key, Arc<K>>,
    /// Objects of a relist in progress (applied on `InitDone`).
    relist: Option<HashMap<Key, Arc<K>>>,
    /// Largest numeric resourceVersion among the applied events.
    relist_max: Option<u64>,
    max_rv: Option<u64>,
    ready: bool,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            relist: None,
            relist_max: None,
            max_rv: None,
            ready: false,
        }
    }
}

/// The objects of one kind, shared by clones.
#[derive(Debug)]
pub struct Cache<K> {
    state: Arc<RwLock<State<K>>>,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            state: Arc::default(),
        }
    }
}

fn key<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn numeric_rv<K: ResourceExt>(o: &K) -> Option<u64> {
    o.resource_version()?.parse().ok()
}

impl<K: ResourceExt + Clone> Cache<K> {
    // A poisoned lock only means a holder panicked mid-update of a map; the maps stay usable.
    fn read(&self) -> RwLockReadGuard<'_, State<K>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State<K>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one watcher event.
    pub fn apply(&self, ev: &Event<K>) {
        let mut s = self.write();
        match ev {
            Event::Init => {
                s.relist = Some(HashMap::new());
                s.relist_max = None;
            }
            Event::InitApply(o) => {
                let rv = numeric_rv(o);
                s.relist_max = s.relist_max.max(rv);
                s.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key(o), Arc::new(o.clone()));
            }
            Event::InitDone => {
                if let Some(objects) = s.relist.take() {
                    s.objects = objects;
                }
                s.max_rv = s.max_rv.max(s.relist_max.take());
                s.ready = true;
            }
            Event::Apply(o) => {
                s.max_rv = s.max_rv.max(numeric_rv(o));
                s.objects.insert(key(o), Arc::new(o.clone()));
            }
            Event::Delete(o) => {
                s.max_rv = s.max_rv.max(numeric_rv(o));
                s.objects.remove(&key(o));
            }
        }
    }

    /// The object `namespace`/`name`, as last seen.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// All objects.
    pub fn snapshot(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The first full list has been applied.
    pub fn is_ready(&self) -> bool {
        self.read().ready
    }

    /// The cache is ready and has applied an event at or past `rv` (numeric resourceVersions
    /// only: any other `rv` is never caught up).
    pub fn caught_up(&self, rv: &str) -> bool {
        let Ok(rv) = rv.parse::<u64>() else {
            return false;
        };
        let s = self.read();
        s.ready && s.max_rv.is_some_and(|m| m >= rv)
    }
}

/// The caches of every kind the edge controller watches. Cheap to clone; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Caches {
    /// All nodes (edge or not: ObjectSyncs of any deleted node are cleaned up).
    pub nodes: Cache<Node>,
    /// Pods bound to a node.
    pub pods: Cache<Pod>,
    /// All config maps.
    pub configmaps: Cache<ConfigMap>,
    /// All secrets.
    pub secrets: Cache<Secret>,
    /// All services.
    pub services: Cache<Service>,
    /// All endpoints.
    pub endpoints: Cache<Endpoints>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn not_ready_until_the_first_list_is_applied() {
        let c = Cache::default();
        c.apply(&Event::Init);
        c.apply(&Event::InitApply(cm("a", "5")));
        assert!(!c.is_ready());
        assert!(c.get("ns", "a").is_none(), "a relist shows at InitDone only");
        assert!(!c.caught_up("5"));
        c.apply(&Event::InitDone);
        assert!(c.is_ready());
        assert!(c.get("ns", "a").is_some());
        assert!(c.caught_up("5"));
        assert!(!c.caught_up("6"));
        assert!(!c.caught_up("x"));
    }

    #[test]
    fn watch_events_update_objects_and_version() {
        let c = Cache::default();
        c.apply(&Event::Init);
        c.apply(&Event::InitDone);
        c.apply(&Event::Apply(cm("a", "7")));
        assert_eq!(
            c.get("ns", "a").and_then(|o| o.resource_version()).as_deref(),
            Some("7")
        );
        c.apply(&Event::Delete(cm("a", "9")));
        assert!(c.get("ns", "a").is_none());
        assert!(c.caught_up("9"));
        assert!(c.snapshot().is_empty());
    }

    #[test]
    fn a_relist_replaces_the_objects_at_once() {
        let c = Cache::default();
        c.apply(&Event::Init);
        c.apply(&Event::InitApply(cm("old", "3")));
        c.apply(&Event::InitDone);
        c.apply(&Event::Init);
        c.apply(&Event::InitApply(cm("new", "12")));
        // Mid-relist: the old snapshot and its version still stand.
        assert!(c.get("ns", "old").is_some());
        assert!(!c.caught_up("12"));
        c.apply(&Event::InitDone);
        assert!(c.get("ns", "old").is_none());
        assert!(c.get("ns", "new").is_some());
        assert!(c.caught_up("12"));
    }
}
