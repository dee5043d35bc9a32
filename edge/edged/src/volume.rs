//! Pod volumes (`shared/spec/edged.md` §5): `configMap` and `secret` (contents queried from
//! metaManager, written under the pod's directory and bind-mounted read-only), `emptyDir` and
//! `hostPath`. Other volume types make the container fail to start with a clear error.
//!
//! Layout: `<rootDirectory>/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>`, as the kubelet.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use ke_beehive::Beehive;
use ke_core::Message;
use ke_core::names::{group, module, op};
use ke_cri::api;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::pod::PodId;

/// Why a pod's volumes cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// metaManager did not answer or refused the query.
    #[error("volume {volume}: {what} {name} not available: {reason}")]
    Source {
        /// The volume.
        volume: String,
        /// `configmap` or `secret`.
        what: &'static str,
        /// The object's name.
        name: String,
        /// The reason.
        reason: String,
    },
    /// A file or directory could not be written.
    #[error("volume {volume}: {path}: {source}")]
    Io {
        /// The volume.
        volume: String,
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The volume type is not supported.
    #[error("volume {0}: type not supported (configMap, secret, emptyDir, hostPath are)")]
    Unsupported(String),
    /// A container mounts a volume the pod does not have.
    #[error("volumeMount {0}: no such volume in the pod")]
    NoVolume(String),
}

/// Result of volume setup.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The pod's directory under edged's root directory.
pub(crate) fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

fn io(volume: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let (volume, path) = (volume.to_owned(), path.display().to_string());
    move |source| Error::Io { volume, path, source }
}

/// Asks metaManager for `<ns>/<kind>/<name>`; `Ok(None)` when it does not have it.
pub(crate) async fn query<T: DeserializeOwned>(
    hive: &Beehive,
    ns: &str,
    kind: &str,
    name: &str,
    timeout: Duration,
) -> std::result::Result<Option<T>, String> {
    let q = Message::new(
        module::EDGED,
        group::META,
        op::QUERY,
        format!("{ns}/{kind}/{name}"),
        Value::Null,
    );
    let reply = hive
        .send_sync(module::META_MANAGER, q, timeout)
        .await
        .map_err(|e| e.to_string())?;
    if reply.operation() == op::ERROR {
        return Ok(None);
    }
    // Local answers are arrays of stored JSON texts; remote ones the cloud's bare object.
    let item = match reply.content {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        Value::Array(_) | Value::Null => return Ok(None),
        v => v,
    };
    let r = match item {
        Value::String(s) => serde_json::from_str(&s),
        v => serde_json::from_value(v),
    };
    r.map(Some).map_err(|e| e.to_string())
}

/// Writes `files` (relative path → bytes) into `dir` with `mode`, replacing what was there.
fn write_files(volume: &str, dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(volume, dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(volume, dir))?;
    for (rel, bytes) in files {
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            continue; // never outside the volume
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume, parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(volume, &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io(volume, &path))?;
    }
    Ok(())
}

/// Applies `items` (key → path) to the object's data; without items every key is a file.
fn project(data: BTreeMap<String, Vec<u8>>, items: Option<&[k8s::KeyToPath]>) -> BTreeMap<String, Vec<u8>> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|b| (i.path.clone(), b.clone())))
            .collect(),
        _ => data,
    }
}

