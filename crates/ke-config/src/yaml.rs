//! YAML in and out: strict decoding with field path + line/column, v1.2-style printing.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ParseError, Result};

/// First three lines (plus blank line) printed by `--defaultconfig` in v1.2, verbatim (trailing spaces included).
pub(crate) const DEFAULT_HEADER: &str = "# With --defaultconfig flag, users can easily get a default full config file as reference, with all fields (and field descriptions) included and default values set. \n\
# Users can modify/create their own configs accordingly as reference. \n\
# Because it is a full configuration, it is more suitable for advanced users.\n\n";

/// First three lines (plus blank line) printed by `--minconfig` in v1.2, verbatim (trailing spaces included).
pub(crate) const MIN_HEADER: &str = "# With --minconfig , you can easily used this configurations as reference.\n\
# It's useful to users who are new to KubeEdge, and you can modify/create your own configs accordingly. \n\
# This configuration is suitable for beginners.\n\n";

/// Read a configuration file; a missing file gets v1.2's wording.
pub(crate) fn read_file(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(Error::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Decode `text` into `T` (whose `#[serde(default)]` supplies absent keys), rejecting unknown
/// keys and mistyped values with the dotted key path and the position of the offending node.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    // `master:` (YAML null) into a string field reads as "", as v1.2 effectively did.
    let options = serde_saphyr::options! { null_as_string: true };
    let mut path = None;
    let res = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    res.map_err(|e| Error::Parse(Box::new(parse_error(&e, path, origin))))
}

fn parse_error(e: &serde_saphyr::Error, path: Option<String>, origin: &str) -> ParseError {
    let location = e.location();
    let line = location.map(|l| l.line());
    let column = location.map(|l| l.column());
    let plain = e.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let message = match (line, column) {
        (Some(l), Some(c)) => plain
            .strip_suffix(&format!(" at line {l}, column {c}"))
            .map(str::to_owned)
            .unwrap_or(plain),
        _ => plain,
    };
    let snippet = e.render_with_options(serde_saphyr::render_options! {
        source_name: Some(origin),
    });
    // serde_path_to_error reports "." for the root and "?" for unknown segments.
    let path = path.filter(|p| p != "." && !p.is_empty());
    ParseError {
        origin: origin.to_owned(),
        path,
        line,
        column,
        message,
        snippet: (snippet.contains('\n')).then_some(snippet),
    }
}

/// Render `value` as block YAML the way v1.2 printed it (keys in declaration order, which our
/// types keep alphabetical; plain scalars such as `0.0.0.0` unquoted).
pub(crate) fn render<T: Serialize>(value: &T, what: &'static str) -> Result<String> {
    let options = serde_saphyr::ser_options! { yaml_12: true, no_lang_directive: true };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| Error::Serialize {
        what,
        message: e.to_string(),
    })
}

/// `header` + YAML + the two empty lines v1.2's printer left at the end (verbatim output).
pub(crate) fn document<T: Serialize>(header: &str, value: &T, what: &'static str) -> Result<String> {
    let body = render(value, what)?;
    let mut out = String::with_capacity(header.len() + body.len() + 2);
    out.push_str(header);
    out.push_str(&body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n\n");
    Ok(out)
}

/// `skip_serializing_if` helper mirroring Go's `omitempty` on a bool.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
