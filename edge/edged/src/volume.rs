//! Pod volumes (`shared/spec/edged.md` §5): `configMap` and `secret` (contents queried from
//! metaManager, written under the pod's directory and bind-mounted read-only), `downwardAPI`
//! (pod metadata and container resources, written the same way), `emptyDir` and `hostPath`.
//! Other volume types make the container fail to start with a clear error.
//!
//! File modes: `items[].mode`, else the volume's `defaultMode`, else `0644`.
//!
//! `downwardAPI` items: `fieldRef` `metadata.name`, `metadata.namespace`, `metadata.uid`,
//! `metadata.labels`, `metadata.annotations` (whole maps as sorted `key="value"` lines, values
//! quoted like Go's `%q`) and single `metadata.labels['k']` / `metadata.annotations['k']`;
//! `resourceFieldRef` (`containerName`, `resource`, `divisor`) like the env's.
//!
//! Files are written when a container starts and rewritten in running pods by [`refresh`]
//! (ConfigMap/Secret update, pod update, periodic resync), atomically: see `write_files`.
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
    /// A `downwardAPI` item names a field or resource that is not supported.
    #[error("volume {volume}: downwardAPI item {path:?}: unsupported {what}")]
    Downward {
        /// The volume.
        volume: String,
        /// The item's path.
        path: String,
        /// What is not supported.
        what: String,
    },
    /// The volume type is not supported.
    #[error("volume {0}: type not supported (configMap, secret, downwardAPI, emptyDir, hostPath are)")]
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

/// A file's mode from the API's optional `mode`/`defaultMode` (`0644` when unset or invalid).
fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o777)
}

/// The symlink naming the current data directory of an atomically written volume.
const DATA: &str = "..data";

/// Whether `rel` is a path edged writes: relative, no `..`/empty component, not hidden behind
/// the `..`-prefixed names the atomic layout uses.
fn valid_rel(rel: &str) -> bool {
    !rel.starts_with("..") && !rel.split('/').any(|c| c == ".." || c.is_empty())
}

/// Whether `dir/..data` already holds exactly `files` (bytes and modes).
fn unchanged(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let data = dir.join(DATA);
    if std::fs::symlink_metadata(&data).is_err() {
        return false;
    }
    let same = files.iter().all(|(rel, (bytes, mode))| {
        let p = data.join(rel);
        std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == *mode)
            && std::fs::read(&p).is_ok_and(|b| b == *bytes)
    });
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    count(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
    same && count(&data) == files.len()
}

/// Writes `files` (relative path → (bytes, mode)) into `dir` atomically, as the kubelet's
/// atomic writer does: the files go into a fresh `..<timestamp>` directory, the `..data`
/// symlink is swapped to it with one `rename`, and each top-level name is a symlink
/// `name → ..data/name`. A reader therefore sees the old set or the new one, never a mix; keys
/// gone from the source disappear; `dir` itself (what containers bind-mount) stays the same
/// inode. Nothing is touched when the contents are unchanged.
fn write_files(volume: &str, dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<()> {
    let files: BTreeMap<String, (Vec<u8>, u32)> = files
        .iter()
        .filter(|(rel, _)| valid_rel(rel))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    std::fs::create_dir_all(dir).map_err(io(volume, dir))?;
    if unchanged(dir, &files) {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts_name = format!("..{}.{:09}", stamp.as_secs(), stamp.subsec_nanos());
    let ts = dir.join(&ts_name);
    if ts.exists() {
        std::fs::remove_dir_all(&ts).map_err(io(volume, &ts))?;
    }
    std::fs::create_dir(&ts).map_err(io(volume, &ts))?;
    for (rel, (bytes, mode)) in &files {
        let path = ts.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(volume, parent))?;
        }
        std::fs::write(&path, bytes).map_err(io(volume, &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).map_err(io(volume, &path))?;
    }
    // The swap: one rename of a symlink over `..data`.
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp).map_err(io(volume, &tmp))?;
    let data = dir.join(DATA);
    std::fs::rename(&tmp, &data).map_err(io(volume, &data))?;
    // User-visible names: a symlink per top-level component.
    let tops: std::collections::BTreeSet<&str> =
        files.keys().filter_map(|rel| rel.split('/').next()).collect();
    for top in &tops {
        let link = dir.join(top);
        let target = Path::new(DATA).join(top);
        if std::fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = dir.join(format!("..{top}_tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(io(volume, &tmp))?;
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&link).map_err(io(volume, &link))?;
        }
        std::fs::rename(&tmp, &link).map_err(io(volume, &link))?;
    }
    // What is no longer there: old keys, old data directories, files of the pre-atomic layout.
    for e in std::fs::read_dir(dir).map_err(io(volume, dir))?.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let keep = name == DATA || name == ts_name.as_str() || tops.contains(name.as_ref());
        if keep {
            continue;
        }
        let path = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(io(volume, &path))?;
    }
    Ok(())
}

