//! The bootstrap token published in Kubernetes (KubeEdge v1.3): Secret `kubeedge/tokensecret`, data key
//! `tokendata` = the current full token `<caHash>.<jwt>`, which `keadm gettoken` prints.
//!
//! [`run`] keeps it current: at start it reuses the stored token if it verifies with this CA's key and
//! has more than half its validity left, otherwise it issues a new one (creating the namespace
//! `kubeedge` and the Secret when absent); then it replaces the token when half its validity has
//! passed (12 h for the default 24 h). A replaced token stays valid until its own `exp`, so an edge
//! holding it can still join. Only used when `modules.cloudhub.https.enable` is true.
//!
//! Kubernetes access needed (build/rbac/cloudcore.yaml): namespaces `create` (only if `kubeedge` is
//! absent), secrets `get`, `create` and `patch` in namespace `kubeedge`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use ke_pki::token::{self, TokenKey};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Errors while publishing the token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: &'static str,
        /// The kube error.
        source: kube::Error,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(what: &'static str) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { what, source }
}

use crate::api_status as status;

/// The token stored in the Secret, if any (absent Secret or key: `None`).
pub async fn read(client: &kube::Client) -> Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), token::SECRET_NAMESPACE);
    let secret = match secrets.get(token::SECRET_NAME).await {
        Ok(s) => s,
        Err(e) if status(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(api_err("reading Secret kubeedge/tokensecret")(e)),
    };
    Ok(secret
        .data
        .and_then(|mut d| d.remove(token::SECRET_DATA_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_owned()))
}

/// Writes `token` into the Secret, creating the namespace and the Secret when absent.
pub async fn write(client: &kube::Client, token: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), token::SECRET_NAMESPACE);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(token::SECRET_NAME.to_owned()),
            namespace: Some(token::SECRET_NAMESPACE.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            token::SECRET_DATA_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    };
    for _ in 0..2 {
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(()),
            Err(e) if status(&e) == Some(409) => {
                let patch = serde_json::json!({ "data": secret.data });
                secrets
                    .patch(token::SECRET_NAME, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(api_err("updating Secret kubeedge/tokensecret"))?;
                return Ok(());
            }
            Err(e) if status(&e) == Some(404) => {
                // The namespace is missing.
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(token::SECRET_NAMESPACE.to_owned()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match namespaces.create(&PostParams::default(), &ns).await {
                    Ok(_) => info!("created namespace kubeedge"),
                    Err(e) if status(&e) == Some(409) => {}
                    Err(e) => return Err(api_err("creating namespace kubeedge")(e)),
                }
            }
            Err(e) => return Err(api_err("creating Secret kubeedge/tokensecret")(e)),
        }
    }
    Ok(())
}

/// Makes sure the Secret holds a token of `key` with more than half of `validity` left; returns its
/// expiry (Unix seconds).
pub async fn ensure(client: &kube::Client, key: &TokenKey, validity: Duration) -> Result<u64> {
    let now = token::unix_now();
    let half = validity.as_secs() / 2;
    if let Some(stored) = read(client).await?
        && let Ok(exp) = key.verify_at(&stored, now)
        && exp > now + half
    {
        return Ok(exp);
    }
    let fresh = key.issue(validity);
    let exp = fresh.expires_unverified().unwrap_or(now);
    write(client, &fresh.to_string()).await?;
    info!(
        exp,
        "published a new bootstrap token in Secret kubeedge/tokensecret (`keadm gettoken` prints it)"
    );
    Ok(exp)
}

/// Keeps the Secret's token current until `cancel` fires; errors are logged and retried.
pub async fn run(client: kube::Client, key: Arc<TokenKey>, validity: Duration, cancel: CancellationToken) {
    let half = validity / 2;
    loop {
        let wait = match ensure(&client, &key, validity).await {
            Ok(exp) => {
                let left = Duration::from_secs(exp.saturating_sub(token::unix_now()));
                left.saturating_sub(half).max(Duration::from_secs(60))
            }
            Err(e) => {
                warn!(error = %e, "cannot publish the bootstrap token; retrying in 10 s");
                Duration::from_secs(10)
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
