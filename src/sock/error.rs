//! [`StepError`], the one-line error every failed socket step returns:
//! `bind 127.0.0.1:80: permission denied (EACCES)`. The errno names, descriptions and hints come
//! from [`crate::os::errno`].

use std::io;

use crate::os::errno::{describe, hint, name};

/// A failed socket step: which call, on what, and the OS error.
#[derive(Debug, thiserror::Error)]
pub struct StepError {
    /// The syscall that failed, e.g. `bind`.
    pub call: &'static str,
    /// What it was called with, e.g. `127.0.0.1:80`.
    pub target: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl StepError {
    /// The errno, when the error came from the OS.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The errno's symbolic name, e.g. `EADDRINUSE`, when the error came from the OS.
    pub fn errno_name(&self) -> Option<String> {
        self.errno().map(name)
    }

    /// The kind of the OS error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.call)?;
        if !self.target.is_empty() {
            write!(f, " {}", self.target)?;
        }
        match self.errno() {
            Some(e) => {
                write!(f, ": {} ({})", describe(e), name(e))?;
                if let Some(h) = hint(self.call, e) {
                    write!(f, "; {h}")?;
                }
                Ok(())
            }
            None => write!(f, ": {}", self.source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_error_is_one_line_with_errno_name() {
        let e = StepError {
            call: "bind",
            target: "127.0.0.1:80".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        let line = e.to_string();
        assert!(
            line.starts_with("bind 127.0.0.1:80: permission denied (EACCES)"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}