/// Applies `items` (key → path, mode) to the object's data; without items every key is a file
/// with `default_mode`.
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s::KeyToPath]>,
    default_mode: u32,
) -> BTreeMap<String, (Vec<u8>, u32)> {
    match items {
        Some(items) if !items.is_empty() => items
            .iter()
            .filter_map(|i| {
                let b = data.get(&i.key)?;
                Some((i.path.clone(), (b.clone(), mode_of(i.mode, default_mode))))
            })
            .collect(),
        _ => data.into_iter().map(|(k, b)| (k, (b, default_mode))).collect(),
    }
}

/// A map as the kubelet writes it into a downwardAPI file: sorted `key="value"` lines, the value
/// quoted like Go's `%q`, no trailing newline.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `s` in double quotes with Go's `%q` escapes (printable Unicode kept as is).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The files of a `downwardAPI` volume (path → (contents, mode)).
fn downward_files(
    volume: &str,
    pod: &k8s::Pod,
    src: &k8s::DownwardAPIVolumeSource,
    d: &crate::env::Downward<'_>,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let default_mode = mode_of(src.default_mode, 0o644);
    let unsupported = |path: &str, what: String| Error::Downward {
        volume: volume.to_owned(),
        path: path.to_owned(),
        what,
    };
    let mut out = BTreeMap::new();
    for item in src.items.iter().flatten() {
        let value = if let Some(f) = &item.field_ref {
            let m = &pod.metadata;
            match f.field_path.as_str() {
                "metadata.labels" => format_map(m.labels.as_ref()),
                "metadata.annotations" => format_map(m.annotations.as_ref()),
                p if p.starts_with("metadata.") => crate::env::field_value(pod, p, d)
                    .ok_or_else(|| unsupported(&item.path, format!("fieldPath {p:?}")))?,
                p => return Err(unsupported(&item.path, format!("fieldPath {p:?}"))),
            }
        } else if let Some(r) = &item.resource_field_ref {
            let c = crate::pod::containers(pod)
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .ok_or_else(|| unsupported(&item.path, format!("containerName {:?}", r.container_name)))?;
            crate::env::resource_value(c, r, d)
                .ok_or_else(|| unsupported(&item.path, format!("resource {:?}", r.resource)))?
        } else {
            return Err(unsupported(
                &item.path,
                "item without fieldRef or resourceFieldRef".to_owned(),
            ));
        };
        out.insert(
            item.path.clone(),
            (value.into_bytes(), mode_of(item.mode, default_mode)),
        );
    }
    Ok(out)
}

/// Whether a pod's `downwardAPI` volumes read container resources (what an unset limit means
/// there is the node's capacity).
pub(crate) fn wants_resources(pod: &k8s::Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.downward_api.as_ref())
        .flat_map(|da| da.items.iter().flatten())
        .any(|i| i.resource_field_ref.is_some())
}

