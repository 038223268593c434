//! Exit codes and how errors are printed: one line on stderr, `socklab: <what failed>`.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success (also when stdout was closed early, as with `| head`); for lab, every experiment ran: a refuted claim is an answer |
//! | 1    | the run worked but found a failure: a refused or unreachable connect, a reset, a peer gone, lost data, a bench server that is busy or refuses the test; for lab, an experiment that failed with an error |
//! | 2    | usage or setup error: bad flags or addresses, a failed socket/setsockopt/bind/listen |
//! | 130  | interrupted by SIGINT (Ctrl-C) |
//! | 143  | terminated by SIGTERM |

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use socklab::sock::StepError;

use super::output::{self, StdoutError, diag};

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
        // Help and version are the run's output: stdout, through the one output path.
        let text = e.render().to_string();
        return finish(
            output::write(text.as_bytes())
                .map(|()| ExitCode::SUCCESS)
                .map_err(Into::into),
        );
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        diag!("socklab: {}", missing_subcommand(&e.render().to_string()));
        return ExitCode::from(2);
    }
    // clap's message may continue on the next lines (the missing arguments' names): keep
    // everything before the usage block, on one line.
    let text = e.to_string();
    let message = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        // clap's "to pass '-z' as a value, use '-- -z'" sends users the wrong way: an
        // unknown flag is almost always a habit from another tool, not a value.
        .filter(|l| !l.is_empty() && !l.starts_with("tip: to pass"))
        .collect::<Vec<_>>()
        .join(" ");
    let pointer = match e.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::String(arg)) => {
            super::habits::pointer(arg, &std::env::args().collect::<Vec<_>>())
        }
        _ => None,
    };
    if let Some(p) = pointer {
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        diag!("socklab: {message}; {p}");
        return ExitCode::from(2);
    }
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let message = if message.is_empty() {
        "invalid usage"
    } else {
        message
    };
    diag!("socklab: {message} (see --help)");
    ExitCode::from(2)
}

/// One line for a command given without its subcommand (`socklab tcp`), from the help clap
/// rendered: `socklab tcp needs a subcommand: listen or connect (see socklab tcp --help)`.
fn missing_subcommand(help: &str) -> String {
    let command = help
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map_or("socklab", |u| {
            u.split(" <").next().unwrap_or("socklab").trim()
        });
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    let choices = match subcommands.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "see the list".to_string(),
    };
    format!("`{command}` needs a subcommand: {choices} (see `{command} --help`)")
}

/// Turns a command's result into the exit code, printing a failure as one line.
pub(crate) fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => ExitCode::from(report(&e)),
    }
}

/// Whether `t` ends within a short grace period. Before ending the process while the other
/// direction of a relay still runs, this lets a thread that has just made its last call
/// finish recording it, so the trace does not lose a call that did happen.
pub(crate) fn finished_soon<T>(t: &std::thread::ScopedJoinHandle<'_, T>) -> bool {
    let deadline = Instant::now() + Duration::from_millis(250);
    while !t.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Ends the process now with the code `result` calls for: for a run whose other direction is
/// still blocked (reading a terminal, say) and cannot be joined.
pub(crate) fn exit_now(result: anyhow::Result<()>) -> ! {
    // Both directions of a relay may fail at once (a peer gone: EPIPE on one thread,
    // ECONNRESET on the other): the first one to get here reports, the other waits for exit.
    static EXITING: Mutex<()> = Mutex::new(());
    let _first = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    std::mem::forget(_first);
    let code = match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    };
    std::process::exit(code.into())
}

/// Prints `e` as one line (nothing for a closed stdout) and returns its exit code: 0 for a
/// closed stdout, 1 for a failed write to stdout or a data-phase [`Failure`], 2 otherwise.
fn report(e: &anyhow::Error) -> u8 {
    if let Some(out) = stdout_error(e) {
        if out.is_closed() {
            return 0;
        }
        let _ = writeln!(io::stderr(), "socklab: {out}");
        return 1;
    }
    let _ = writeln!(io::stderr(), "socklab: {}", one_line(e));
    if e.is::<Failure>() { 1 } else { 2 }
}

/// The error and its causes joined with ": ", stopping at a [`StepError`]: its Display
/// already names the OS error, which would otherwise be printed twice.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts = Vec::new();
    for c in e.chain() {
        parts.push(c.to_string());
        if is_step(c) {
            break;
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// Whether a link of an error chain is a socket step's error (possibly wrapped as a
/// [`Failure`], whose Display and source are the wrapped error's).
fn is_step(c: &(dyn std::error::Error + 'static)) -> bool {
    c.is::<StepError>()
        || c.downcast_ref::<Failure>()
            .is_some_and(|f| f.0.is::<StepError>())
}

/// The failed write to stdout behind `e`, if that is what ended the run.
pub(crate) fn stdout_error(e: &anyhow::Error) -> Option<&StdoutError> {
    e.chain().find_map(|c| c.downcast_ref::<StdoutError>())
}

type Summary = Box<dyn Fn() -> String + Send>;
static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

/// Held for reading around each transfer that the summary counts (a write to stdout or a
/// socket together with the update of its counter), and taken for writing by the signal
/// thread before it reads the counters: so the summary never counts a write that did not
/// happen, nor misses one that did, and no write happens after it.
static GATE: RwLock<()> = RwLock::new(());
/// Set when SIGINT/SIGTERM arrived: no new counted transfer starts.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// How long the signal thread waits for a transfer in progress (a write blocked on a full
/// pipe, say) before it prints the summary anyway, saying so.
const GATE_WAIT: Duration = Duration::from_secs(2);

/// Runs `f`, one transfer and the update of its counter, as one unit for the SIGINT/SIGTERM
/// summary (see [`GATE`]). `f` must not wait for input (poll for it first): the signal
/// thread waits for it to end. Once a signal has arrived, the calling thread stops here until
/// the process exits.
pub(crate) fn counted<T>(f: impl FnOnce() -> T) -> T {
    let gate = GATE.read().unwrap_or_else(|e| e.into_inner());
    if STOPPING.load(Ordering::Acquire) {
        drop(gate);
        loop {
            std::thread::park();
        }
    }
    f()
}

/// Registers what to print on stderr when SIGINT/SIGTERM arrives (the byte/datagram counts).
pub(crate) fn on_signal_summary(f: impl Fn() -> String + Send + 'static) {
    *SUMMARY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

/// Blocks SIGINT and SIGTERM in every thread and waits for them on a dedicated one, which
/// stops the counted transfers ([`counted`]), prints the summary and exits 130/143. Exiting
/// closes every socket through the kernel, so connected TCP peers see a FIN (a RST only where
/// unread data was pending, tcp(7)).
pub(crate) fn install_signal_handler() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            STOPPING.store(true, Ordering::Release);
            let deadline = Instant::now() + GATE_WAIT;
            let gate = loop {
                match GATE.try_write() {
                    Ok(g) => break Some(g),
                    Err(_) if Instant::now() >= deadline => break None,
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            };
            if let Some(f) = SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let note = match gate {
                    Some(_) => "",
                    None => " (a write was still blocked: it may be missing from these counts)",
                };
                let _ = writeln!(io::stderr(), "socklab: {}{note}", f());
            }
            std::process::exit(if sig == Signal::SIGINT { 130 } else { 143 });
        }
    });
}
