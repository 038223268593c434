//! `socklab completions SHELL` and `socklab man [--dir DIR]`, generated from the clap
//! definitions, so they list exactly the flags each command takes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
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

/// Where the man pages go.
#[derive(Args, Debug)]
pub(crate) struct ManArgs {
    /// Write the whole page set into DIR, one roff page per command: socklab.1,
    /// socklab-tcp.1, socklab-tcp-listen.1 … (without it: the top page to stdout).
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "socklab", &mut script);
    let script = interfaces_when_completing(args.shell, &String::from_utf8_lossy(&script));
    let mut buf = output::Buffer::new();
    std::io::Write::write_all(&mut buf, script.as_bytes())?;
    buf.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// `--device IFACE` completes to the interfaces that exist when the user presses Tab (the
/// machine's or the namespace's: `/sys/class/net`), which a generated script cannot list:
/// clap's static scripts leave the value free, so the shell's own interface completer is put
/// in (bash: `compgen` over `/sys/class/net`; zsh: `_net_interfaces`; fish:
/// `__fish_print_interfaces`). Other shells keep clap's script.
fn interfaces_when_completing(shell: Shell, script: &str) -> String {
    match shell {
        Shell::Bash => script.replace(
            "--device)\n                    COMPREPLY=(\"${cur}\")",
            "--device)\n                    COMPREPLY=($(compgen -W \"$(ls /sys/class/net 2>/dev/null)\" -- \"${cur}\"))",
        ),
        Shell::Zsh => script.replace("]:IFACE:' \\", "]:IFACE:_net_interfaces' \\"),
        Shell::Fish => script
            .lines()
            .map(|l| match l.strip_suffix(" -r -f") {
                Some(head) if l.contains(" -l device ") => {
                    format!("{head} -r -f -a \"(__fish_print_interfaces)\"\n")
                }
                _ => format!("{l}\n"),
            })
            .collect(),
        _ => script.to_string(),
    }
}

pub(crate) fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    // Building names every subcommand `socklab-tcp-listen` (its display name), which is
    // what its page is called and how the pages refer to each other.
    cmd.build();
    match args.dir {
        None => {
            let mut buf = output::Buffer::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            buf.finish()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            write_pages(&cmd, &dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Renders the page of `cmd` and of every subcommand below it (clap's own `help`
/// subcommand aside) into DIR/NAME.1, each rendered in memory first, so a failed render
/// leaves no half-written page.
fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, dir)?;
    }
    Ok(())
}
