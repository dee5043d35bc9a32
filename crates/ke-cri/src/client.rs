//! [`CriClient`]: one gRPC channel to the runtime socket, serving both CRI services.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};

/// The CRI runtime socket of containerd.
pub const CONTAINERD_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// Default per-call timeout (v1.2 `runtimeRequestTimeout: 2`, in minutes).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The socket path of a `unix://` endpoint (or a bare absolute path).
pub fn socket_path(endpoint: &str) -> Result<&str> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(Error::Endpoint {
            endpoint: endpoint.to_owned(),
        })
    }
}

/// A CRI v1 client for the runtime and image services on one unix socket.
///
/// Cheap to clone (the gRPC channel is shared). The channel connects lazily and reconnects by
/// itself, so a client can be built while the runtime is down: calls then fail with
/// [`Error::Call`] (`Unavailable`) naming the call.
#[derive(Debug, Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeout: Duration,
    endpoint: String,
}

fn status_error(call: &'static str, s: &tonic::Status) -> Error {
    Error::Call {
        call,
        code: s.code(),
        message: s.message().to_owned(),
    }
}

impl CriClient {
    /// A client for `endpoint` (`unix:///run/containerd/containerd.sock` or a socket path) whose
    /// calls each time out after `timeout`. Does not connect yet.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self> {
        let path = socket_path(endpoint)?.to_owned();
        // The URI is required by tonic but unused: the connector always dials the socket.
        let channel = Endpoint::from_static("http://cri.local").connect_with_connector_lazy(
            tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }),
        );
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            timeout,
            endpoint: endpoint.to_owned(),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn call<T, F>(&self, call: &'static str, fut: F) -> Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(status_error(call, &s)),
            Err(_) => Err(Error::Timeout {
                call,
                timeout: self.timeout,
            }),
        }
    }

    /// `Version`: runtime name and version, CRI API version.
    pub async fn version(&self) -> Result<api::VersionResponse> {
        let mut c = self.runtime.clone();
        let req = api::VersionRequest {
            version: "v1".to_owned(),
        };
        self.call("Version", c.version(req)).await
    }

    /// `Status`: the runtime's conditions.
    pub async fn status(&self) -> Result<api::RuntimeStatus> {
        let mut c = self.runtime.clone();
        let r = self
            .call("Status", c.status(api::StatusRequest::default()))
            .await?;
        r.status.ok_or(Error::MissingField {
            call: "Status",
            field: "status",
        })
    }

    /// `Status`, then [`Error::NotReady`] unless `RuntimeReady` and `NetworkReady` are true.
    pub async fn ensure_ready(&self) -> Result<()> {
        let st = self.status().await?;
        let not_ready: Vec<String> = ["RuntimeReady", "NetworkReady"]
            .iter()
            .filter_map(|want| {
                let c = st.conditions.iter().find(|c| c.r#type == *want);
                match c {
                    Some(c) if c.status => None,
                    Some(c) => Some(format!("{want}=false ({}: {})", c.reason, c.message)),
                    None => Some(format!("{want} not reported")),
                }
            })
            .collect();
        if not_ready.is_empty() {
            Ok(())
        } else {
            Err(Error::NotReady(not_ready.join(", ")))
        }
    }

    /// `ImageStatus`: the image if the runtime has it.
    pub async fn image_status(&self, image: &str) -> Result<Option<api::Image>> {
        let mut c = self.images.clone();
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self.call("ImageStatus", c.image_status(req)).await?.image)
    }

    /// `PullImage`; returns the image reference.
    pub async fn pull_image(&self, image: &str) -> Result<String> {
        self.pull_image_with_auth(image, None).await
    }

    /// `PullImage` with registry credentials (an image pull secret's entry).
    pub async fn pull_image_with_auth(&self, image: &str, auth: Option<api::AuthConfig>) -> Result<String> {
        let mut c = self.images.clone();
        let req = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            ..Default::default()
        };
        Ok(self.call("PullImage", c.pull_image(req)).await?.image_ref)
    }

    /// The image id, pulling only if the runtime does not have it: a pull of a local tag still
    /// contacts the registry, which may be unreachable.
    pub async fn ensure_image(&self, image: &str) -> Result<String> {
        if let Some(img) = self.image_status(image).await? {
            return Ok(img.id);
        }
        tracing::info!(image, "image not present; pulling");
        self.pull_image(image).await
    }

    /// `ListImages` (all images).
    pub async fn list_images(&self) -> Result<Vec<api::Image>> {
        let mut c = self.images.clone();
        let req = api::ListImagesRequest { filter: None };
        Ok(self.call("ListImages", c.list_images(req)).await?.images)
    }

    /// `RemoveImage` by id or reference (a missing image is not an error for the runtime).
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let mut c = self.images.clone();
        let req = api::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        self.call("RemoveImage", c.remove_image(req)).await?;
        Ok(())
    }

    /// `ImageFsInfo`: the image filesystems (mount point, bytes used by images).
    pub async fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>> {
        let mut c = self.images.clone();
        Ok(self
            .call("ImageFsInfo", c.image_fs_info(api::ImageFsInfoRequest {}))
            .await?
            .image_filesystems)
    }

    /// `RunPodSandbox`; returns the sandbox id.
    pub async fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        Ok(self
            .call("RunPodSandbox", c.run_pod_sandbox(req))
            .await?
            .pod_sandbox_id)
    }

    /// `StopPodSandbox` (stops every container of the sandbox and tears its network down).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.call("StopPodSandbox", c.stop_pod_sandbox(req)).await?;
        Ok(())
    }

    /// `RemovePodSandbox` (removes its containers too).
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.call("RemovePodSandbox", c.remove_pod_sandbox(req)).await?;
        Ok(())
    }

    /// `PodSandboxStatus`.
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let mut c = self.runtime.clone();
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        self.call("PodSandboxStatus", c.pod_sandbox_status(req))
            .await?
            .status
            .ok_or(Error::MissingField {
                call: "PodSandboxStatus",
                field: "status",
            })
    }

    /// `ListPodSandbox` with a filter (`None`: all).
    pub async fn list_pod_sandboxes(
        &self,
        filter: Option<api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let mut c = self.runtime.clone();
        let req = api::ListPodSandboxRequest { filter };
        Ok(self.call("ListPodSandbox", c.list_pod_sandbox(req)).await?.items)
    }

    /// `CreateContainer` in `sandbox_id`; returns the container id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String> {
        let mut c = self.runtime.clone();
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .call("CreateContainer", c.create_container(req))
            .await?
            .container_id)
    }

    /// `StartContainer`.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.call("StartContainer", c.start_container(req)).await?;
        Ok(())
    }

    /// `StopContainer`: SIGTERM, then SIGKILL after `grace` (whole seconds).
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        };
        self.call("StopContainer", c.stop_container(req)).await?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = self.runtime.clone();
        let req = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.call("RemoveContainer", c.remove_container(req)).await?;
        Ok(())
    }

    /// `ListContainers` with a filter (`None`: all).
    pub async fn list_containers(&self, filter: Option<api::ContainerFilter>) -> Result<Vec<api::Container>> {
        let mut c = self.runtime.clone();
        let req = api::ListContainersRequest { filter };
        Ok(self
            .call("ListContainers", c.list_containers(req))
            .await?
            .containers)
    }

    /// `ContainerStatus`.
    pub async fn container_status(&self, id: &str) -> Result<api::ContainerStatus> {
        let mut c = self.runtime.clone();
        let req = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        self.call("ContainerStatus", c.container_status(req))
            .await?
            .status
            .ok_or(Error::MissingField {
                call: "ContainerStatus",
                field: "status",
            })
    }

    /// `ExecSync`: runs `cmd` in the container, waits up to `timeout` (whole seconds, 0 = no
    /// runtime-side limit; the client's request timeout still applies).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<api::ExecSyncResponse> {
        let mut c = self.runtime.clone();
        let req = api::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        self.call("ExecSync", c.exec_sync(req)).await
    }
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path(CONTAINERD_ENDPOINT).ok(),
            Some("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("/var/run/x.sock").ok(), Some("/var/run/x.sock"));
        assert!(matches!(
            socket_path("tcp://127.0.0.1:1"),
            Err(Error::Endpoint { .. })
        ));
        assert!(matches!(socket_path("unix://rel"), Err(Error::Endpoint { .. })));
    }
}
