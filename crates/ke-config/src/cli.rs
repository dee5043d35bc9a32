//! Command-line glue shared by the `cloudcore` and `edgecore` binaries: `--config`,
//! `--minconfig`, `--defaultconfig` (v1.2 names and behaviour).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cloudcore::CloudCoreConfig;
use crate::edgecore::EdgeCoreConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::yaml;

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

/// A daemon configuration (implemented by [`CloudCoreConfig`] and [`EdgeCoreConfig`]): loading,
/// printing, and what the generic flag handling needs. Bring it into scope (it is re-exported at
/// the crate root) for `load`, `from_yaml_str`, `to_yaml`, `to_default_yaml`, `default_yaml` and
/// `min_yaml`.
pub trait DaemonConfig: Default + Serialize + DeserializeOwned {
    /// The daemon's name, as error messages use it (`cloudcore`, `edgecore`).
    const DAEMON: &'static str;
    /// Default `--config` path.
    fn default_config_path() -> PathBuf;
    /// The v1.2 `--minconfig` subset of this configuration, with its comment header.
    fn to_min_yaml(&self) -> Result<String>;
    /// Rules without filesystem access.
    fn validate(&self) -> Result<()>;
    /// Rules that check referenced files exist.
    fn validate_files(&self) -> Result<()>;

    /// Read and decode `path` on top of the defaults (no validation; see [`Self::validate`]).
    ///
    /// A missing file gives v1.2's message (`config: Required value: config file ... not exist...`).
    fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = yaml::read_file(path)?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }
    /// Decode YAML text on top of the defaults; `origin` names the source in error messages.
    fn from_yaml_str(text: &str, origin: &str) -> Result<Self> {
        yaml::parse(text, origin)
    }
    /// This configuration as YAML (keys sorted, no header). Re-parses to an equal value.
    fn to_yaml(&self) -> Result<String> {
        yaml::render(self, Self::DAEMON)
    }
    /// This configuration as `--defaultconfig` prints it: three comment lines, blank line, YAML.
    fn to_default_yaml(&self) -> Result<String> {
        yaml::document(yaml::DEFAULT_HEADER, self, Self::DAEMON)
    }
    /// `--defaultconfig` output (for edgecore, with the host facts of this machine).
    fn default_yaml() -> Result<String> {
        Self::default().to_default_yaml()
    }
    /// `--minconfig` output (for edgecore, with the host facts of this machine).
    fn min_yaml() -> Result<String> {
        Self::default().to_min_yaml()
    }
}

impl DaemonConfig for CloudCoreConfig {
    const DAEMON: &'static str = "cloudcore";
    fn default_config_path() -> PathBuf {
        CloudCoreConfig::default_config_path()
    }
    fn to_min_yaml(&self) -> Result<String> {
        CloudCoreConfig::to_min_yaml(self)
    }
    fn validate(&self) -> Result<()> {
        CloudCoreConfig::validate(self)
    }
    fn validate_files(&self) -> Result<()> {
        CloudCoreConfig::validate_files(self)
    }
}

impl DaemonConfig for EdgeCoreConfig {
    const DAEMON: &'static str = "edgecore";
    fn default_config_path() -> PathBuf {
        EdgeCoreConfig::default_config_path()
    }
    fn to_min_yaml(&self) -> Result<String> {
        EdgeCoreConfig::to_min_yaml(self)
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
        let config = C::load(self.config_path::<C>())?;
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
