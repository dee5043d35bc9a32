//! The Kubernetes side of `keadm init`: reach the API server, check its version, and apply the
//! CRDs and cloudcore's RBAC (server-side apply: creating or updating is the same call, so `init`
//! can be run again).

use std::path::Path;

use anyhow::{Context, bail};
use ke_config::cloudcore::KubeApiConfig;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};

/// The manifests `init` applies, in order (the namespace first, CRDs before anything using them).
pub(crate) const MANIFESTS: [(&str, &str); 5] = [
    (
        "build/rbac/cloudcore.yaml",
        include_str!("../../../build/rbac/cloudcore.yaml"),
    ),
    (
        "build/crds/devices/devices_v1alpha1_devicemodel.yaml",
        include_str!("../../../build/crds/devices/devices_v1alpha1_devicemodel.yaml"),
    ),
    (
        "build/crds/devices/devices_v1alpha1_device.yaml",
        include_str!("../../../build/crds/devices/devices_v1alpha1_device.yaml"),
    ),
    (
        "build/crds/reliablesyncs/cluster_objectsync_v1alpha1.yaml",
        include_str!("../../../build/crds/reliablesyncs/cluster_objectsync_v1alpha1.yaml"),
    ),
    (
        "build/crds/reliablesyncs/objectsync_v1alpha1.yaml",
        include_str!("../../../build/crds/reliablesyncs/objectsync_v1alpha1.yaml"),
    ),
];

/// A client from a kubeconfig path (and optional server URL override).
pub(crate) async fn client(kubeconfig: &Path, master: &str) -> anyhow::Result<Client> {
    if !kubeconfig.is_file() {
        bail!(
            "kubeconfig {} not found: pass --kube-config PATH (or --local to bring up the local control plane)",
            kubeconfig.display()
        );
    }
    let cfg = KubeApiConfig {
        kube_config: kubeconfig.display().to_string(),
        master: master.to_owned(),
        ..Default::default()
    };
    edgecontroller::kubeclient::client(&cfg)
        .await
        .with_context(|| format!("loading kubeconfig {}", kubeconfig.display()))?
        .context("no kubeconfig and no --master")
}

/// The server's `major.minor`; fails clearly when it cannot be reached or is older than 1.11.
pub(crate) async fn check_version(client: &Client) -> anyhow::Result<String> {
    let v = client
        .apiserver_version()
        .await
        .context("the Kubernetes API server cannot be reached")?;
    let minor: u32 = v.minor.trim_end_matches('+').parse().unwrap_or(0);
    if v.major != "1" || minor < 11 {
        bail!(
            "Kubernetes {}.{} is too old: KubeEdge needs 1.11 or newer",
            v.major,
            v.minor
        );
    }
    Ok(v.git_version)
}

/// Kinds the embedded manifests use: (kind, plural, namespaced).
fn resource_of(kind: &str) -> Option<(&'static str, bool)> {
    Some(match kind {
        "Namespace" => ("namespaces", false),
        "ServiceAccount" => ("serviceaccounts", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        "Role" => ("roles", true),
        "RoleBinding" => ("rolebindings", true),
        "CustomResourceDefinition" => ("customresourcedefinitions", false),
        _ => return None,
    })
}

/// Splits a multi-document YAML file into objects.
pub(crate) fn documents(text: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    let mut doc = String::new();
    let mut flush = |doc: &mut String| -> anyhow::Result<()> {
        let has_content = doc
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        if has_content {
            let obj: DynamicObject = serde_saphyr::from_str(doc).context("bad manifest document")?;
            out.push(obj);
        }
        doc.clear();
        Ok(())
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut doc)?;
        } else {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    flush(&mut doc)?;
    Ok(out)
}

/// Applies every object of the embedded manifests; returns `kind/name` of each.
pub(crate) async fn apply_manifests(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    let pp = PatchParams::apply("keadm").force();
    for (file, text) in MANIFESTS {
        for obj in documents(text).with_context(|| file.to_owned())? {
            let types = obj
                .types
                .clone()
                .with_context(|| format!("{file}: object without apiVersion/kind"))?;
            let (plural, namespaced) = resource_of(&types.kind)
                .with_context(|| format!("{file}: keadm does not apply kind {}", types.kind))?;
            let (group, version) = types
                .api_version
                .split_once('/')
                .unwrap_or(("", types.api_version.as_str()));
            let gvk = GroupVersionKind::gvk(group, version, &types.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
            let name = obj.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match (&obj.metadata.namespace, namespaced) {
                (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &ar),
                _ => Api::all_with(client.clone(), &ar),
            };
            api.patch(&name, &pp, &Patch::Apply(&obj))
                .await
                .with_context(|| format!("applying {} {name} ({file})", types.kind))?;
            applied.push(format!("{}/{name}", types.kind));
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_object_is_of_a_known_kind() {
        let mut kinds = Vec::new();
        for (file, text) in MANIFESTS {
            let docs = documents(text).unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert!(!docs.is_empty(), "{file} has no objects");
            for d in docs {
                let t = d.types.expect("types");
                assert!(resource_of(&t.kind).is_some(), "{file}: {}", t.kind);
                assert!(d.metadata.name.is_some(), "{file}: unnamed {}", t.kind);
                kinds.push(t.kind);
            }
        }
        assert_eq!(kinds.first().map(String::as_str), Some("Namespace"));
        assert_eq!(
            kinds.iter().filter(|k| *k == "CustomResourceDefinition").count(),
            4
        );
    }
}
