//! Command-line glue shared by the `cloudcore` and `edgecore` binaries: `--config`,
//! `--minconfig`, `--defaultconfig` (v1.2 names and behaviour).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cloudcore::CloudCoreConfig;
use crate::edgecore::EdgeCoreConfig;
use crate::error::{Error, Result};

/// The configuration flags of a KubeEdge daemon; `#[command(flatten)]` it into the binary's parser.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ConfigFlags {
    /// The path to the configuration file [default: /etc/kubeedge/config/{cloudcore,edgecore}.yaml]
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print the minimal configuration for reference and exit
    #[arg(long = "minconfig")]
    pub minconfig: bool,
    /// Print the default (full) configuration for reference and exit
    #[arg(long = "defaultconfig")]
    pub defaultconfig: bool,
}

/// What the binary should do after [`ConfigFlags::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup<C> {
    /// `--minconfig` / `--defaultconfig` was printed: exit with status 0.
    Exit,
    /// Loaded and validated configuration: run.
    Run(C),
}

/// A daemon configuration the generic flag handling can drive (implemented by
/// [`CloudCoreConfig`] and [`EdgeCoreConfig`]).
pub trait DaemonConfig: Sized {
    /// Default `--config` path.
    fn default_config_path() -> PathBuf;
    /// Load a file on top of the defaults.
    fn load_file(path: &Path) -> Result<Self>;
    /// `--defaultconfig` output.
    fn default_yaml() -> Result<String>;
    /// `--minconfig` output.
    fn min_yaml() -> Result<String>;
    /// Rules without filesystem access.
    fn validate(&self) -> Result<()>;
    /// Rules that check referenced files exist.
    fn validate_files(&self) -> Result<()>;
}

impl DaemonConfig for CloudCoreConfig {
    fn default_config_path() -> PathBuf {
        CloudCoreConfig::default_config_path()
    }
    fn load_file(path: &Path) -> Result<Self> {
        CloudCoreConfig::load(path)
    }
    fn default_yaml() -> Result<String> {
        CloudCoreConfig::default_yaml()
    }
    fn min_yaml() -> Result<String> {
        CloudCoreConfig::min_yaml()
    }
    fn validate(&self) -> Result<()> {
        CloudCoreConfig::validate(self)
    }
    fn validate_files(&self) -> Result<()> {
        CloudCoreConfig::validate_files(self)
    }
}

impl DaemonConfig for EdgeCoreConfig {
    fn default_config_path() -> PathBuf {
        EdgeCoreConfig::default_config_path()
    }
    fn load_file(path: &Path) -> Result<Self> {
        EdgeCoreConfig::load(path)
    }
    fn default_yaml() -> Result<String> {
        EdgeCoreConfig::default_yaml()
    }
    fn min_yaml() -> Result<String> {
        EdgeCoreConfig::min_yaml()
    }
    fn validate(&self) -> Result<()> {
        EdgeCoreConfig::validate(self)
    }
    fn validate_files(&self) -> Result<()> {
        EdgeCoreConfig::validate_files(self)
    }
}

impl ConfigFlags {
    /// `--config`, or the daemon's default path.
    pub fn config_path<C: DaemonConfig>(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(C::default_config_path)
    }

    /// Handle the flags the way v1.2 did: `--minconfig` (checked first) or `--defaultconfig`
    /// prints to stdout and yields [`Startup::Exit`]; otherwise the file is loaded, validated
    /// ([`DaemonConfig::validate`] then [`DaemonConfig::validate_files`]) and returned.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), ke_config::Error> {
    /// use ke_config::{CloudCoreConfig, ConfigFlags, Startup};
    /// let flags = ConfigFlags::default(); // normally flattened into the binary's clap parser
    /// let config = match flags.resolve::<CloudCoreConfig>()? {
    ///     Startup::Exit => return Ok(()),
    ///     Startup::Run(config) => config,
    /// };
    /// # let _ = config; Ok(()) }
    /// ```
    pub fn resolve<C: DaemonConfig>(&self) -> Result<Startup<C>> {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        self.resolve_to(&mut lock)
    }

    /// [`Self::resolve`] for a binary's `main`: the configuration to run with, or the exit code to
    /// return at once (success after `--minconfig`/`--defaultconfig`, failure after printing the
    /// error to stderr).
    pub fn resolve_or_exit<C: DaemonConfig>(&self) -> std::result::Result<C, std::process::ExitCode> {
        match self.resolve::<C>() {
            Ok(Startup::Run(c)) => Ok(c),
            Ok(Startup::Exit) => Err(std::process::ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("{e}");
                Err(std::process::ExitCode::FAILURE)
            }
        }
    }

