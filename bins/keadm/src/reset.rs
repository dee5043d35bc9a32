//! `keadm reset --node <name>`: removes every pod sandbox and container that edged created for that
//! node (CRI label `kubeedge.io/node=<name>`), with their pod cgroups and log directories. It talks to
//! the container runtime only, so it works when the cloud and Kubernetes are gone. Nothing of another
//! node, or not created by edged, is touched.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use ke_cri::{CriClient, api};

/// Label edged puts on every sandbox and container it creates.
const LABEL_NODE: &str = "kubeedge.io/node";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Node whose pods are removed (`modules.edged.hostnameOverride`).
    #[arg(long)]
    node: String,
    /// CRI endpoint of the container runtime.
    #[arg(long, default_value = ke_cri::CONTAINERD_ENDPOINT)]
    runtime_endpoint: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(reset(args))
}

async fn reset(args: Args) -> anyhow::Result<()> {
    let cri = CriClient::new(&args.runtime_endpoint, Duration::from_secs(60))
        .with_context(|| format!("connecting to the container runtime at {}", args.runtime_endpoint))?;
    let labels = HashMap::from([(LABEL_NODE.to_owned(), args.node.clone())]);
    let containers = cri
        .list_containers(Some(api::ContainerFilter {
            label_selector: labels.clone(),
            ..Default::default()
        }))
        .await
        .context("listing containers")?;
    for c in &containers {
        let _ = cri.stop_container(&c.id, Duration::from_secs(10)).await;
        cri.remove_container(&c.id)
            .await
            .with_context(|| format!("removing container {}", c.id))?;
    }
    let sandboxes = cri
        .list_pod_sandboxes(Some(api::PodSandboxFilter {
            label_selector: labels,
            ..Default::default()
        }))
        .await
        .context("listing pod sandboxes")?;
    for sb in &sandboxes {
        let _ = cri.stop_pod_sandbox(&sb.id).await;
        cri.remove_pod_sandbox(&sb.id)
            .await
            .with_context(|| format!("removing pod sandbox {}", sb.id))?;
        if let Some(m) = &sb.metadata {
            // The pod's QoS class is not recorded on the sandbox: try each cgroup parent edged uses.
            for qos in ["besteffort/", "burstable/", ""] {
                ke_cri::remove_pod_cgroup(&format!("/kubepods/{qos}pod{}", m.uid));
            }
            let logs = format!("/var/log/pods/{}_{}_{}", m.namespace, m.name, m.uid);
            if let Err(e) = std::fs::remove_dir_all(&logs)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("keadm: cannot remove {logs}: {e}");
            }
            println!("removed pod {}/{} ({})", m.namespace, m.name, m.uid);
        }
    }
    println!(
        "node {}: removed {} containers and {} pod sandboxes from the container runtime",
        args.node,
        containers.len(),
        sandboxes.len()
    );
    Ok(())
}
