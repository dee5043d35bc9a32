//! `keadm reset`: undo `keadm init` and `keadm join` on this machine.
//!
//! For each install record found (`<state-dir>/keadm-{cloud,edge}.json`): stop the daemon (its
//! systemd unit disabled and removed, or its processes, found by PID file and by command line,
//! SIGTERM then SIGKILL); on an edge, remove every pod sandbox and container edged created for the
//! node (CRI label `kubeedge.io/node=<name>`) with their pod cgroups, log and volume directories;
//! then delete exactly the files and directories the record lists — so nothing of ours stays
//! behind, and nothing that was there before keadm is touched. `init --local` also takes the local
//! control plane down.
//!
//! `keadm reset --node <name>` without a record removes that node's pods only; it talks to the
//! container runtime alone, so it works when the cloud and Kubernetes are gone.
//! Running `reset` again finds nothing and says so.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ke_cri::{CriClient, api};

use crate::install::{self, Layout, Record, Role};

/// Label edged puts on every sandbox and container it creates.
const LABEL_NODE: &str = "kubeedge.io/node";
/// Where edged keeps pod volumes (`<root>/pods/<uid>`).
const EDGED_PODS_DIR: &str = "/var/lib/edged/pods";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Remove this node's pods from the container runtime (default: the node of the edge record).
    #[arg(long)]
    node: Option<String>,
    /// CRI endpoint of the container runtime (default: the edge record's).
    #[arg(long)]
    runtime_endpoint: Option<String>,
    /// Keep the local control plane running (only with a cloud record from `init --local`).
    #[arg(long)]
    keep_control_plane: bool,
    #[command(flatten)]
    layout: Layout,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    crate::install::block_on(reset(args))
}

async fn reset(args: Args) -> anyhow::Result<()> {
    let edge = Record::load(&args.layout, Role::Edge)?;
    let cloud = Record::load(&args.layout, Role::Cloud)?;
    if edge.is_none() && cloud.is_none() && args.node.is_none() {
        println!(
            "nothing to reset: no keadm installation recorded in {} (pass --state-dir, or --node to clear a node's pods)",
            args.layout.state_dir.display()
        );
        return Ok(());
    }
    if let Some(rec) = &edge
        && let Some(line) = install::stop(rec)?
    {
        println!("{line}");
    }
    let node = args
        .node
        .clone()
        .or_else(|| edge.as_ref().and_then(|r| r.node.clone()));
    if let Some(node) = node {
        let endpoint = args
            .runtime_endpoint
            .clone()
            .or_else(|| edge.as_ref().and_then(|r| r.runtime_endpoint.clone()))
            .unwrap_or_else(|| ke_cri::CONTAINERD_ENDPOINT.to_owned());
        remove_pods(&node, &endpoint).await?;
    }
    if let Some(rec) = &edge {
        report_removed(rec);
    }
    if let Some(rec) = &cloud {
        if let Some(line) = install::stop(rec)? {
            println!("{line}");
        }
        report_removed(rec);
        if let Some(script) = &rec.local_control_plane
            && !args.keep_control_plane
        {
            println!("taking the local control plane down ({} down)", script.display());
            let st = Command::new(script)
                .arg("down")
                .status()
                .with_context(|| format!("running {} down", script.display()))?;
            if !st.success() {
                bail!("{} down failed ({st})", script.display());
            }
        }
    }
    Ok(())
}

fn report_removed(rec: &Record) {
    let removed = rec.remove_files();
    println!(
        "{}: removed {} files and directories ({})",
        rec.role.name(),
        removed.len(),
        removed.join(", ")
    );
}

async fn remove_pods(node: &str, endpoint: &str) -> anyhow::Result<()> {
    let cri = CriClient::new(endpoint, Duration::from_secs(60))
        .with_context(|| format!("connecting to the container runtime at {endpoint}"))?;
    let labels = HashMap::from([(LABEL_NODE.to_owned(), node.to_owned())]);
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
            let volumes = format!("{EDGED_PODS_DIR}/{}", m.uid);
            for dir in [logs, volumes] {
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    eprintln!("keadm: cannot remove {dir}: {e}");
                }
            }
            println!("removed pod {}/{} ({})", m.namespace, m.name, m.uid);
        }
    }
    println!(
        "node {node}: removed {} containers and {} pod sandboxes from the container runtime",
        containers.len(),
        sandboxes.len()
    );
    Ok(())
}
