//! Pod cgroup cleanup: runc removes a container's own cgroup but not the pod-level parent that
//! the agent named in `cgroup_parent`; the agent removes it after `RemovePodSandbox`.

use std::path::Path;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Removes the (empty) cgroup directory `parent` (e.g. `/kubepods/besteffort/pod<uid>`) under
/// every cgroup v1 controller and under the v2 root. Only `rmdir`: a cgroup that still has
/// processes or children is left alone. Returns how many directories were removed.
pub fn remove_pod_cgroup(parent: &str) -> usize {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return 0;
    }
    let root = Path::new(CGROUP_ROOT);
    let mut bases = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        bases.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    let mut removed = 0;
    for base in bases {
        let dir = base.join(rel);
        if dir.is_dir() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => removed += 1,
                Err(e) => tracing::debug!(dir = %dir.display(), %e, "pod cgroup not removed"),
            }
        }
    }
    removed
}
