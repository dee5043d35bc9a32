//! `keadm certgen`: the seed's `certgen.sh genCertAndKey`, in Rust, with one certificate per party.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ke_pki::certgen;

/// Where files go.
#[derive(Debug, clap::Args)]
pub(crate) struct Dirs {
    /// Root directory: the CA goes to `<dir>/ca`, certificates to `<dir>/certs`.
    #[arg(long, default_value = "/etc/kubeedge")]
    dir: PathBuf,
}

impl Dirs {
    fn ca(&self) -> PathBuf {
        self.dir.join("ca")
    }
    fn certs(&self) -> PathBuf {
        self.dir.join("certs")
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Create the root CA (`ca/rootCA.crt`, `ca/rootCA.key`) unless it exists.
    Ca {
        #[command(flatten)]
        dirs: Dirs,
    },
    /// Issue cloudcore's server certificate (`certs/<name>.crt|key`), creating the CA if needed.
    Server {
        #[command(flatten)]
        dirs: Dirs,
        /// File stem (cloudcore.yaml defaults to certs/edge.crt and certs/edge.key).
        #[arg(long, default_value = certgen::DEFAULT_SERVER_STEM)]
        name: String,
        /// Subject common name.
        #[arg(long, default_value = certgen::DEFAULT_SERVER_CN)]
        cn: String,
        /// IP address or DNS name edges use to reach cloudcore (repeat for several).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
    /// Issue an edge node's client certificate (CN = node name), creating the CA if needed.
    Node {
        /// Node name, as in `modules.edged.hostnameOverride`.
        node: String,
        #[command(flatten)]
        dirs: Dirs,
        /// File stem; defaults to the node name.
        #[arg(long)]
        name: Option<String>,
    },
}

fn say_ca(ca: &certgen::CaFiles) {
    println!("CA {:?}: {}", ca.provenance, ca.cert.display());
}

fn say_pair(cert: &Path, key: &Path) {
    println!("certificate: {}\nkey:         {}", cert.display(), key.display());
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Ca { dirs } => {
            let ca = certgen::gen_ca(&dirs.ca())
                .with_context(|| format!("creating the CA in {}", dirs.ca().display()))?;
            say_ca(&ca);
        }
        What::Server { dirs, name, cn, sans } => {
            let issued = certgen::gen_server(&dirs.ca(), &dirs.certs(), &name, &cn, &sans)
                .context("issuing the cloudcore server certificate")?;
            say_ca(&issued.ca);
            say_pair(&issued.pair.cert, &issued.pair.key);
        }
        What::Node { node, dirs, name } => {
            let stem = name.unwrap_or_else(|| node.clone());
            let issued = certgen::gen_node(&dirs.ca(), &dirs.certs(), &stem, &node)
                .with_context(|| format!("issuing the certificate of node {node}"))?;
            say_ca(&issued.ca);
            say_pair(&issued.pair.cert, &issued.pair.key);
        }
    }
    Ok(())
}
