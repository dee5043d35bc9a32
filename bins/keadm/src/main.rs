//! keadm: install and manage KubeEdge cloud and edge nodes.
//!
//! `init` (cloud side: CRDs, RBAC, certificates, cloudcore.yaml, cloudcore started), `gettoken`
//! (the bootstrap token edges join with), `join` (edge side: edgecore.yaml, certificates fetched
//! with the token, edgecore started), `reset` (undo either, leaving nothing of ours behind),
//! `certgen` (CA, server and node certificates by hand) and `version`. See `install` for what is
//! installed where and how `reset` knows what to remove.

mod bootstrap;
mod certgen;
mod gettoken;
mod init;
mod install;
mod join;
mod k8s;
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
    /// Set up the cloud side: CRDs and RBAC, certificates, cloudcore.yaml; start cloudcore.
    Init(init::Args),
    /// Make this machine an edge node of a cloudcore (token bootstrap); start edgecore.
    Join(join::Args),
    /// Generate the CA and certificates for cloudcore and edge nodes.
    Certgen(certgen::Args),
    /// Print the bootstrap token edges join with.
    Gettoken(gettoken::Args),
    /// Undo `init` / `join`: stop the daemons, remove their pods, units and files.
    Reset(reset::Args),
    /// Print the version (`-o json|yaml|short`, as v1.2's keadm).
    Version {
        /// Output format; default: one line.
        #[arg(short = 'o', long = "output", value_enum)]
        output: Option<VersionFormat>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum VersionFormat {
    Json,
    Yaml,
    Short,
}

fn print_version(format: Option<VersionFormat>) {
    let v = env!("CARGO_PKG_VERSION");
    match format {
        None => println!("KubeEdge-rs v{v} (wire-compatible with KubeEdge v1.2)"),
        Some(VersionFormat::Short) => println!("v{v}"),
        Some(VersionFormat::Json) => println!(
            "{}",
            serde_json::json!({"gitVersion": format!("v{v}"), "compatibleWith": "v1.2.1", "implementation": "KubeEdge-rs"})
        ),
        Some(VersionFormat::Yaml) => {
            println!("compatibleWith: v1.2.1\ngitVersion: v{v}\nimplementation: KubeEdge-rs")
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Join(a) => join::run(a),
        Command::Certgen(a) => certgen::run(a),
        Command::Gettoken(a) => gettoken::run(a),
        Command::Reset(a) => reset::run(a),
        Command::Version { output } => {
            print_version(output);
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