    /// [`Self::resolve`] writing any printed configuration to `out`.
    pub fn resolve_to<C: DaemonConfig, W: Write>(&self, out: &mut W) -> Result<Startup<C>> {
        let printed = if self.minconfig {
            Some(C::min_yaml()?)
        } else if self.defaultconfig {
            Some(C::default_yaml()?)
        } else {
            None
        };
        if let Some(text) = printed {
            out.write_all(text.as_bytes()).map_err(Error::Output)?;
            out.flush().map_err(Error::Output)?;
            return Ok(Startup::Exit);
        }
        let config = C::load_file(&self.config_path::<C>())?;
        config.validate()?;
        config.validate_files()?;
        Ok(Startup::Run(config))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::host::HostInfo;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "cloudcore", version = "v1.2.1")]
    struct Cmd {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    fn flags(args: &[&str]) -> ConfigFlags {
        let mut argv = vec!["cloudcore"];
        argv.extend_from_slice(args);
        Cmd::try_parse_from(argv).unwrap().flags
    }

    #[test]
    fn parses_v1_2_flag_names() {
        let f = flags(&["--config", "/tmp/c.yaml", "--minconfig"]);
        assert_eq!(f.config.as_deref(), Some(Path::new("/tmp/c.yaml")));
        assert!(f.minconfig && !f.defaultconfig);
        let f = flags(&["--defaultconfig"]);
        assert!(f.defaultconfig);
        assert_eq!(
            f.config_path::<CloudCoreConfig>(),
            Path::new("/etc/kubeedge/config/cloudcore.yaml")
        );
        assert_eq!(
            f.config_path::<EdgeCoreConfig>(),
            Path::new("/etc/kubeedge/config/edgecore.yaml")
        );
        assert!(Cmd::try_parse_from(["cloudcore", "--bogus"]).is_err());
    }

    #[test]
    fn minconfig_and_defaultconfig_print_and_exit() {
        let mut out = Vec::new();
        let r = flags(&["--minconfig"])
            .resolve_to::<CloudCoreConfig, _>(&mut out)
            .unwrap();
        assert_eq!(r, Startup::Exit);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            CloudCoreConfig::min_yaml().unwrap()
        );

        let mut out = Vec::new();
        let r = flags(&["--defaultconfig"])
            .resolve_to::<EdgeCoreConfig, _>(&mut out)
            .unwrap();
        assert_eq!(r, Startup::Exit);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            EdgeCoreConfig::default_yaml().unwrap()
        );

        // Both given: --minconfig wins, as in v1.2; the (missing) config file is not read.
        let mut out = Vec::new();
        let r = flags(&["--defaultconfig", "--minconfig", "--config", "/nonexistent.yaml"])
            .resolve_to::<CloudCoreConfig, _>(&mut out)
            .unwrap();
        assert_eq!(r, Startup::Exit);
        assert!(String::from_utf8(out).unwrap().starts_with("# With --minconfig"));
    }

    #[test]
    fn missing_config_file_is_reported_with_v1_2_wording() {
        let mut out = Vec::new();
        let err = flags(&["--config", "/nonexistent/edgecore.yaml"])
            .resolve_to::<EdgeCoreConfig, _>(&mut out)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config: Required value: config file /nonexistent/edgecore.yaml not exist.")
        );
        assert!(out.is_empty());
    }

    #[test]
    fn loads_validates_and_checks_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        for f in ["rootCA.crt", "edge.crt", "edge.key"] {
            std::fs::write(dir.path().join(f), "pem").unwrap();
        }
        let host = HostInfo::cached();
        let cfg = dir.path().join("edgecore.yaml");
        std::fs::write(
            &cfg,
            format!(
                "modules:\n  edgehub:\n    tlsCaFile: {d}/rootCA.crt\n    tlsCertFile: {d}/edge.crt\n    tlsPrivateKeyFile: {d}/edge.key\n    websocket:\n      server: 127.0.0.1:20000\n"
            ),
        )
        .unwrap();
        let f = ConfigFlags {
            config: Some(cfg.clone()),
            ..ConfigFlags::default()
        };
        let Startup::Run(c) = f.resolve_to::<EdgeCoreConfig, _>(&mut Vec::new()).unwrap() else {
            panic!("expected a configuration");
        };
        assert_eq!(c.modules.edgehub.websocket.server, "127.0.0.1:20000");
        assert_eq!(c.modules.edged.hostname_override, host.hostname);

        // validate() runs: a rule violation stops startup.
        std::fs::write(&cfg, "modules:\n  eventbus:\n    mqttMode: 7\n").unwrap();
        let err = f.resolve_to::<EdgeCoreConfig, _>(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("modules.eventbus.mqttMode"), "{err}");

        // validate_files() runs: the default TLS paths under /etc/kubeedge are checked.
        std::fs::write(&cfg, "modules:\n  edgehub:\n    tlsCaFile: /nonexistent/ca.crt\n").unwrap();
        let err = f.resolve_to::<EdgeCoreConfig, _>(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("modules.edgehub.tlsCaFile"), "{err}");
    }
}
