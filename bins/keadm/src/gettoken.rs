//! `keadm gettoken [--kube-config PATH]`: prints the current bootstrap token `<caHash>.<jwt>` — what
//! `keadm join --token` / `modules.edgehub.token` take — read from the Secret `kubeedge/tokensecret`
//! (data key `tokendata`) that cloudcore keeps current when `modules.cloudhub.https.enable` is true.
//!
//! Kubernetes access: `--kube-config`, else `$KUBECONFIG`, else `~/.kube/config`, else in-cluster.
//! Only the token goes to stdout, so `TOKEN=$(keadm gettoken)` works.
//!
//! On a machine set up with `keadm init` (its install record in `--state-dir`), the token is minted
//! from that installation's CA instead: it is valid for that cloudcore whatever the Secret holds
//! (several cloudcores with different CAs sharing one cluster overwrite each other's Secret), and it
//! works while the API server is down.

use std::path::PathBuf;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use ke_pki::token::{self, Token};
use kube::api::Api;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// kubeconfig of the cluster cloudcore runs against [default: $KUBECONFIG, then ~/.kube/config,
    /// then in-cluster]
    #[arg(long = "kube-config", value_name = "PATH")]
    kube_config: Option<PathBuf>,
    #[command(flatten)]
    layout: crate::install::Layout,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = match crate::install::Record::load(&args.layout, crate::install::Role::Cloud)? {
        Some(_) => crate::bootstrap::mint(&args.layout.ca_dir())?,
        None => rt.block_on(get(args))?,
    };
    println!("{token}");
    Ok(())
}

async fn get(args: Args) -> anyhow::Result<Token> {
    let client = match &args.kube_config {
        Some(path) => crate::k8s::client(path, "").await?,
        None => {
            let config = kube::Config::infer()
                .await
                .context("no Kubernetes configuration found: pass --kube-config PATH")?;
            kube::Client::try_from(config).context("building the Kubernetes client")?
        }
    };
    let secrets: Api<Secret> = Api::namespaced(client, token::SECRET_NAMESPACE);
    let what = format!("Secret {}/{}", token::SECRET_NAMESPACE, token::SECRET_NAME);
    let secret = secrets
        .get_opt(token::SECRET_NAME)
        .await
        .with_context(|| format!("reading {what}"))?
        .with_context(|| {
            format!(
                "{what} not found: start cloudcore with modules.cloudhub.https.enable: true (it creates the token)"
            )
        })?;
    let raw = secret
        .data
        .and_then(|mut d| d.remove(token::SECRET_DATA_KEY))
        .with_context(|| format!("{what} has no data key {:?}", token::SECRET_DATA_KEY))?;
    let text = String::from_utf8_lossy(&raw.0);
    Token::parse(&text).with_context(|| format!("{what} holds no valid token"))
}
