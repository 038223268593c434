//! Exit codes and how errors are printed: one line on stderr, `socklab: <what failed>`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (also when stdout was closed early, as with `| head`) |
//! | 1    | the run worked but found a failure: refused, reset, lost data, a refuted claim |
//! | 2    | usage or setup error: bad flags or addresses, a failed socket/bind/listen/connect |
//! | 130  | interrupted by SIGINT (Ctrl-C) |
//! | 143  | terminated by SIGTERM |

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use nix::sys::signal::{SigSet, Signal};

/// An error from the data phase, after setup worked: exits 1 instead of 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct Failure(pub(crate) anyhow::Error);

/// Wraps any error as a data-phase [`Failure`] (exit 1).
pub(crate) fn failure(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(Failure(e.into()))
}

/// Prints a clap error as one line (help and version go to stdout in full) and exits 2.
pub(crate) fn usage(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid usage");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("socklab: {first} (see --help)");
    ExitCode::from(2)
}

/// Turns a command's result into the exit code, printing a failure as one line.
pub(crate) fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => ExitCode::from(report(&e)),
    }
}

/// Ends the process now with the code `result` calls for: for a run whose other direction is
/// still blocked (reading a terminal, say) and cannot be joined.
pub(crate) fn exit_now(result: anyhow::Result<()>) -> ! {
    let code = match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    };
    let _ = io::stdout().flush();
    std::process::exit(code.into())
}

/// Prints `e` as one line (nothing for a closed stdout) and returns its exit code.
fn report(e: &anyhow::Error) -> u8 {
    if is_stdout_closed(e) {
        return 0;
    }
    let line = format!("{e:#}").replace('\n', " ");
    let _ = writeln!(io::stderr(), "socklab: {line}");
    if e.is::<Failure>() { 1 } else { 2 }
}

/// Whether the error is a broken pipe on stdout (not on a socket: those are StepErrors).
pub(crate) fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    }) && !e
        .chain()
        .any(|c| c.downcast_ref::<socklab::sock::StepError>().is_some())
}

type Summary = Box<dyn Fn() -> String + Send>;
static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

/// Registers what to print on stderr when SIGINT/SIGTERM arrives (the byte/datagram counts).
pub(crate) fn on_signal_summary(f: impl Fn() -> String + Send + 'static) {
    *SUMMARY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

/// Blocks SIGINT and SIGTERM in every thread and waits for them on a dedicated one, which
/// prints the summary and exits 130/143. Exiting closes every socket through the kernel, so
/// connected TCP peers see a FIN (a RST only where unread data was pending, tcp(7)).
pub(crate) fn install_signal_handler() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            if let Some(f) = SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = writeln!(io::stderr(), "socklab: {}", f());
            }
            let _ = io::stdout().flush();
            std::process::exit(if sig == Signal::SIGINT { 130 } else { 143 });
        }
    });
}
