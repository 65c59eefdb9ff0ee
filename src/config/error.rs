//! Configuration errors: each names the file, the line and column where known, and the key path.

use std::fmt;

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file as given on the command line.
        file: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but its content is not a valid configuration.
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

/// A rejected value: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The file as given on the command line.
    pub file: String,
    /// 1-based line and column, when the parser knows them.
    pub position: Option<(u64, u64)>,
    /// Key path such as `nodes[2].offset`; empty for the document itself.
    pub path: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl ConfigError {
    /// The structured detail of an invalid file, if that is what this error is.
    pub fn invalid(&self) -> Option<&Invalid> {
        match self {
            ConfigError::Invalid(invalid) => Some(invalid),
            ConfigError::Read { .. } => None,
        }
    }
}

/// A validation failure before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RuleError {
    pub position: Option<(u64, u64)>,
    pub path: String,
    pub message: String,
}

impl RuleError {
    /// Attach the file name.
    pub fn in_file(self, file: &str) -> ConfigError {
        ConfigError::Invalid(Box::new(Invalid {
            file: file.to_string(),
            position: self.position,
            path: self.path,
            message: self.message,
        }))
    }
}
