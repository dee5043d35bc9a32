//! Container environment: `env` values, `env.valueFrom` (`configMapKeyRef`, `secretKeyRef`,
//! `fieldRef`, `resourceFieldRef`) and `envFrom` (`configMapRef`, `secretRef`, with `prefix`).
//!
//! ConfigMaps and Secrets are queried from metaManager (`<podNs>/configmap/<name>`,
//! `<podNs>/secret/<name>`) when the container starts. `envFrom` comes first, `env` overrides it;
//! a missing object or key fails the container start unless `optional: true`. `envFrom` keys that
//! are not valid variable names are left out.
//!
//! `$(VAR)` expansion ([`expand`]) as the kubelet does it: an `env[].value` may name `envFrom`
//! variables and `env` entries defined before it; `command` and `args` ([`expand_command`]) may
//! name any variable of the final environment. `$$` is a literal `$` (so `$$(VAR)` stays
//! `$(VAR)`), references to unknown variables and incomplete ones (`$(VAR`) stay as written.
//! `valueFrom` and `envFrom` values are never expanded.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use ke_beehive::Beehive;
use ke_cri::api;

use crate::pod::PodId;

/// Why a container's environment cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// metaManager did not answer or the object does not parse.
    #[error("env: {what} {name}: {reason}")]
    Source {
        /// `configmap` or `secret`.
        what: &'static str,
        /// The object's name.
        name: String,
        /// The reason.
        reason: String,
    },
    /// A non-optional object or key does not exist.
    #[error("env {var}: {what} {name} has no key {key:?} (or does not exist)")]
    Missing {
        /// The variable.
        var: String,
        /// `configmap` or `secret`.
        what: &'static str,
        /// The object's name.
        name: String,
        /// The key.
        key: String,
    },
    /// A non-optional `envFrom` object does not exist.
    #[error("envFrom: {what} {name} not found")]
    MissingFrom {
        /// `configmap` or `secret`.
        what: &'static str,
        /// The object's name.
        name: String,
    },
    /// `fieldRef` / `resourceFieldRef` names something not supported.
    #[error("env {var}: unsupported {what} {path:?}")]
    Field {
        /// The variable.
        var: String,
        /// `fieldPath` or `resource`.
        what: &'static str,
        /// What it names.
        path: String,
    },
}

/// Result of environment building.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// What `fieldRef` and `resourceFieldRef` read besides the pod.
#[derive(Debug, Clone, Default)]
pub(crate) struct Downward<'a> {
    pub(crate) pod_ip: &'a str,
    pub(crate) host_ip: &'a str,
    pub(crate) node_name: &'a str,
    /// Node capacity: what an unset cpu limit (milli-CPU) means.
    pub(crate) node_milli_cpu: i64,
    /// Node capacity: what an unset memory limit (bytes) means.
    pub(crate) node_memory: i64,
}

/// The value of `fieldRef.fieldPath` for `pod`.
pub(crate) fn field_value(pod: &k8s::Pod, path: &str, d: &Downward<'_>) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => PodId::of(pod).namespace,
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| d.node_name.to_owned()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => d.pod_ip.to_owned(),
        "status.podIPs" => d.pod_ip.to_owned(),
        "status.hostIP" => d.host_ip.to_owned(),
        _ => {
            return keyed("metadata.labels['", m.labels.as_ref())
                .or_else(|| keyed("metadata.annotations['", m.annotations.as_ref()));
        }
    })
}

/// The value of a `resourceFieldRef` of container `c`: limits default to node capacity,
/// rounded up to whole `divisor`s (default 1).
pub(crate) fn resource_value(
    c: &k8s::Container,
    r: &k8s::ResourceFieldSelector,
    d: &Downward<'_>,
) -> Option<String> {
    use crate::resources::parse_scaled;
    let res = c.resources.as_ref();
    let (map, name) = r.resource.split_once('.')?;
    let table = match map {
        "limits" => res.and_then(|x| x.limits.as_ref()),
        "requests" => res.and_then(|x| x.requests.as_ref()),
        _ => return None,
    };
    let (scale, unit, fallback) = match name {
        "cpu" => (1000.0, 1000, if map == "limits" { d.node_milli_cpu } else { 0 }),
        "memory" => (1.0, 1, if map == "limits" { d.node_memory } else { 0 }),
        _ => return None,
    };
    let value = match table.and_then(|t| t.get(name)) {
        Some(q) => parse_scaled(&q.0, scale)?,
        None => fallback,
    };
    let divisor = r
        .divisor
        .as_ref()
        .map_or(Some(unit), |q| parse_scaled(&q.0, scale))?
        .max(1);
    Some(((value + divisor - 1) / divisor).to_string())
}

