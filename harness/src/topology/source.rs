//! Source text of a fixture or case file, and errors that point into it.
//!
//! Every error a user can cause in a file carries the file, the line and the column, what is wrong
//! and, where we can tell, how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One error in one input file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the whole file (it cannot be read).
    pub line: usize,
    /// 1-based; 0 when `line` is 0.
    pub column: usize,
    pub message: String,
    pub help: Option<String>,
}

impl ConfigError {
    pub fn whole_file(file: &Path, message: impl Into<String>, help: Option<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            help,
        }
    }
}

impl ConfigError {
    /// The same, said as a warning: `file:line:col: warning: message`.
    pub fn as_warning(&self) -> String {
        ConfigError {
            message: format!("warning: {}", self.message),
            ..self.clone()
        }
        .to_string()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All the errors found in one or more files; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// The value under this key.
    Field(&'a str),
    /// The key itself (for errors about a name, such as a duplicate host).
    Name(&'a str),
    /// An element of an array.
    Index(usize),
}

/// A file's text, with the means to turn byte offsets and key paths into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Largest input file we accept: fixtures and cases are small hand-written files.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

impl Source {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Source {
            path: path.into(),
            text: text.into(),
        }
    }

    /// Reads a file, refusing what cannot be a hand-written TOML file.
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError::whole_file(
                path,
                format!("cannot read file: {}", plain_io_error(&e)),
                Some(
                    "check the path; relative paths in a case are relative to the case file".into(),
                ),
            )
        })?;
        if meta.is_dir() {
            return Err(ConfigError::whole_file(
                path,
                "is a directory, not a file",
                Some("name a .toml file".into()),
            ));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ConfigError::whole_file(
                path,
                format!(
                    "file is {} bytes, over the {} byte limit",
                    meta.len(),
                    MAX_FILE_BYTES
                ),
                Some("fixtures and cases are small TOML files; is this the right file?".into()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::whole_file(
                path,
                format!("cannot read file: {}", plain_io_error(&e)),
                None,
            )
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Source::new(path, text)),
            Err(e) => {
                let good = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let text = String::from_utf8_lossy(&bytes[..good]).into_owned();
                let src = Source::new(path, text);
                Err(src.error_at(
                    good..good,
                    "file is not UTF-8 text",
                    Some("fixtures and cases are TOML text files".into()),
                ))
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    pub fn error_at(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            message: message.into(),
            help,
        }
    }

    /// Turns a TOML parse or type error into a located error.
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().to_string();
        let help = toml_help(&message);
        match e.span() {
            Some(span) => self.error_at(span, message, help),
            None => ConfigError::whole_file(&self.path, message, help),
        }
    }

    /// The byte span of the value (or key) at `path`, or of its nearest existing parent.
    pub fn locate(&self, path: &[Key]) -> Range<usize> {
        let Ok(doc) = DeTable::parse(&self.text) else {
            return 0..0;
        };
        let mut best = 0..0;
        let mut table: Option<&DeTable> = Some(doc.get_ref());
        let mut value: Option<&DeValue> = None;
        for key in path {
            match *key {
                Key::Field(name) | Key::Name(name) => {
                    let Some(t) = table.or_else(|| value.and_then(|v| v.as_table())) else {
                        break;
                    };
                    let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                        break;
                    };
                    if matches!(key, Key::Name(_)) {
                        best = k.span();
                        break;
                    }
                    best = v.span();
                    value = Some(v.get_ref());
                    table = None;
                }
                Key::Index(i) => {
                    let Some(arr) = value.and_then(|v| v.as_array()) else {
                        break;
                    };
                    let Some(v) = arr.get(i) else {
                        break;
                    };
                    best = v.span();
                    value = Some(v.get_ref());
                    table = None;
                }
            }
        }
        best
    }

    pub fn error_at_path(
        &self,
        path: &[Key],
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        self.error_at(self.locate(path), message, help)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// An io::Error without the "(os error N)" suffix users do not need.
pub fn plain_io_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn toml_help(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some(
            "remove the key or fix its spelling; the keys this table accepts are listed above"
                .into(),
        )
    } else if message.starts_with("missing field") {
        Some("add the field named above".into())
    } else if message.starts_with("invalid type") {
        Some("give the value the type named above (strings are in double quotes)".into())
    } else if message.contains("duplicate key") {
        Some("each key may appear once per table; host names must be unique".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let s = Source::new("f.toml", "a = 1\nbb = 2\n");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(6), (2, 1));
        assert_eq!(s.line_col(8), (2, 3));
    }

    #[test]
    fn locate_finds_nested_values_and_keys() {
        let s = Source::new(
            "f.toml",
            "[pod.pod-a]\nnode = \"node9\"\n\n[[fault]]\ntype = \"x\"\npod = \"p\"\n",
        );
        let span = s.locate(&[Key::Field("pod"), Key::Field("pod-a"), Key::Field("node")]);
        assert_eq!(s.line_col(span.start), (2, 8));
        let span = s.locate(&[Key::Field("pod"), Key::Name("pod-a")]);
        assert_eq!(s.line_col(span.start), (1, 6));
        let span = s.locate(&[Key::Field("fault"), Key::Index(0), Key::Field("pod")]);
        assert_eq!(s.line_col(span.start), (6, 7));
    }

    #[test]
    fn display_has_file_line_column_and_help() {
        let s = Source::new("x/f.toml", "a = 1\nb = 2\n");
        let e = s.error_at(6..7, "bad b", Some("fix b".into()));
        assert_eq!(e.to_string(), "x/f.toml:2:1: bad b\n  help: fix b");
    }
}
