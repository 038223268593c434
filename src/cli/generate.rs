//! `socklab completions SHELL` and `socklab man`, generated from the clap definitions into
//! memory, then written to stdout at once (see `output`).

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;
use super::output;

/// Which shell to generate completions for.
#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

pub(crate) fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    // Rendered in memory first: clap_complete's generate() panics when its writer fails.
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "socklab", &mut buf);
    output::write(&buf)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man() -> anyhow::Result<ExitCode> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
    output::write(&buf)?;
    Ok(ExitCode::SUCCESS)
}
