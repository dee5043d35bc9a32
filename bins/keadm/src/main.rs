//! keadm: install and manage KubeEdge cloud and edge nodes.
//!
//! Subcommands so far: `certgen` (CA, cloudcore server certificate, node certificates), `reset`
//! (an edge node's pods out of the container runtime) and `version`. `init`, `join`, `gettoken` and
//! the rest of `reset` (processes, units, files) come with the installer work.

mod certgen;
mod gettoken;
mod reset;

use clap::{Parser, Subcommand};

/// KubeEdge administration tool.
#[derive(Debug, Parser)]
#[command(name = "keadm", version = concat!("KubeEdge-rs v", env!("CARGO_PKG_VERSION")), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the CA and certificates for cloudcore and edge nodes.
    Certgen(certgen::Args),
    /// Print the bootstrap token edges join with (from the Secret kubeedge/tokensecret).
    Gettoken(gettoken::Args),
    /// Remove an edge node's pods from the container runtime (sandboxes, containers, pod cgroups and
    /// logs), without needing the cloud or Kubernetes.
    Reset(reset::Args),
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Certgen(a) => certgen::run(a),
        Command::Gettoken(a) => gettoken::run(a),
        Command::Reset(a) => reset::run(a),
        Command::Version => {
            println!(
                "KubeEdge-rs v{} (wire-compatible with KubeEdge v1.2)",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
    };
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keadm: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
