//! Image pull secrets: the pod's `imagePullSecrets` (Secrets of type
//! `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson` = `{"auths": {...}}`, or the older
//! `kubernetes.io/dockercfg`, key `.dockercfg`) become CRI `AuthConfig`s for `PullImage`.
//!
//! The secrets are queried from metaManager in the **pod's** namespace (v1.2 used the node's
//! registration namespace — a bug). An entry matches an image when its registry host matches
//! (`docker.io`, `index.docker.io` and `registry-1.docker.io` are one; `*.example.com` globs one
//! label) and its path, if any, is a prefix of the image's repository. Longer (more specific)
//! keys are tried first; a missing secret is skipped with a warning, as the kubelet does.

use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use ke_beehive::Beehive;
use ke_cri::api;
use serde::Deserialize;

use crate::pod::PodId;

const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
    #[serde(default)]
    registrytoken: String,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, Entry>,
}

fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        h => h,
    }
}

/// (registry host, repository path) of an image reference, Docker's rules: the first component
/// is a registry only if it has a `.` or `:` or is `localhost`.
pub(crate) fn registry_of(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let (host, path) = if !first.is_empty() && (first.contains(['.', ':']) || first == "localhost") {
        (canonical_host(first), rest)
    } else {
        (DOCKER_HUB, name)
    };
    // Drop the tag from the last component.
    let path = match path.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => p,
        _ => path,
    };
    let path = if host == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    (host.to_owned(), path)
}

/// A config key (`https://index.docker.io/v1/`, `registry.example.com:5000/team`) as
/// (host, path prefix).
fn key_of(key: &str) -> (String, String) {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let path = match path {
        "v1" | "v2" => "",
        p => p,
    };
    (
        canonical_host(host).to_owned(),
        path.trim_end_matches('/').to_owned(),
    )
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// The credentials of a pull secret: (config key, auth), empty if the secret is not a docker
/// config or does not parse.
pub(crate) fn parse_secret(secret: &k8s::Secret) -> Vec<(String, api::AuthConfig)> {
    let data = secret.data.as_ref();
    let get = |k: &str| data.and_then(|d| d.get(k)).map(|b| b.0.as_slice());
    let auths = if let Some(bytes) = get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfigJson>(bytes).map(|c| c.auths)
    } else if let Some(bytes) = get(".dockercfg") {
        serde_json::from_slice(bytes)
    } else {
        return Vec::new();
    };
    let Ok(auths) = auths else {
        tracing::warn!(secret = ?secret.metadata.name, "image pull secret does not parse; ignored");
        return Vec::new();
    };
    auths
        .into_iter()
        .map(|(key, e)| {
            let server = key_of(&key).0;
            let auth = api::AuthConfig {
                username: e.username,
                password: e.password,
                auth: e.auth,
                server_address: server,
                identity_token: e.identitytoken,
                registry_token: e.registrytoken,
            };
            (key, auth)
        })
        .collect()
}

/// The credentials that apply to `image`, most specific key first.
pub(crate) fn select(image: &str, creds: &[(String, api::AuthConfig)]) -> Vec<api::AuthConfig> {
    let (host, path) = registry_of(image);
    let mut hits: Vec<(usize, &api::AuthConfig)> = creds
        .iter()
        .filter_map(|(key, auth)| {
            let (khost, kpath) = key_of(key);
            let path_ok = kpath.is_empty() || path == kpath || path.starts_with(&format!("{kpath}/"));
            (host_matches(&khost, &host) && path_ok).then_some((khost.len() + kpath.len(), auth))
        })
        .collect();
    hits.sort_by_key(|(specificity, _)| std::cmp::Reverse(*specificity));
    hits.into_iter().map(|(_, a)| a.clone()).collect()
}

/// The credentials of the pod's `imagePullSecrets` for `image`, queried from metaManager.
pub(crate) async fn auths_for(
    hive: &Beehive,
    pod: &k8s::Pod,
    image: &str,
    timeout: Duration,
) -> Vec<api::AuthConfig> {
    let names = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_deref())
        .unwrap_or_default();
    let ns = PodId::of(pod).namespace;
    let mut creds = Vec::new();
    for r in names {
        match crate::volume::query::<k8s::Secret>(hive, &ns, "secret", &r.name, timeout).await {
            Ok(Some(s)) => creds.extend(parse_secret(&s)),
            Ok(None) => {
                tracing::warn!(secret = %r.name, namespace = %ns, "image pull secret not found; pulling without it")
            }
            Err(e) => {
                tracing::warn!(secret = %r.name, %e, "image pull secret not available; pulling without it")
            }
        }
    }
    select(image, &creds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(key: &str, json: serde_json::Value) -> k8s::Secret {
        k8s::Secret {
            data: Some([(key.to_owned(), ByteString(serde_json::to_vec(&json).unwrap()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn image_registries() {
        assert_eq!(
            registry_of("busybox"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            registry_of("busybox:1.36"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            registry_of("docker.io/kubeedge/pause:3.6"),
            ("docker.io".into(), "kubeedge/pause".into())
        );
        assert_eq!(
            registry_of("registry.example.com:5000/team/app@sha256:abc"),
            ("registry.example.com:5000".into(), "team/app".into())
        );
        assert_eq!(registry_of("localhost/app:1"), ("localhost".into(), "app".into()));
        assert_eq!(
            registry_of("index.docker.io/me/app"),
            ("docker.io".into(), "me/app".into())
        );
    }

    #[test]
    fn parse_and_select() {
        let s = secret(
            ".dockerconfigjson",
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "registry.example.com": {"username": "u", "password": "p"},
                "registry.example.com/team": {"username": "team", "password": "t"},
                "*.corp.example": {"identitytoken": "tok"}
            }}),
        );
        let creds = parse_secret(&s);
        assert_eq!(creds.len(), 4);
        let hub = select("busybox", &creds);
        assert_eq!(hub.len(), 1);
        assert_eq!(
            (hub[0].auth.as_str(), hub[0].server_address.as_str()),
            ("dXNlcjpwYXNz", "docker.io")
        );
        // The more specific key first, the host-wide one as a fallback.
        let team = select("registry.example.com/team/app:1", &creds);
        let users: Vec<&str> = team.iter().map(|a| a.username.as_str()).collect();
        assert_eq!(users, ["team", "u"]);
        let other = select("registry.example.com/else/app", &creds);
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].username, "u");
        assert_eq!(select("a.corp.example/x", &creds)[0].identity_token, "tok");
        assert!(select("a.b.corp.example/x", &creds).is_empty());
        assert!(select("quay.io/x/y", &creds).is_empty());
    }

    #[test]
    fn legacy_dockercfg_and_garbage() {
        let s = secret(
            ".dockercfg",
            serde_json::json!({"quay.io": {"username": "q", "password": "w"}}),
        );
        assert_eq!(select("quay.io/org/img", &parse_secret(&s))[0].username, "q");
        let bad = k8s::Secret {
            data: Some([(".dockerconfigjson".to_owned(), ByteString(b"not json".to_vec()))].into()),
            ..Default::default()
        };
        assert!(parse_secret(&bad).is_empty());
        assert!(parse_secret(&k8s::Secret::default()).is_empty());
    }
}