/// The keys of a config map (`data` as UTF-8, then `binaryData`).
fn configmap_data(o: k8s::ConfigMap) -> BTreeMap<String, Vec<u8>> {
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

/// The keys of a secret (`data`, then `stringData`).
fn secret_data(o: k8s::Secret) -> BTreeMap<String, Vec<u8>> {
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

/// The keys of volume `volume`'s source `(what, name, optional)` from metaManager: empty when it
/// is missing and optional, an error when it is missing otherwise or cannot be read.
async fn source_data<T: DeserializeOwned>(
    hive: &Beehive,
    ns: &str,
    volume: &str,
    (what, source, optional): (&'static str, &str, Option<bool>),
    timeout: Duration,
    keys: fn(T) -> BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let err = |reason: String| Error::Source {
        volume: volume.to_owned(),
        what,
        name: source.to_owned(),
        reason,
    };
    match query::<T>(hive, ns, what, source, timeout).await.map_err(err)? {
        Some(o) => Ok(keys(o)),
        None if optional == Some(true) => Ok(BTreeMap::new()),
        None => Err(err("not found".to_owned())),
    }
}

/// Writes the files of `v` when it is a `configMap`, `secret` or `downwardAPI` volume (the
/// types whose contents come from elsewhere and are kept current); returns its directory, or
/// `None` for other types.
async fn write_sourced(
    hive: &Beehive,
    base: &Path,
    pod: &k8s::Pod,
    v: &k8s::Volume,
    d: &crate::env::Downward<'_>,
    timeout: Duration,
) -> Result<Option<PathBuf>> {
    let id = PodId::of(pod);
    let name = v.name.as_str();
    let path = if let Some(cm) = &v.config_map {
        let dir = base.join("kubernetes.io~configmap").join(name);
        let data = source_data(
            hive,
            &id.namespace,
            name,
            ("configmap", &cm.name, cm.optional),
            timeout,
            configmap_data,
        )
        .await?;
        let mode = mode_of(cm.default_mode, 0o644);
        write_files(name, &dir, &project(data, cm.items.as_deref(), mode))?;
        dir
    } else if let Some(sec) = &v.secret {
        let dir = base.join("kubernetes.io~secret").join(name);
        let sec_name = sec.secret_name.clone().unwrap_or_default();
        let data = source_data(
            hive,
            &id.namespace,
            name,
            ("secret", &sec_name, sec.optional),
            timeout,
            secret_data,
        )
        .await?;
        let mode = mode_of(sec.default_mode, 0o644);
        write_files(name, &dir, &project(data, sec.items.as_deref(), mode))?;
        dir
    } else if let Some(da) = &v.downward_api {
        let dir = base.join("kubernetes.io~downward-api").join(name);
        write_files(name, &dir, &downward_files(name, pod, da, d)?)?;
        dir
    } else {
        return Ok(None);
    };
    Ok(Some(path))
}

/// The directory of the pod's volumes.
fn volumes_dir(root: &Path, pod: &k8s::Pod) -> PathBuf {
    pod_dir(root, &PodId::of(pod).uid).join("volumes")
}

/// Rewrites the pod's `configMap`, `secret` and `downwardAPI` volumes from their current
/// sources (atomically, and only what changed). Does nothing when the pod's volumes were never
/// set up. A source that cannot be read leaves that volume as it was.
pub(crate) async fn refresh(
    hive: &Beehive,
    root: &Path,
    pod: &k8s::Pod,
    d: &crate::env::Downward<'_>,
    timeout: Duration,
) -> Result<()> {
    let base = volumes_dir(root, pod);
    if !base.exists() {
        return Ok(());
    }
    let vols = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut first = Ok(());
    for v in vols {
        if let Err(e) = write_sourced(hive, &base, pod, v, d, timeout).await
            && first.is_ok()
        {
            first = Err(e);
        }
    }
    first
}

/// Whether the pod has a `configMap` (`kind` `configmap`) or `secret` volume reading object
/// `<ns>/<kind>/<name>`.
pub(crate) fn mounts_object(pod: &k8s::Pod, ns: &str, kind: &str, name: &str) -> bool {
    if PodId::of(pod).namespace != ns {
        return false;
    }
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .into_iter()
        .flatten()
        .any(|v| match kind {
            "configmap" => v.config_map.as_ref().is_some_and(|c| c.name == name),
            "secret" => v
                .secret
                .as_ref()
                .is_some_and(|s| s.secret_name.as_deref() == Some(name)),
            _ => false,
        })
}

/// Sets up every volume of the pod; returns volume name → host path.
pub(crate) async fn prepare(
    hive: &Beehive,
    root: &Path,
    pod: &k8s::Pod,
    d: &crate::env::Downward<'_>,
    timeout: Duration,
) -> Result<BTreeMap<String, PathBuf>> {
    let vols = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let base = volumes_dir(root, pod);
    let mut out = BTreeMap::new();
    for v in vols {
        let name = v.name.as_str();
        let path = if let Some(dir) = write_sourced(hive, &base, pod, v, d, timeout).await? {
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
            .is_some_and(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some())
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
        let items: Vec<k8s::KeyToPath> = serde_json::from_value(
            serde_json::json!([{"key": "b", "path": "sub/bee"}, {"key": "a", "path": "ay", "mode": 0o400}]),
        )
        .unwrap();
        let v = dir.path().join("v");
        let mode = |p: &str| std::fs::metadata(v.join(p)).unwrap().permissions().mode() & 0o777;
        write_files("v", &v, &project(data.clone(), Some(&items), 0o600)).unwrap();
        assert_eq!(std::fs::read(v.join("sub/bee")).unwrap(), b"2");
        assert_eq!((mode("sub/bee"), mode("ay")), (0o600, 0o400));
        assert!(!v.join("a").exists());
        write_files("v", &v, &project(data, None, 0o644)).unwrap();
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"1");
        assert_eq!(mode("a"), 0o644);
        assert!(!v.join("sub").exists(), "old files replaced");
        // The atomic layout: `..data` → one timestamped directory, keys link through it, the
        // volume directory itself (what containers mount) keeps its inode.
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&v).unwrap().ino();
        let data = std::fs::read_link(v.join("..data")).unwrap();
        assert_eq!(std::fs::read_link(v.join("a")).unwrap(), Path::new("..data/a"));
        let names = || {
            let mut n: Vec<String> = std::fs::read_dir(&v)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(), [data.to_str().unwrap(), "..data", "a", "b"]);
        write_files(
            "v",
            &v,
            &project(
                BTreeMap::from([("a".to_owned(), b"1".to_vec()), ("b".to_owned(), b"2".to_vec())]),
                None,
                0o644,
            ),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(v.join("..data")).unwrap(),
            data,
            "unchanged: not rewritten"
        );
        write_files(
            "v",
            &v,
            &project(BTreeMap::from([("a".to_owned(), b"new".to_vec())]), None, 0o644),
        )
        .unwrap();
        let data2 = std::fs::read_link(v.join("..data")).unwrap();
        assert_ne!(data2, data);
        assert_eq!(
            names(),
            [data2.to_str().unwrap(), "..data", "a"],
            "b and the old data dir gone"
        );
        assert_eq!(std::fs::read(v.join("a")).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&v).unwrap().ino(), ino);
        let escape = BTreeMap::from([("../x".to_owned(), (b"no".to_vec(), 0o644))]);
        write_files("v", &v, &escape).unwrap();
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("plain"), r#""plain""#);
        assert_eq!(go_quote("a\"b\\c\nd\te"), r#""a\"b\\c\nd\te""#);
        assert_eq!(go_quote("\u{1b}x\u{7f}"), r#""\x1bx\x7f""#);
        assert_eq!(go_quote("héllo ✓"), r#""héllo ✓""#);
    }

    #[test]
    fn downward_api_files() {
        let pod: k8s::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"zone": "b", "app": "web"}, "annotations": {"note": "say \"hi\""}},
            "spec": {"containers": [{"name": "c",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}],
            "volumes": [{"name": "info", "downwardAPI": {"defaultMode": 0o640, "items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
                {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o400},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}}
            ]}}]}
        }))
        .unwrap();
        let d = crate::env::Downward {
            node_milli_cpu: 2000,
            node_memory: 1 << 30,
            ..Default::default()
        };
        assert!(wants_resources(&pod));
        let src = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .downward_api
            .clone()
            .unwrap();
        let files = downward_files("info", &pod, &src, &d).unwrap();
        let get = |p: &str| {
            let (b, m) = &files[p];
            (String::from_utf8(b.clone()).unwrap(), *m)
        };
        assert_eq!(get("name"), ("p".into(), 0o640));
        assert_eq!(get("ns"), ("ns".into(), 0o640));
        assert_eq!(get("uid"), ("u-1".into(), 0o400));
        assert_eq!(get("labels").0, "app=\"web\"\nzone=\"b\"");
        assert_eq!(get("annotations").0, r#"note="say \"hi\"""#);
        assert_eq!(get("app").0, "web");
        assert_eq!(get("mem").0, "64");
        assert_eq!(get("cpu").0, "250");

        let bad = |item: serde_json::Value| {
            let src: k8s::DownwardAPIVolumeSource =
                serde_json::from_value(serde_json::json!({"items": [item]})).unwrap();
            downward_files("info", &pod, &src, &d).unwrap_err().to_string()
        };
        assert!(
            bad(serde_json::json!({"path": "x", "fieldRef": {"fieldPath": "status.podIP"}}))
                .contains("status.podIP")
        );
        assert!(bad(serde_json::json!({"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}})).contains("nope"));
    }
}
