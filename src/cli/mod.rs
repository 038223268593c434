//! The command line: clap definitions live here and only here. Flags are validated into plain
//! library configuration (`SockOpts`, addresses) before any socket is opened, so usage errors
//! come out before anything touches the network.

mod bench;
mod common;
mod demo;
mod exit;
mod generate;
mod habits;
mod keep_open;
mod lab;
mod output;
mod relay;
mod show;
mod tcp;
mod udp;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use exit::failure;

/// TCP vs UDP, run, seen and measured.
///
/// Exit codes: 0 success (also when stdout closed early, as with `| head`; for lab, every
/// experiment ran: a refuted claim is an answer); 1 the run worked but found a failure (a
/// refused, reset or timed-out connection, lost data, no open port for -z, a failed write to
/// stdout, a bench server that is busy or refuses the test; for lab, an experiment that failed
/// with an error); 2 usage or setup error (bad flags or addresses, a failed
/// socket/setsockopt/bind/listen); 130/143 interrupted by SIGINT/SIGTERM.
#[derive(Parser, Debug)]
#[command(name = "socklab", version, about, long_about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// TCP endpoints: listen (socket, bind, listen, accept) and connect.
    #[command(subcommand)]
    Tcp(tcp::TcpCommand),
    /// UDP endpoints in every pattern: recv, send, peer, connect, serve.
    #[command(subcommand)]
    Udp(udp::UdpCommand),
    /// Benchmark TCP and UDP side by side (server, client, local).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// A TCP and a UDP exchange on loopback with the syscall trace on.
    Demo(demo::DemoArgs),
    /// Re-check the claims of the TCP-vs-UDP article on this kernel: run each experiment,
    /// observe what the kernel does, and give a verdict per claim (confirmed, refuted, partly,
    /// not run). Exit 0 when every experiment ran (a refuted claim is an answer), 1 if one
    /// failed with an error, 2 for an unknown claim number.
    Lab(lab::LabArgs),
    /// Print shell completions for SHELL to stdout.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) to stdout, or write the whole page set with --dir DIR.
    Man(generate::ManArgs),
}

/// Parses the command line and runs it.
pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return exit::usage(e),
    };
    exit::install_signal_handler();
    let result = match cli.command {
        Command::Tcp(c) => tcp::run(c),
        Command::Udp(c) => udp::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Demo(a) => demo::run(a),
        Command::Lab(a) => lab::run(a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    };
    exit::finish(result)
}
