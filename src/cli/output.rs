//! The one path to stdout. Every command's data goes through [`write`] (bytes as they come:
//! the relay, datagrams, JSON lines) or a [`Buffer`] (a report rendered in memory, then
//! written at once); nothing uses `print!`/`println!`, which panic when stdout fails.
//!
//! A failed write becomes a [`StdoutError`], and the exit code follows from it (see
//! `exit::report`): EPIPE (the reader went away, as with `| head -1`) ends the run quietly
//! with exit 0; any other error (ENOSPC on /dev/full or a full disk, EIO) is one line,
//! `socklab: writing to stdout: no space left on device (ENOSPC)`, and exit 1.

use std::io::{self, Write};

use socklab::os::errno;

/// A write to stdout failed.
#[derive(Debug, thiserror::Error)]
pub(crate) struct StdoutError(#[source] pub(crate) io::Error);

impl StdoutError {
    /// Whether the reader of stdout went away (EPIPE): not a failure of the run.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.raw_os_error() {
            Some(e) => write!(
                f,
                "writing to stdout: {} ({})",
                errno::describe(e),
                errno::name(e)
            ),
            None => write!(f, "writing to stdout: {}", self.0),
        }
    }
}

/// Writes all of `bytes` to stdout and flushes, so nothing waits in a buffer whose error
/// would only show at exit (where the standard library drops it).
pub(crate) fn write(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Writes `text` and a newline to stdout (see [`write`]).
pub(crate) fn line(text: impl std::fmt::Display) -> Result<(), StdoutError> {
    write(format!("{text}\n").as_bytes())
}

/// A report rendered in memory ([`Buffer::finish`] writes it): formatting into it cannot
/// fail, so `writeln!(buf, …)?` only ever fails at the one real write.
#[derive(Default)]
pub(crate) struct Buffer(Vec<u8>);

impl Buffer {
    /// An empty buffer.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Writes the whole buffer to stdout (see [`write`]).
    pub(crate) fn finish(self) -> Result<(), StdoutError> {
        write(&self.0)
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `eprintln!` that never panics: a diagnostic line on stderr, dropped if stderr itself fails
/// (closed, full), which must not end a run that is otherwise working.
macro_rules! diag {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use diag;