/// Sets up every volume of the pod; returns volume name → host path.
pub(crate) async fn prepare(
    hive: &Beehive,
    root: &Path,
    pod: &k8s::Pod,
    timeout: Duration,
) -> Result<BTreeMap<String, PathBuf>> {
    let id = PodId::of(pod);
    let vols = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let base = pod_dir(root, &id.uid).join("volumes");
    let mut out = BTreeMap::new();
    for v in vols {
        let name = v.name.as_str();
        let path = if let Some(cm) = &v.config_map {
            let dir = base.join("kubernetes.io~configmap").join(name);
            let cm_name = cm.name.clone();
            let obj: Option<k8s::ConfigMap> = query(hive, &id.namespace, "configmap", &cm_name, timeout)
                .await
                .map_err(|reason| Error::Source {
                    volume: name.to_owned(),
                    what: "configmap",
                    name: cm_name.clone(),
                    reason,
                })?;
            let data = match obj {
                Some(o) => {
                    let mut d: BTreeMap<String, Vec<u8>> = o
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    d.extend(
                        o.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    d
                }
                None if cm.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(Error::Source {
                        volume: name.to_owned(),
                        what: "configmap",
                        name: cm_name,
                        reason: "not found".to_owned(),
                    });
                }
            };
            let mode = u32::try_from(cm.default_mode.unwrap_or(0o644)).unwrap_or(0o644);
            write_files(name, &dir, &project(data, cm.items.as_deref()), mode)?;
            dir
        } else if let Some(sec) = &v.secret {
            let dir = base.join("kubernetes.io~secret").join(name);
            let sec_name = sec.secret_name.clone().unwrap_or_default();
            let obj: Option<k8s::Secret> = query(hive, &id.namespace, "secret", &sec_name, timeout)
                .await
                .map_err(|reason| Error::Source {
                    volume: name.to_owned(),
                    what: "secret",
                    name: sec_name.clone(),
                    reason,
                })?;
            let data = match obj {
                Some(o) => {
                    let mut d: BTreeMap<String, Vec<u8>> = o
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    d.extend(
                        o.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    d
                }
                None if sec.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(Error::Source {
                        volume: name.to_owned(),
                        what: "secret",
                        name: sec_name,
                        reason: "not found".to_owned(),
                    });
                }
            };
            let mode = u32::try_from(sec.default_mode.unwrap_or(0o644)).unwrap_or(0o644);
            write_files(name, &dir, &project(data, sec.items.as_deref()), mode)?;
            dir
        } else if v.empty_dir.is_some() {
            let dir = base.join("kubernetes.io~empty-dir").join(name);
            std::fs::create_dir_all(&dir).map_err(io(name, &dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io(name, &dir))?;
            dir
        } else if let Some(hp) = &v.host_path {
            let dir = PathBuf::from(&hp.path);
            if hp.type_.as_deref() == Some("DirectoryOrCreate") {
                std::fs::create_dir_all(&dir).map_err(io(name, &dir))?;
            }
            dir
        } else {
            return Err(Error::Unsupported(name.to_owned()));
        };
        out.insert(name.to_owned(), path);
    }
    Ok(out)
}

/// The CRI mounts of container `c` given the pod's prepared volumes.
pub(crate) fn mounts(
    pod: &k8s::Pod,
    c: &k8s::Container,
    vols: &BTreeMap<String, PathBuf>,
) -> Result<Vec<api::Mount>> {
    let read_only_type = |name: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.volumes.as_deref())
            .and_then(|vs| vs.iter().find(|v| v.name == name))
            .is_some_and(|v| v.config_map.is_some() || v.secret.is_some())
    };
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let host = vols.get(&m.name).ok_or_else(|| Error::NoVolume(m.name.clone()))?;
            let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => host.join(sub),
                None => host.clone(),
            };
            Ok(api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: m.read_only.unwrap_or(false) || read_only_type(&m.name),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_items() {
        let dir = tempfile::tempdir().unwrap();
        let data = BTreeMap::from([("a".to_owned(), b"1".to_vec()), ("b".to_owned(), b"2".to_vec())]);
        let items: Vec<k8s::KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "b", "path": "sub/bee"}])).unwrap();
        let v = dir.path().join("v");
        write_files("v", &v, &project(data.clone(), Some(&items)), 0o600).unwrap();
        assert_eq!(std::fs::read(v.join("sub/bee")).unwrap(), b"2");
        assert!(!v.join("a").exists());
        write_files("v", &v, &project(data, None), 0o644).unwrap();
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"1");
        assert!(!v.join("sub").exists(), "old files replaced");
        let escape = BTreeMap::from([("../x".to_owned(), b"no".to_vec())]);
        write_files("v", &v, &escape, 0o644).unwrap();
        assert!(!dir.path().join("x").exists());
    }
}
