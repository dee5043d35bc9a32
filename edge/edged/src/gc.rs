//! Container and image garbage collection (`shared/spec/edged.md` §7), by the kubelet's rules.
//!
//! * Containers, every [`EdgedOptions::container_gc_period`](crate::EdgedOptions): exited
//!   containers of this node's pods older than `container_gc_min_age` are removed beyond the
//!   newest `maximumDeadContainersPerPod` per pod and container name (negative: no limit). The
//!   pod workers never remove dead containers themselves; only never-started ones.
//! * Images, every `image_gc_period`: when the image filesystem (CRI `ImageFsInfo`'s mount point,
//!   else edged's root directory) is more than `imageGCHighThreshold` % used — used / (used +
//!   available), as `df` shows it — images no container uses, other than the pod sandbox image,
//!   first seen by edged more than `image_gc_min_age` ago, are removed oldest-seen first until
//!   usage would be down to `imageGCLowThreshold` %. A high threshold of 100 turns it off.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ke_cri::{CriClient, api};
use tokio_util::sync::CancellationToken;

use crate::pod::{LABEL_CONTAINER_NAME, LABEL_NODE, LABEL_POD_UID};

/// Container GC policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContainerPolicy {
    pub(crate) min_age: Duration,
    /// Dead containers kept per pod and container name; negative keeps all.
    pub(crate) max_per_pod_container: i32,
}

/// Ids of the exited containers to remove, at `now_nanos` (epoch nanoseconds).
pub(crate) fn container_victims(cs: &[api::Container], now_nanos: i64, p: ContainerPolicy) -> Vec<String> {
    let Ok(keep) = usize::try_from(p.max_per_pod_container) else {
        return Vec::new();
    };
    let min_age = i64::try_from(p.min_age.as_nanos()).unwrap_or(i64::MAX);
    let mut units: BTreeMap<(&str, &str), Vec<&api::Container>> = BTreeMap::new();
    for c in cs {
        if c.state != api::ContainerState::ContainerExited as i32 {
            continue;
        }
        let label = |k: &str| c.labels.get(k).map_or("", String::as_str);
        units
            .entry((label(LABEL_POD_UID), label(LABEL_CONTAINER_NAME)))
            .or_default()
            .push(c);
    }
    let mut out = Vec::new();
    for mut unit in units.into_values() {
        unit.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        out.extend(
            unit.into_iter()
                .skip(keep)
                .filter(|c| now_nanos.saturating_sub(c.created_at) >= min_age)
                .map(|c| c.id.clone()),
        );
    }
    out
}

/// Image GC policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImagePolicy {
    pub(crate) high_percent: u64,
    pub(crate) low_percent: u64,
    pub(crate) min_age: Duration,
}

/// An image filesystem's size: bytes used and available (to unprivileged users).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskUsage {
    pub(crate) used: u64,
    pub(crate) available: u64,
}

/// Ids of the images to remove.
pub(crate) fn image_victims(
    disk: DiskUsage,
    images: &[api::Image],
    first_seen: &HashMap<String, Instant>,
    in_use: &HashSet<String>,
    now: Instant,
    p: ImagePolicy,
) -> Vec<String> {
    let total = disk.used.saturating_add(disk.available);
    if total == 0 || p.high_percent >= 100 || disk.used.saturating_mul(100) <= p.high_percent * total {
        return Vec::new();
    }
    let target = total / 100 * p.low_percent;
    let mut to_free = disk.used.saturating_sub(target);
    let mut candidates: Vec<(&api::Image, Instant)> = images
        .iter()
        .filter(|i| !in_use.contains(&i.id) && !i.repo_tags.iter().any(|t| in_use.contains(t)))
        .filter_map(|i| first_seen.get(&i.id).map(|t| (i, *t)))
        .filter(|(_, t)| now.saturating_duration_since(*t) >= p.min_age)
        .collect();
    candidates.sort_by_key(|(i, t)| (*t, i.id.clone()));
    let mut out = Vec::new();
    for (i, _) in candidates {
        if to_free == 0 {
            break;
        }
        to_free = to_free.saturating_sub(i.size);
        out.push(i.id.clone());
    }
    out
}

