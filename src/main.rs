//! The `socklab` binary: parse the command line, run it, map the outcome to an exit code.
//! Errors are one line on stderr; see `cli::exit` for the codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