fn valid_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// ConfigMaps and Secrets fetched once per environment.
struct Objects<'a> {
    hive: &'a Beehive,
    ns: String,
    timeout: Duration,
    maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
}

impl Objects<'_> {
    async fn get(&mut self, what: &'static str, name: &str) -> Result<Option<&BTreeMap<String, String>>> {
        let source = |reason: String| Error::Source {
            what,
            name: name.to_owned(),
            reason,
        };
        let cache = if what == "configmap" {
            &mut self.maps
        } else {
            &mut self.secrets
        };
        if !cache.contains_key(name) {
            let data = if what == "configmap" {
                let cm: Option<k8s::ConfigMap> =
                    crate::volume::query(self.hive, &self.ns, what, name, self.timeout)
                        .await
                        .map_err(source)?;
                cm.map(|o| o.data.unwrap_or_default())
            } else {
                let s: Option<k8s::Secret> =
                    crate::volume::query(self.hive, &self.ns, what, name, self.timeout)
                        .await
                        .map_err(source)?;
                s.map(|o| {
                    let mut d: BTreeMap<String, String> = o
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    d.extend(o.string_data.unwrap_or_default());
                    d
                })
            };
            cache.insert(name.to_owned(), data);
        }
        Ok(cache.get(name).and_then(Option::as_ref))
    }
}

/// Expands `$(NAME)` references in `input` through `lookup`, as the kubelet does: `$$` is one
/// literal `$`, an unknown name or an unclosed `$(` stays as written, any other `$` is literal.
pub(crate) fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.split_once(')') {
                Some((name, tail)) => {
                    match lookup(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = tail;
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn lookup<'a>(envs: &'a [api::KeyValue]) -> impl Fn(&str) -> Option<&'a str> {
    |name| envs.iter().find(|kv| kv.key == name).map(|kv| kv.value.as_str())
}

/// Container `c`'s `command` and `args` with `$(VAR)` references to `envs` (its resolved
/// environment) expanded.
pub(crate) fn expand_command(c: &k8s::Container, envs: &[api::KeyValue]) -> (Vec<String>, Vec<String>) {
    let all = |v: &Option<Vec<String>>| v.iter().flatten().map(|s| expand(s, lookup(envs))).collect();
    (all(&c.command), all(&c.args))
}

fn set(out: &mut Vec<api::KeyValue>, key: String, value: String) {
    match out.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = value,
        None => out.push(api::KeyValue { key, value }),
    }
}

