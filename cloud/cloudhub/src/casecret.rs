//! HA mode: one CA for every cloudcore, kept in the Secret `<namespace>/casecret` (data keys
//! `cadata` and `cakeydata`, both PEM).
//!
//! [`ensure`] at start, before the listeners open:
//! * CA files present (`tlsCAFile`, `tlsCAKeyFile`): they are published in the Secret when it is
//!   absent; when the Secret holds another CA, start fails (two CAs would split the edges);
//! * CA files absent: the Secret's CA is used; when there is no Secret, a new CA is created and
//!   **created** as the Secret — a create, never an update, so of two cloudcores starting at once
//!   exactly one wins (the other gets `409 AlreadyExists`, reads the winner's CA and discards its
//!   own). Either way the files are written, for the certificate bootstrap and for `keadm`;
//! * server certificate files absent (`tlsCertFile`, `tlsPrivateKeyFile`): this cloudcore issues
//!   itself one from that CA (SANs: `ha.advertiseAddress`, or `127.0.0.1` and the host name).
//!
//! The Secret's format is ours (PEM); KubeEdge ≥ 1.3's `casecret` holds DER and is reported as
//! unreadable rather than replaced.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use ke_pki::Ca;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::info;

/// Name of the Secret.
pub const SECRET_NAME: &str = "casecret";
/// Data key of the CA certificate (PEM).
pub const CERT_KEY: &str = "cadata";
/// Data key of the CA private key (PEM).
pub const KEY_KEY: &str = "cakeydata";

/// Errors while sharing the CA.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// Cause.
        source: kube::Error,
    },
    /// The CA files or the Secret's CA are unusable.
    #[error("{what}: {source}")]
    Pki {
        /// Which CA.
        what: String,
        /// Cause.
        source: ke_pki::ca::Error,
    },
    /// The files and the Secret hold different CAs.
    #[error(
        "the CA in {cert} is not the one in Secret {namespace}/casecret: every cloudcore must share one CA \
         (delete the local CA files to use the Secret's, or the Secret if no edge uses its CA yet)"
    )]
    Mismatch {
        /// `tlsCAFile`.
        cert: String,
        /// HA namespace.
        namespace: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

use crate::api_status as status;

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Files present, Secret matched or was created from them.
    FromFiles,
    /// Files written from the Secret another cloudcore created.
    FromSecret,
    /// This cloudcore created the CA and the Secret.
    Created,
}

/// Paths and names [`ensure`] works with (`modules.cloudhub` + `ha`).
#[derive(Debug, Clone)]
pub struct CaFiles<'a> {
    /// `tlsCAFile`.
    pub ca_cert: &'a Path,
    /// `tlsCAKeyFile`.
    pub ca_key: &'a Path,
    /// `tlsCertFile`.
    pub server_cert: &'a Path,
    /// `tlsPrivateKeyFile`.
    pub server_key: &'a Path,
    /// SANs of a server certificate issued here.
    pub sans: Vec<String>,
}

fn secret_ca(s: &Secret, namespace: &str) -> Result<Ca, Error> {
    let data = s.data.clone().unwrap_or_default();
    let get = |k: &str| data.get(k).map(|b| b.0.clone()).unwrap_or_default();
    Ca::from_pem(&get(CERT_KEY), &get(KEY_KEY)).map_err(|source| Error::Pki {
        what: format!("the CA in Secret {namespace}/{SECRET_NAME}"),
        source,
    })
}

fn write_file(path: &Path, data: &str, mode: u32) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp-casecret");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

async fn ensure_namespace(client: &kube::Client, namespace: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {
            info!(%namespace, "created namespace");
            Ok(())
        }
        Err(e) if status(&e) == Some(409) || status(&e) == Some(403) => Ok(()),
        Err(source) => Err(Error::Api {
            what: format!("creating namespace {namespace}"),
            source,
        }),
    }
}

/// Makes the CA and server certificate files exist and agree with the Secret (see the module docs).
pub async fn ensure(client: &kube::Client, namespace: &str, files: &CaFiles<'_>) -> Result<Outcome, Error> {
    ensure_namespace(client, namespace).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let api = |what: &str| {
        let what = format!("{what} Secret {namespace}/{SECRET_NAME}");
        move |source| Error::Api { what, source }
    };
    let stored = secrets.get_opt(SECRET_NAME).await.map_err(api("reading"))?;
    let have_files = files.ca_cert.exists() && files.ca_key.exists();
    let (ca, outcome) = if have_files {
        let ca = Ca::load(files.ca_cert, files.ca_key).map_err(|source| Error::Pki {
            what: format!("the CA files {}", files.ca_cert.display()),
            source,
        })?;
        let published = match stored {
            Some(s) => Some(secret_ca(&s, namespace)?),
            None => match secrets
                .create(&PostParams::default(), &to_secret(&ca, namespace))
                .await
            {
                Ok(_) => {
                    info!(%namespace, "published the CA files in Secret casecret");
                    None
                }
                Err(e) if status(&e) == Some(409) => {
                    let s = secrets.get(SECRET_NAME).await.map_err(api("reading"))?;
                    Some(secret_ca(&s, namespace)?)
                }
                Err(e) => return Err(api("creating")(e)),
            },
        };
        if let Some(p) = published
            && p.cert_pem() != ca.cert_pem()
        {
            return Err(Error::Mismatch {
                cert: files.ca_cert.display().to_string(),
                namespace: namespace.to_owned(),
            });
        }
        (ca, Outcome::FromFiles)
    } else {
        let (ca, outcome) = match stored {
            Some(s) => (secret_ca(&s, namespace)?, Outcome::FromSecret),
            None => {
                let mine = Ca::create("KubeEdge").map_err(|source| Error::Pki {
                    what: "creating a CA".into(),
                    source,
                })?;
                match secrets
                    .create(&PostParams::default(), &to_secret(&mine, namespace))
                    .await
                {
                    Ok(_) => (mine, Outcome::Created),
                    Err(e) if status(&e) == Some(409) => {
                        // Another cloudcore created it first: use that one.
                        let s = secrets.get(SECRET_NAME).await.map_err(api("reading"))?;
                        (secret_ca(&s, namespace)?, Outcome::FromSecret)
                    }
                    Err(e) => return Err(api("creating")(e)),
                }
            }
        };
        write_file(files.ca_cert, ca.cert_pem(), 0o644)?;
        write_file(files.ca_key, &ca.key_pem(), 0o600)?;
        (ca, outcome)
    };
    if !(files.server_cert.exists() && files.server_key.exists()) {
        let pair = ca
            .issue_server(ke_pki::certgen::DEFAULT_SERVER_CN, &files.sans)
            .map_err(|source| Error::Pki {
                what: "issuing cloudcore's server certificate".into(),
                source,
            })?;
        write_file(files.server_cert, &pair.cert_pem, 0o644)?;
        write_file(files.server_key, &pair.key_pem, 0o600)?;
        info!(cert = %files.server_cert.display(), sans = ?files.sans, "issued this cloudcore's server certificate from the shared CA");
    }
    Ok(outcome)
}

fn to_secret(ca: &Ca, namespace: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(SECRET_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (CERT_KEY.to_owned(), ByteString(ca.cert_pem().as_bytes().to_vec())),
            (KEY_KEY.to_owned(), ByteString(ca.key_pem().into_bytes())),
        ])),
        ..Default::default()
    }
}
