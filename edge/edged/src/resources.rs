//! Resource requests and limits: Kubernetes quantities, the pod's QoS class and the CRI
//! `LinuxContainerResources` of a container, by the kubelet's rules.
//!
//! * cpu shares = request (or the limit when only a limit is set) in milli-CPU × 1024 / 1000,
//!   at least 2; cpu quota = limit × 100 ms period (at least 1 ms); memory limit in bytes.
//! * QoS: `Guaranteed` when every container has cpu and memory limits equal to its requests
//!   (a missing request defaults to the limit), `BestEffort` when no container requests or
//!   limits cpu or memory, else `Burstable`.
//! * `oom_score_adj`: `Guaranteed` -997, `BestEffort` 1000, `Burstable` left to the runtime.

use k8s_openapi::api::core::v1 as k8s;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use ke_cri::api;

const CPU_PERIOD_US: i64 = 100_000;
const MIN_QUOTA_US: i64 = 1_000;
const MIN_SHARES: i64 = 2;

/// The pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    /// As `status.qosClass` spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }
}

/// `q` scaled by `scale` (1 for bytes, 1000 for milli-units), rounded up; `None` if it does not
/// parse. Suffixes: binary `Ki`..`Ei`, decimal `n u m k M G T P E`, and `e<exp>`.
pub(crate) fn parse_scaled(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    let v = (n * mult * scale).ceil();
    // Saturating float → int conversion is what we want for absurd values.
    #[allow(clippy::cast_possible_truncation)]
    (v.is_finite() && v >= 0.0).then_some(v as i64)
}

fn get<'a>(m: Option<&'a std::collections::BTreeMap<String, Quantity>>, k: &str) -> Option<&'a str> {
    m.and_then(|m| m.get(k)).map(|q| q.0.as_str())
}

/// (request, limit) of `resource` of container `c`, scaled; the request defaults to the limit.
fn request_limit(c: &k8s::Container, resource: &str, scale: f64) -> (Option<i64>, Option<i64>) {
    let r = c.resources.as_ref();
    let limit = get(r.and_then(|r| r.limits.as_ref()), resource).and_then(|q| parse_scaled(q, scale));
    let request = get(r.and_then(|r| r.requests.as_ref()), resource)
        .and_then(|q| parse_scaled(q, scale))
        .or(limit);
    (request, limit)
}

/// The pod's QoS class (init containers count too).
pub(crate) fn qos_class(pod: &k8s::Pod) -> Qos {
    let Some(spec) = pod.spec.as_ref() else {
        return Qos::BestEffort;
    };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let (mut any, mut guaranteed) = (false, true);
    for c in all {
        for (res, scale) in [("cpu", 1000.0), ("memory", 1.0)] {
            let (req, lim) = request_limit(c, res, scale);
            any |= req.is_some_and(|v| v > 0) || lim.is_some_and(|v| v > 0);
            guaranteed &= lim.is_some_and(|l| l > 0 && req == Some(l));
        }
    }
    match (any, guaranteed) {
        (false, _) => Qos::BestEffort,
        (true, true) => Qos::Guaranteed,
        (true, false) => Qos::Burstable,
    }
}

/// The CRI resources of container `c` of a pod of class `qos`.
pub(crate) fn linux_resources(c: &k8s::Container, qos: Qos) -> api::LinuxContainerResources {
    let (cpu_req, cpu_lim) = request_limit(c, "cpu", 1000.0);
    let (_, mem_lim) = request_limit(c, "memory", 1.0);
    let shares = cpu_req.map_or(MIN_SHARES, |m| (m * 1024 / 1000).max(MIN_SHARES));
    let (cpu_period, cpu_quota) = match cpu_lim {
        Some(m) if m > 0 => (CPU_PERIOD_US, (m * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US)),
        _ => (0, 0),
    };
    api::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares: shares,
        memory_limit_in_bytes: mem_lim.unwrap_or(0),
        oom_score_adj: match qos {
            Qos::Guaranteed => -997,
            Qos::BestEffort => 1000,
            Qos::Burstable => 0,
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: serde_json::Value) -> k8s::Pod {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_scaled("64Mi", 1.0), Some(64 << 20));
        assert_eq!(parse_scaled("1G", 1.0), Some(1_000_000_000));
        assert_eq!(parse_scaled("100m", 1000.0), Some(100));
        assert_eq!(parse_scaled("0.5", 1000.0), Some(500));
        assert_eq!(parse_scaled("2", 1000.0), Some(2000));
        assert_eq!(parse_scaled("1e3", 1.0), Some(1000));
        assert_eq!(parse_scaled("12Qi", 1.0), None);
        assert_eq!(parse_scaled("x", 1.0), None);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&pod(serde_json::json!([{"name": "a"}]))),
            Qos::BestEffort
        );
        let g = pod(
            serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}}}]),
        );
        assert_eq!(qos_class(&g), Qos::Guaranteed);
        let b = pod(serde_json::json!([
            {"name": "a", "resources": {"limits": {"cpu": "200m", "memory": "32Mi"}}},
            {"name": "b"}
        ]));
        assert_eq!(qos_class(&b), Qos::Burstable);
        let b2 = pod(serde_json::json!([{"name": "a", "resources": {
            "requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "32Mi"}}}]));
        assert_eq!(qos_class(&b2), Qos::Burstable);
    }

    #[test]
    fn cri_resources() {
        let p = pod(serde_json::json!([{"name": "a", "resources": {
            "requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}}}]));
        let r = linux_resources(&p.spec.as_ref().unwrap().containers[0], qos_class(&p));
        assert_eq!((r.cpu_shares, r.cpu_period, r.cpu_quota), (256, 100_000, 50_000));
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, 0);
        let none = linux_resources(&k8s::Container::default(), Qos::BestEffort);
        assert_eq!(
            (none.cpu_shares, none.cpu_quota, none.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(none.oom_score_adj, 1000);
        // Only a limit: the request defaults to it.
        let p =
            pod(serde_json::json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        let r = linux_resources(&p.spec.as_ref().unwrap().containers[0], qos_class(&p));
        assert_eq!((r.cpu_shares, r.oom_score_adj), (1024, -997));
    }
}