/// The CRI environment of container `c` of `pod`.
pub(crate) async fn resolve(
    hive: &Beehive,
    pod: &k8s::Pod,
    c: &k8s::Container,
    d: &Downward<'_>,
    timeout: Duration,
) -> Result<Vec<api::KeyValue>> {
    let mut objs = Objects {
        hive,
        ns: PodId::of(pod).namespace,
        timeout,
        maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut out = Vec::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (what, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => ("configmap", r.name.as_str(), r.optional == Some(true)),
            (None, Some(r)) => ("secret", r.name.as_str(), r.optional == Some(true)),
            (None, None) => continue,
        };
        match objs.get(what, name).await? {
            Some(data) => {
                for (k, v) in data {
                    let key = format!("{prefix}{k}");
                    if valid_name(&key) {
                        set(&mut out, key, v.clone());
                    } else {
                        tracing::debug!(%key, "envFrom key is not a valid variable name; left out");
                    }
                }
            }
            None if optional => {}
            None => {
                return Err(Error::MissingFrom {
                    what,
                    name: name.to_owned(),
                });
            }
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else {
            let value = expand(e.value.as_deref().unwrap_or_default(), lookup(&out));
            set(&mut out, e.name.clone(), value);
            continue;
        };
        let keyed = match (&from.config_map_key_ref, &from.secret_key_ref) {
            (Some(r), _) => Some((
                "configmap",
                r.name.as_str(),
                r.key.as_str(),
                r.optional == Some(true),
            )),
            (None, Some(r)) => Some((
                "secret",
                r.name.as_str(),
                r.key.as_str(),
                r.optional == Some(true),
            )),
            (None, None) => None,
        };
        let value = if let Some((what, name, key, optional)) = keyed {
            match objs.get(what, name).await?.and_then(|d| d.get(key)) {
                Some(v) => v.clone(),
                None if optional => continue,
                None => {
                    return Err(Error::Missing {
                        var: e.name.clone(),
                        what,
                        name: name.to_owned(),
                        key: key.to_owned(),
                    });
                }
            }
        } else if let Some(f) = &from.field_ref {
            field_value(pod, &f.field_path, d).ok_or_else(|| Error::Field {
                var: e.name.clone(),
                what: "fieldPath",
                path: f.field_path.clone(),
            })?
        } else if let Some(r) = &from.resource_field_ref {
            resource_value(c, r, d).ok_or_else(|| Error::Field {
                var: e.name.clone(),
                what: "resource",
                path: r.resource.clone(),
            })?
        } else {
            continue;
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> k8s::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "c",
                "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]}
        }))
        .unwrap()
    }

    fn d() -> Downward<'static> {
        Downward {
            pod_ip: "10.88.0.7",
            host_ip: "192.0.2.10",
            node_name: "edge-1",
            node_milli_cpu: 2000,
            node_memory: 1 << 30,
        }
    }

    #[test]
    fn field_paths() {
        let p = pod();
        let f = |path: &str| field_value(&p, path, &d());
        assert_eq!(f("metadata.name").as_deref(), Some("p"));
        assert_eq!(f("metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(f("metadata.uid").as_deref(), Some("u-1"));
        assert_eq!(f("spec.nodeName").as_deref(), Some("edge-1"));
        assert_eq!(f("spec.serviceAccountName").as_deref(), Some("sa"));
        assert_eq!(f("status.podIP").as_deref(), Some("10.88.0.7"));
        assert_eq!(f("status.hostIP").as_deref(), Some("192.0.2.10"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Some("web"));
        assert_eq!(f("metadata.annotations['x']").as_deref(), Some(""));
        assert_eq!(f("spec.nope"), None);
    }

    #[test]
    fn resource_fields() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = |res: &str, div: Option<&str>| {
            let sel = k8s::ResourceFieldSelector {
                resource: res.to_owned(),
                divisor: div.map(|s| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.to_owned())),
                ..Default::default()
            };
            resource_value(c, &sel, &d())
        };
        assert_eq!(r("limits.memory", None).as_deref(), Some("67108864"));
        assert_eq!(r("limits.memory", Some("1Mi")).as_deref(), Some("64"));
        assert_eq!(r("requests.cpu", None).as_deref(), Some("1"));
        assert_eq!(r("requests.cpu", Some("1m")).as_deref(), Some("250"));
        assert_eq!(r("limits.cpu", None).as_deref(), Some("2"), "node capacity");
        assert_eq!(r("limits.gpu", None), None);
    }

    /// The kubelet's documented expansion cases (`third_party/forked/golang/expansion`).
    #[test]
    fn expansion_cases() {
        let vars = BTreeMap::from([
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]);
        let x = |s: &str| expand(s, |n| vars.get(n).copied());
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)-1", "A-1"),
            ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
            ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("$(VAR_EMPTY)", ""),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("$(VAR_A)$", "A$"),
            ("$", "$"),
            ("$$", "$"),
            ("$(", "$("),
            ("$()", "$()"),
            ("$(VAR_A", "$(VAR_A"),
            ("$$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("$(VAR_A)$(", "A$("),
            ("$(VAR_A)$(VAR_B", "A$(VAR_B"),
            ("$(😄)", "$(😄)"),
            ("ünïcode $(VAR_A) ✓", "ünïcode A ✓"),
            ("no refs", "no refs"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(x(input), want, "{input:?}");
        }
    }

    #[test]
    fn env_and_command_expansion_order() {
        // envFrom values and earlier entries are visible to a value; later ones are not.
        let c: k8s::Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "command": ["$(SH)", "-c"],
            "args": ["echo $(FIRST) $(SECOND) $$(FIRST) $(NOPE)"],
        }))
        .unwrap();
        let mut out = vec![api::KeyValue {
            key: "SH".into(),
            value: "/bin/sh".into(),
        }];
        for (k, v) in [("FIRST", "1-$(SECOND)"), ("SECOND", "2-$(FIRST)-$(SH)")] {
            let value = expand(v, lookup(&out));
            set(&mut out, k.to_owned(), value);
        }
        assert_eq!(lookup(&out)("FIRST"), Some("1-$(SECOND)"));
        assert_eq!(lookup(&out)("SECOND"), Some("2-1-$(SECOND)-/bin/sh"));
        let (cmd, args) = expand_command(&c, &out);
        assert_eq!(cmd, ["/bin/sh", "-c"]);
        assert_eq!(args, ["echo 1-$(SECOND) 2-1-$(SECOND)-/bin/sh $(FIRST) $(NOPE)"]);
    }

    #[test]
    fn names() {
        assert!(valid_name("A_B.c-1"));
        assert!(!valid_name("1A"));
        assert!(!valid_name("a b"));
    }
}
