//! Hot reload of the device profile: a `notify` watcher on the profile's directory.
//!
//! The directory, not the file, is watched: a ConfigMap volume updates by swapping its `..data`
//! symlink, which never touches the file's own inode, and editors replace files by rename.
//! Only events naming the profile file (or the volume's `..data` entries) count; every burst of
//! them (coalesced for 200 ms, at most 1 s) re-reads the file; a profile that does not parse
//! is logged and ignored (the previous one stays in force), and an unchanged profile is not
//! re-announced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::profile::DeviceProfile;

/// How long a burst of file events is coalesced before the profile is re-read.
const SETTLE: Duration = Duration::from_millis(200);
/// Upper bound on the coalescing: a directory that never goes quiet still reloads.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// True when `ev` may have changed the profile: it names the profile file, a ConfigMap volume's
/// `..data`/`..<timestamp>` entries, or no path at all (overflow). Other files in the directory
/// (which may change all the time) are ignored.
fn concerns_profile(ev: &notify::Event, file_name: Option<&std::ffi::OsStr>) -> bool {
    ev.paths.is_empty()
        || ev.need_rescan()
        || ev.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| Some(n) == file_name || n.to_string_lossy().starts_with(".."))
        })
}

/// Loads the profile at `path` and keeps the returned receiver up to date until `cancel`.
///
/// A missing or invalid file at start gives an empty profile (logged): the mapper waits for the
/// ConfigMap instead of crash-looping.
pub fn watch_profile(path: &Path, cancel: CancellationToken) -> Result<watch::Receiver<Arc<DeviceProfile>>> {
    let path = path.to_owned();
    let initial = load_or_log(&path).unwrap_or_default();
    let (tx, rx) = watch::channel(Arc::new(initial));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
    let file_name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if ev.kind.is_access() => {}
        Ok(ev) if concerns_profile(&ev, file_name.as_deref()) => {
            let _ = ev_tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("profile watcher: {e}"),
    })
    .map_err(|source| Error::Watch {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| Error::Watch {
            path: dir.clone(),
            source,
        })?;
    tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with this task
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                ev = ev_rx.recv() => if ev.is_none() { break },
            }
            // coalesce the burst, but never wait longer than MAX_DELAY
            let deadline = tokio::time::Instant::now() + MAX_DELAY;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(SETTLE) => break,
                    () = tokio::time::sleep_until(deadline) => break,
                    ev = ev_rx.recv() => if ev.is_none() { break },
                }
            }
            if let Some(p) = load_or_log(&path) {
                tx.send_if_modified(|cur| {
                    if **cur == p {
                        false
                    } else {
                        tracing::info!(path = %path.display(), devices = p.device_instances.len(), "device profile reloaded");
                        *cur = Arc::new(p);
                        true
                    }
                });
            }
        }
    });
    Ok(rx)
}

fn load_or_log(path: &Path) -> Option<DeviceProfile> {
    match DeviceProfile::load(path) {
        Ok(p) => Some(p),
        Err(Error::ReadProfile { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "device profile not found yet; waiting for it");
            None
        }
        Err(e) => {
            tracing::error!("{e}; keeping the previous profile");
            None
        }
    }
}
