//! The Kubernetes client from `kubeAPIConfig`.
//!
//! As in v1.2 (`clientcmd.BuildConfigFromFlags(master, kubeConfig)`): the kubeconfig's current
//! context, with `master` (when set) overriding its server URL; with neither, the in-cluster
//! service-account configuration. Every call goes through a token bucket of
//! `kubeAPIConfig.qps`/`burst` ([`crate::ratelimit`]), as client-go's limiter did in v1.2.
//!
//! [`counted`] gives each controller a view of that client that counts its requests by verb
//! (`controller_api_requests_total{controller,verb}`). [`watch`] is the controllers' watch of one
//! resource kind, retried with back-off.

use std::task::{Context, Poll};

use cloudhub::metrics::ControllerHandle;
use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use ke_config::cloudcore::KubeApiConfig;
use kube::client::Body;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::ratelimit::RateLimitLayer;
use crate::{Error, Result};

/// Where the client configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `kubeConfig` (and maybe `master`).
    Kubeconfig,
    /// `master` alone (no credentials).
    Master,
    /// In-cluster service account.
    InCluster,
}

/// Builds the client configuration. `Ok(None)` when neither `kubeConfig` nor `master` is set and
/// cloudcore does not run in a cluster: the caller runs without the controllers.
pub async fn config(cfg: &KubeApiConfig) -> Result<Option<(kube::Config, Source)>> {
    let master = parse_master(&cfg.master)?;
    if !cfg.kube_config.is_empty() {
        let kc = Kubeconfig::read_from(&cfg.kube_config).map_err(|source| Error::Kubeconfig {
            path: cfg.kube_config.clone(),
            source,
        })?;
        let mut c = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|source| Error::Kubeconfig {
                path: cfg.kube_config.clone(),
                source,
            })?;
        if let Some(m) = master {
            c.cluster_url = m;
        }
        return Ok(Some((c, Source::Kubeconfig)));
    }
    if let Some(m) = master {
        return Ok(Some((kube::Config::new(m), Source::Master)));
    }
    Ok(kube::Config::incluster().ok().map(|c| (c, Source::InCluster)))
}

/// A client for [`config`], rate-limited to `qps` requests per second with bursts of `burst`.
pub async fn client(cfg: &KubeApiConfig) -> Result<Option<kube::Client>> {
    client_limited(cfg, f64::from(cfg.qps), u32::try_from(cfg.burst).unwrap_or(0)).await
}

/// A client for [`config`] with a rate limit of its own (`qps`, bursts of `burst`).
pub async fn client_limited(cfg: &KubeApiConfig, qps: f64, burst: u32) -> Result<Option<kube::Client>> {
    let Some((c, _)) = config(cfg).await? else {
        return Ok(None);
    };
    let limit = RateLimitLayer::new(qps, burst);
    let builder = kube::client::ClientBuilder::try_from(c).map_err(Error::Client)?;
    Ok(Some(builder.with_layer(&limit).build()))
}

/// `client`, counting every request in `metrics` by verb (see [`verb`]). The requests still go
/// through `client`'s stack (and its rate limit).
pub fn counted(client: &kube::Client, metrics: ControllerHandle) -> kube::Client {
    let ns = client.default_namespace().to_owned();
    kube::Client::new(
        Counted {
            client: client.clone(),
            metrics,
        },
        ns,
    )
}

#[derive(Clone)]
struct Counted {
    client: kube::Client,
    metrics: ControllerHandle,
}

impl tower::Service<Request<Body>> for Counted {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.metrics.api_request(verb(req.method(), req.uri()));
        let client = self.client.clone();
        Box::pin(async move { client.send(req).await })
    }
}

/// The Kubernetes verb of a request: `watch` (`?watch=…`), `list` (GET of a collection), `get`,
/// `create`, `update`, `patch`, `delete` (`deletecollection` for a collection), else `other`.
pub fn verb(method: &Method, uri: &http::Uri) -> &'static str {
    let query = uri.query().unwrap_or_default();
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    // Path segments after `/api/<v>` or `/apis/<g>/<v>`, namespace prefix dropped.
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segs.first() {
        Some(&"api") => segs.get(2..),
        Some(&"apis") => segs.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        r => r,
    };
    let collection = rest.len() == 1;
    match *method {
        Method::GET if watch => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => "other",
    }
}