/// What the GC task needs.
#[derive(Debug, Clone)]
pub(crate) struct Gc {
    pub(crate) cri: CriClient,
    pub(crate) node: String,
    pub(crate) containers: ContainerPolicy,
    pub(crate) container_period: Duration,
    pub(crate) images: ImagePolicy,
    pub(crate) image_period: Duration,
    /// Never collected (the runtime's sandbox image).
    pub(crate) sandbox_image: String,
    /// Measured when the runtime does not name its image filesystem.
    pub(crate) fallback_dir: PathBuf,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn disk_usage(path: &Path) -> Option<DiskUsage> {
    let st = rustix::fs::statvfs(path).ok()?;
    let frag = st.f_frsize.max(1);
    Some(DiskUsage {
        used: st.f_blocks.saturating_sub(st.f_bfree).saturating_mul(frag),
        available: st.f_bavail.saturating_mul(frag),
    })
}

impl Gc {
    /// Runs both collectors until `cancel` fires.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let mut ctick = tokio::time::interval(self.container_period);
        let mut itick = tokio::time::interval(self.image_period);
        for t in [&mut ctick, &mut itick] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The first ticks fire at once; the container GC waits one period (after the pod list).
        ctick.tick().await;
        let mut first_seen: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ctick.tick() => self.collect_containers().await,
                _ = itick.tick() => self.collect_images(&mut first_seen).await,
            }
        }
    }

    async fn collect_containers(&self) {
        let filter = api::ContainerFilter {
            label_selector: HashMap::from([(LABEL_NODE.to_owned(), self.node.clone())]),
            ..Default::default()
        };
        let cs = match self.cri.list_containers(Some(filter)).await {
            Ok(cs) => cs,
            Err(e) => {
                tracing::warn!(%e, "container GC: cannot list containers");
                return;
            }
        };
        for id in container_victims(&cs, now_nanos(), self.containers) {
            match self.cri.remove_container(&id).await {
                Ok(()) => tracing::debug!(container = %id, "container GC: removed dead container"),
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(container = %id, %e, "container GC: cannot remove"),
            }
        }
    }

    async fn collect_images(&self, first_seen: &mut HashMap<String, Instant>) {
        if self.images.high_percent >= 100 {
            return;
        }
        let (images, containers) =
            match tokio::try_join!(self.cri.list_images(), self.cri.list_containers(None)) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(%e, "image GC: cannot list images or containers");
                    return;
                }
            };
        let now = Instant::now();
        first_seen.retain(|id, _| images.iter().any(|i| &i.id == id));
        for i in &images {
            first_seen.entry(i.id.clone()).or_insert(now);
        }
        let mut in_use: HashSet<String> = containers
            .iter()
            .flat_map(|c| {
                [
                    c.image_ref.clone(),
                    c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                ]
            })
            .collect();
        if let Ok(Some(pause)) = self.cri.image_status(&self.sandbox_image).await {
            in_use.insert(pause.id);
        }
        in_use.insert(self.sandbox_image.clone());
        let mount = match self.cri.image_fs_info().await {
            Ok(fs) => fs
                .into_iter()
                .find_map(|f| f.fs_id.map(|i| PathBuf::from(i.mountpoint))),
            Err(e) => {
                tracing::debug!(%e, "image GC: no ImageFsInfo");
                None
            }
        };
        let dir = mount
            .filter(|m| m.exists())
            .unwrap_or_else(|| self.fallback_dir.clone());
        let Some(disk) = disk_usage(&dir) else {
            tracing::warn!(dir = %dir.display(), "image GC: cannot measure the image filesystem");
            return;
        };
        for id in image_victims(disk, &images, first_seen, &in_use, now, self.images) {
            match self.cri.remove_image(&id).await {
                Ok(()) => tracing::info!(image = %id, "image GC: removed unused image"),
                Err(e) => tracing::warn!(image = %id, %e, "image GC: cannot remove"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, uid: &str, name: &str, exited: bool, created_s: i64) -> api::Container {
        api::Container {
            id: id.into(),
            state: if exited {
                api::ContainerState::ContainerExited as i32
            } else {
                api::ContainerState::ContainerRunning as i32
            },
            created_at: created_s * 1_000_000_000,
            labels: HashMap::from([
                (LABEL_POD_UID.to_owned(), uid.to_owned()),
                (LABEL_CONTAINER_NAME.to_owned(), name.to_owned()),
            ]),
            ..Default::default()
        }
    }

    #[test]
    fn dead_containers_beyond_the_limit_and_old_enough() {
        let cs = [
            c("run", "u1", "a", false, 10),
            c("d3", "u1", "a", true, 9),
            c("d2", "u1", "a", true, 8),
            c("d1", "u1", "a", true, 1),
            c("b1", "u1", "b", true, 1),
            c("x1", "u2", "a", true, 1),
        ];
        let p = |min_s: u64, max: i32| ContainerPolicy {
            min_age: Duration::from_secs(min_s),
            max_per_pod_container: max,
        };
        let now = 10 * 1_000_000_000;
        let mut v = container_victims(&cs, now, p(0, 1));
        v.sort();
        assert_eq!(v, ["d1", "d2"]);
        // d2 is 2 s old: too young with a 5 s minimum age.
        assert_eq!(container_victims(&cs, now, p(5, 1)), ["d1"]);
        let mut all = container_victims(&cs, now, p(0, 0));
        all.sort();
        assert_eq!(all, ["b1", "d1", "d2", "d3", "x1"]);
        assert!(container_victims(&cs, now, p(0, -1)).is_empty());
    }

    fn img(id: &str, tag: &str, size: u64) -> api::Image {
        api::Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            size,
            ..Default::default()
        }
    }

    #[test]
    fn images_until_the_low_threshold() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let images = [
            img("pause", "pause:3.6", 1),
            img("used", "busybox:1", 10),
            img("old1", "a:1", 20),
            img("old2", "b:1", 20),
            img("new", "c:1", 20),
        ];
        let seen: HashMap<String, Instant> = [
            ("pause", t0),
            ("used", t0),
            ("old1", t0),
            ("old2", t0 + Duration::from_secs(1)),
            ("new", now),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let in_use: HashSet<String> = ["busybox:1".to_owned(), "pause".to_owned()].into();
        let p = ImagePolicy {
            high_percent: 80,
            low_percent: 40,
            min_age: Duration::from_secs(60),
        };
        // 85 % used of 100: free 45 → old1 and old2 (40) are all that may go; `new` is too young.
        let disk = DiskUsage {
            used: 85,
            available: 15,
        };
        assert_eq!(
            image_victims(disk, &images, &seen, &in_use, now, p),
            ["old1", "old2"]
        );
        // 50 % used of 100, low 40: free 10 → old1 alone.
        let p2 = ImagePolicy {
            high_percent: 45,
            ..p
        };
        let disk = DiskUsage {
            used: 50,
            available: 50,
        };
        assert_eq!(image_victims(disk, &images, &seen, &in_use, now, p2), ["old1"]);
        // Below the high threshold, or GC off: nothing.
        assert!(image_victims(disk, &images, &seen, &in_use, now, p).is_empty());
        let off = ImagePolicy {
            high_percent: 100,
            low_percent: 0,
            ..p
        };
        let full = DiskUsage {
            used: 100,
            available: 0,
        };
        assert!(image_victims(full, &images, &seen, &in_use, now, off).is_empty());
    }
}
