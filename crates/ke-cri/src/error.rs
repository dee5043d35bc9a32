//! Errors of the CRI client: every one names the CRI call (or the endpoint) it came from.

use std::time::Duration;

/// What went wrong talking to the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `remoteRuntimeEndpoint` is not a `unix://` URL or an absolute socket path.
    #[error(
        "invalid CRI endpoint {endpoint:?}: only unix sockets are supported \
         (e.g. unix:///run/containerd/containerd.sock)"
    )]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
    },
    /// The runtime answered the call with a gRPC error (this includes "cannot connect", as
    /// `Unavailable`).
    #[error("CRI {call} failed ({code:?}): {message}")]
    Call {
        /// The CRI method, e.g. `RunPodSandbox`.
        call: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// The call did not finish within the request timeout.
    #[error("CRI {call} timed out after {timeout:?}")]
    Timeout {
        /// The CRI method.
        call: &'static str,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The runtime answered without a field the call cannot do without.
    #[error("CRI {call}: the runtime's reply has no {field}")]
    MissingField {
        /// The CRI method.
        call: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The runtime reports itself not ready (`Status` conditions).
    #[error("container runtime not ready: {0}")]
    NotReady(String),
}

impl Error {
    /// True for a `NotFound` answer (the sandbox, container or image does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Call {
                code: tonic::Code::NotFound,
                ..
            }
        )
    }

    /// The CRI method the error came from, if any.
    pub fn call(&self) -> Option<&'static str> {
        match self {
            Self::Call { call, .. } | Self::Timeout { call, .. } | Self::MissingField { call, .. } => {
                Some(call)
            }
            Self::Endpoint { .. } | Self::NotReady(_) => None,
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