fn parse_master(master: &str) -> Result<Option<http::Uri>> {
    if master.is_empty() {
        return Ok(None);
    }
    let uri: http::Uri = master.parse().map_err(|e: http::uri::InvalidUri| Error::Master {
        master: master.to_owned(),
        reason: e.to_string(),
    })?;
    if uri.scheme().is_none() || uri.host().is_none() {
        return Err(Error::Master {
            master: master.to_owned(),
            reason: "expected scheme://host[:port]".into(),
        });
    }
    Ok(Some(uri))
}

/// Watches every `K` matching `cfg` (all namespaces), each event mapped through `wrap`. A failed
/// watch is logged and retried with kube's default back-off, so the stream only ends with the
/// client.
pub fn watch<K, T>(
    client: &kube::Client,
    cfg: kube::runtime::watcher::Config,
    wrap: fn(kube::runtime::watcher::Event<K>) -> T,
) -> futures_util::stream::BoxStream<'static, T>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    T: Send + 'static,
{
    use futures_util::StreamExt;
    use kube::runtime::WatchStreamExt;
    let api: kube::Api<K> = kube::Api::all(client.clone());
    let what = K::plural(&()).into_owned();
    kube::runtime::watcher::watcher(api, cfg)
        .default_backoff()
        .filter_map(move |r| {
            let out = match r {
                Ok(ev) => Some(wrap(ev)),
                Err(e) => {
                    tracing::warn!(resource = %what, "watch failed (retrying with back-off): {e}");
                    None
                }
            };
            std::future::ready(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_from_method_and_path() {
        let v = |m: Method, u: &str| verb(&m, &u.parse().unwrap());
        assert_eq!(v(Method::GET, "/api/v1/pods?"), "list");
        assert_eq!(
            v(Method::GET, "/api/v1/pods?watch=true&resourceVersion=5"),
            "watch"
        );
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns/pods/p"), "get");
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns/pods"), "list");
        assert_eq!(v(Method::GET, "/api/v1/namespaces"), "list");
        assert_eq!(v(Method::GET, "/api/v1/namespaces/ns"), "get");
        assert_eq!(v(Method::GET, "/api/v1/nodes/n"), "get");
        assert_eq!(
            v(
                Method::GET,
                "/apis/reliablesyncs.kubeedge.io/v1alpha1/objectsyncs"
            ),
            "list"
        );
        assert_eq!(
            v(
                Method::PATCH,
                "/apis/reliablesyncs.kubeedge.io/v1alpha1/namespaces/ns/objectsyncs/a.b/status"
            ),
            "patch"
        );
        assert_eq!(v(Method::POST, "/api/v1/namespaces/ns/pods"), "create");
        assert_eq!(v(Method::PUT, "/api/v1/nodes/n/status"), "update");
        assert_eq!(v(Method::DELETE, "/api/v1/namespaces/ns/pods/p"), "delete");
    }

    #[tokio::test]
    async fn master_alone_gives_its_url() {
        let cfg = KubeApiConfig {
            kube_config: String::new(),
            master: "https://127.0.0.1:6443".into(),
            ..Default::default()
        };
        let (c, src) = config(&cfg).await.unwrap().unwrap();
        assert_eq!(src, Source::Master);
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
    }

    #[tokio::test]
    async fn bad_master_and_missing_kubeconfig_are_errors_naming_the_field() {
        let cfg = KubeApiConfig {
            kube_config: String::new(),
            master: "not a url".into(),
            ..Default::default()
        };
        let e = config(&cfg).await.unwrap_err().to_string();
        assert!(e.contains("kubeAPIConfig.master"), "{e}");
        let cfg = KubeApiConfig {
            kube_config: "/nonexistent/kubeconfig".into(),
            ..Default::default()
        };
        let e = config(&cfg).await.unwrap_err().to_string();
        assert!(e.contains("/nonexistent/kubeconfig"), "{e}");
    }

    #[tokio::test]
    async fn master_overrides_the_kubeconfig_server() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(
            &p,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: 'https://10.0.0.1:6443'}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .unwrap();
        let mut cfg = KubeApiConfig {
            kube_config: p.to_str().unwrap().into(),
            ..Default::default()
        };
        let (c, _) = config(&cfg).await.unwrap().unwrap();
        assert_eq!(c.cluster_url.host(), Some("10.0.0.1"));
        cfg.master = "https://127.0.0.2:7443".into();
        let (c, src) = config(&cfg).await.unwrap().unwrap();
        assert_eq!(src, Source::Kubeconfig);
        assert_eq!(c.cluster_url.host(), Some("127.0.0.2"));
    }
}
