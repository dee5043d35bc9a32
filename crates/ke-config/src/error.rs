//! Errors of this crate: missing/unreadable files, YAML that does not fit the schema, failed validation.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while loading, validating or printing a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file does not exist (wording of KubeEdge v1.2).
    #[error(
        "config: Required value: config file {} not exist. For the configuration file format, please refer to --minconfig and --defaultconfig command",
        .path.display()
    )]
    NotFound {
        /// The path given with `--config` (or the default path).
        path: PathBuf,
    },
    /// The configuration file exists but cannot be read.
    #[error("config file {}: cannot read it: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key or a value of the wrong type.
    #[error(transparent)]
    Parse(Box<ParseError>),
    /// The configuration parsed but breaks a rule (see `validate` / `validate_files`).
    #[error("invalid configuration: {0}")]
    Invalid(ValidationErrors),
    /// Rendering a configuration as YAML failed (a bug: our types always serialize).
    #[error("cannot render the {what} configuration as YAML: {message}")]
    Serialize {
        /// Which document was being rendered.
        what: &'static str,
        /// The serializer's message.
        message: String,
    },
    /// Writing `--minconfig` / `--defaultconfig` output failed.
    #[error("cannot write the configuration to the output: {0}")]
    Output(#[source] std::io::Error),
}

/// Crate result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A YAML document that does not fit the configuration schema.
///
/// Displayed on one line as
/// `config file <origin>: line <l>, column <c>: <field path>: <message>`; the
/// annotated source excerpt is available separately through [`ParseError::snippet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the text came from (file path or a caller-chosen name).
    pub origin: String,
    /// Dotted path of the offending key, e.g. `modules.cloudhub.nodeLimt`, when known.
    pub path: Option<String>,
    /// 1-based line of the offending node, when known.
    pub line: Option<u64>,
    /// 1-based column of the offending node, when known.
    pub column: Option<u64>,
    /// What is wrong, without the location.
    pub message: String,
    /// The source excerpt with a caret under the offending node (multi-line), when available.
    pub snippet: Option<String>,
}

impl ParseError {
    /// The annotated source excerpt (several lines), if the parser could produce one.
    pub fn snippet(&self) -> Option<&str> {
        self.snippet.as_deref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.origin)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, ": line {line}, column {column}")?,
            (Some(line), None) => write!(f, ": line {line}")?,
            _ => {}
        }
        if let Some(path) = &self.path {
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ParseError {}

/// One broken rule, in the style of Kubernetes' `field.Error`
/// (`<field>: Invalid value: "<value>": <detail>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted YAML path of the field, e.g. `modules.edged.cgroupDriver`.
    pub field: String,
    /// The offending value as text (`None` for "required" errors).
    pub value: Option<String>,
    /// What the value must look like.
    pub detail: String,
}

impl FieldError {
    pub(crate) fn invalid(field: &str, value: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            value: Some(value.to_string()),
            detail: detail.into(),
        }
    }

    pub(crate) fn required(field: &str, detail: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            value: None,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}: Invalid value: {:?}: {}", self.field, value, self.detail),
            None => write!(f, "{}: Required value: {}", self.field, self.detail),
        }
    }
}

/// All rules a configuration breaks (never empty when returned inside [`Error::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// `true` if some error concerns `field` (exact dotted path).
    pub fn mentions(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }

    pub(crate) fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }

    pub(crate) fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}
