//! `socklab lab`: re-check the claims of the TCP-vs-UDP article on this machine.
//!
//! `socklab lab` runs every experiment and prints the table and a summary; `lab list` lists
//! them; `lab run 8 13` runs only those claims; `lab show 8` prints every part of a claim with
//! its evidence and packet ladders. `--json` prints one document instead (schema in
//! docs/lab.md), `--markdown FILE` also writes a publishable report, `--html FILE` a
//! self-contained HTML page, `--pcap DIR` one pcap file per experiment.
//!
//! Exit codes: 0 when every experiment ran (a refuted claim is an answer, not a failure); 1 when
//! an experiment failed with an error; 2 on usage errors (an unknown claim number).
//!
//! Without root, the run re-executes itself inside a new user, network and mount namespace
//! (unshare(1): `--user --map-root-user --net --mount`, user_namespaces(7)), where it is root of
//! namespaces it owns: `ip netns` gets a private tmpfs on /run, and every experiment runs as
//! it does for root. Where the kernel refuses user namespaces, the run says so once on stderr
//! and runs what it can on the host's loopback.

use std::io::{IsTerminal, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use socklab::lab::report::{self, Meta};
use socklab::lab::{self, Experiment, Family, Finding, Lab, Verdict, capture};

use super::exit::on_signal_summary;
use super::output;

#[derive(Args, Debug)]
pub(crate) struct LabArgs {
    #[command(subcommand)]
    command: Option<LabCommand>,
    /// Print one JSON document (`{"meta": …, "experiments": […]}`, see docs/lab.md) instead
    /// of the table.
    #[arg(long, global = true)]
    json: bool,
    /// Also write a Markdown report (table, every part, evidence, matrices) to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    markdown: Option<PathBuf>,
    /// Write the packets each experiment captured to DIR/claim-NN.pcapng, one interface per
    /// network namespace (DIR itself is created if missing, not its parents).
    #[arg(long, value_name = "DIR", global = true)]
    pcap: Option<PathBuf>,
    /// Also write a self-contained HTML report (summary, every part, packet ladders as SVG,
    /// evidence) to FILE; with --pcap its wire lines name their pcap file and frame.
    #[arg(long, value_name = "FILE", global = true)]
    html: Option<PathBuf>,
    /// Address family: `4` (IPv4 over 127.0.0.1 and 198.51.100.0/24, the article's own),
    /// `6` (IPv6 over ::1 and 2001:db8::/64; broadcast claims 7–8 run their multicast analogue
    /// to ff02::1) or `both` (IPv4, then IPv6, reported side by side).
    #[arg(
        long,
        value_enum,
        value_name = "4|6|both",
        global = true,
        default_value = "4"
    )]
    family: FamilyChoice,
    /// IPv4 only (the default): `--family 4`.
    #[arg(short = '4', global = true, conflicts_with_all = ["ipv6", "family"])]
    ipv4: bool,
    /// IPv6 only: `--family 6`.
    #[arg(short = '6', global = true, conflicts_with = "family")]
    ipv6: bool,
}

/// The families of `--family`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum FamilyChoice {
    /// IPv4.
    #[value(name = "4")]
    V4,
    /// IPv6.
    #[value(name = "6")]
    V6,
    /// IPv4, then IPv6.
    #[value(name = "both")]
    Both,
}

impl LabArgs {
    /// The families to run, in order.
    fn families(&self) -> Vec<Family> {
        match (self.ipv6, self.family) {
            (true, _) | (false, FamilyChoice::V6) => vec![Family::Ipv6],
            (false, FamilyChoice::V4) => vec![Family::Ipv4],
            (false, FamilyChoice::Both) => vec![Family::Ipv4, Family::Ipv6],
        }
    }
}

#[derive(Subcommand, Debug)]
enum LabCommand {
    /// List the experiments: claim number, title, what the article says.
    List,
    /// Run the given claims (all when none is given) and print the table.
    Run {
        /// Claim numbers, e.g. `8 13`.
        #[arg(value_name = "CLAIM", value_parser = claim_numbers())]
        claims: Vec<u8>,
    },
    /// Run the given claims and print every part with its evidence: trace, facts, counters,
    /// socket states and the packets on the wire.
    Show {
        /// Claim numbers, e.g. `8`.
        #[arg(value_name = "CLAIM", value_parser = claim_numbers())]
        claims: Vec<u8>,
    },
    /// Write the experiments as Python 3 scripts (standard library only) that make the same
    /// socket calls and print the same facts as JSON: one `cNN_*.py` per experiment reproduced,
    /// `run_all.py` for one document of them all (compare it with `lab compare`).
    Export {
        /// The directory to write the scripts to (created if missing, not its parents).
        #[arg(long, value_name = "DIR")]
        python: PathBuf,
    },
    /// Print the claims and parts where two lab JSON documents (from `--json` or from the
    /// Python scripts) differ: verdicts and facts, ports chosen by the kernel aside. Exit 0 when
    /// they agree, 1 when they differ, 2 on bad input.
    Compare {
        /// The first document.
        #[arg(value_name = "A.json")]
        a: PathBuf,
        /// The second document.
        #[arg(value_name = "B.json")]
        b: PathBuf,
    },
}

/// What to print after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Table,
    Show,
}

pub(crate) fn run(a: LabArgs) -> anyhow::Result<ExitCode> {
    let registry = lab::registry();
    let (view, claims) = match &a.command {
        Some(LabCommand::List) => return list(&registry, a.json),
        Some(LabCommand::Export { python }) => return export_python(python),
        Some(LabCommand::Compare { a: x, b: y }) => return compare(x, y),
        Some(LabCommand::Run { claims }) => (View::Table, claims.clone()),
        Some(LabCommand::Show { claims }) if claims.is_empty() => {
            anyhow::bail!(
                "lab show needs claim numbers, e.g. `socklab lab show 4` (see `socklab lab list`)"
            )
        }
        Some(LabCommand::Show { claims }) => (View::Show, claims.clone()),
        None => (View::Table, vec![]),
    };
    let chosen = choose(&registry, &claims)?;
    if let Some(code) = reexec_in_user_namespace()? {
        return Ok(code);
    }
    if let Some(dir) = &a.pcap {
        create_last_component(dir)?;
    }
    // Open the report file now, so a bad path is a usage error before anything runs.
    let markdown = match &a.markdown {
        Some(file) => Some(
            std::fs::File::create(file).with_context(|| format!("create {}", file.display()))?,
        ),
        None => None,
    };
    let html = match &a.html {
        Some(file) => Some(
            std::fs::File::create(file).with_context(|| format!("create {}", file.display()))?,
        ),
        None => None,
    };
    let parameters = serde_json::json!({
        "command": if view == View::Show { "show" } else { "run" },
        "claims": chosen.iter().map(|e| e.claim()).collect::<Vec<_>>(),
        "json": a.json,
        "markdown": a.markdown,
        "pcap": a.pcap,
        "html": a.html,
        "families": a.families().iter().map(|f| f.name()).collect::<Vec<_>>(),
    });
    let lab = Lab::new();
    let mut meta = Meta::now(lab.is_root(), parameters);
    meta.isolation = isolation(lab.is_root()).into();
    meta.sysctls = match lab.is_root() {
        // Read where the experiments run: a fresh namespace has the kernel's defaults for the
        // per-namespace settings.
        true => lab.loopback("meta")?.run(report::sysctls)?,
        false => report::sysctls(),
    };
    let pid = std::process::id();
    on_signal_summary(move || {
        let removed = remove_namespaces_of(pid);
        format!("lab interrupted; removed {removed} network namespace(s) it had made")
    });
    let mut findings = Vec::new();
    for family in a.families() {
        let lab = Lab::new().with_family(family);
        findings.extend(run_all(&lab, &chosen));
    }
    if let Some(dir) = &a.pcap {
        write_pcaps(dir, &findings)?;
    }
    if let (Some(mut file), Some(path)) = (markdown, &a.markdown) {
        file.write_all(report::markdown(&meta, &findings).as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let (Some(mut file), Some(path)) = (html, &a.html) {
        let pcap = a.pcap.as_deref().map(|dir| link_from(path, dir));
        file.write_all(lab::html::report(&meta, &findings, pcap.as_deref()).as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
    }
    let mut out = output::Buffer::new();
    if a.json {
        serde_json::to_writer(&mut out, &report::json(&meta, &findings))?;
        writeln!(out)?;
    } else if view == View::Show {
        for (i, f) in findings.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", report::show(f))?;
        }
        writeln!(out, "\n{}", report::summary_lines(&findings).join("\n"))?;
    } else {
        write!(out, "{}", report::findings_table(&findings))?;
    }
    out.finish()?;
    let errored: Vec<String> = findings
        .iter()
        .filter(|f| f.errored())
        .map(|f| match &f.verdict {
            Verdict::NotRun(r) => format!("claim {} ({}): {r}", f.claim, f.family),
            v => format!("claim {}: {}", f.claim, v.word()),
        })
        .collect();
    if errored.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(super::failure(anyhow::anyhow!(
            "{} experiment(s) failed: {}",
            errored.len(),
            errored.join("; ")
        )))
    }
}

/// unshare(1) flags of the unprivileged run: a user namespace mapping us to root, with a
/// network and a mount namespace of its own (mounts kept private).
const UNSHARE: [&str; 6] = [
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    "--propagation",
    "private",
];

/// Set in the environment of the run re-executed inside a user namespace.
const IN_USERNS: &str = "SOCKLAB_LAB_IN_USERNS";
/// Set (to anything) to run without root on the host's loopback, without a user namespace.
const NO_USERNS: &str = "SOCKLAB_LAB_NO_USERNS";
/// The shell script run inside the new namespaces before the lab: `ip netns` keeps its
/// namespaces under /run/netns, which only the real root may create, so a private tmpfs goes
/// on /run (in this mount namespace only), then the arguments are executed.
const MOUNT_RUN: &str = "mount -t tmpfs socklab-run /run && exec \"$@\"";

/// How this run is isolated, for the report's meta.
fn isolation(root: bool) -> &'static str {
    match (root, std::env::var_os(IN_USERNS).is_some()) {
        (true, true) => "user namespace",
        (true, false) => "root",
        (false, _) => "none",
    }
}

/// Without root, runs this same command line again inside a new user + network + mount
/// namespace (`unshare -Urnm`, a tmpfs on /run for `ip netns`) and returns its exit code.
/// `None` when the run should go on here: as root, already inside, asked not to
/// ([`NO_USERNS`]), or when the kernel refuses user namespaces (said once on stderr).
fn reexec_in_user_namespace() -> anyhow::Result<Option<ExitCode>> {
    if socklab::netns::have_net_admin()
        || std::env::var_os(IN_USERNS).is_some()
        || std::env::var_os(NO_USERNS).is_some()
    {
        return Ok(None);
    }
    // The probe does what the run will: the namespaces and the tmpfs on /run.
    let probe = Command::new("unshare")
        .args(UNSHARE)
        .args(["sh", "-c", MOUNT_RUN, "sh", "true"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "socklab: lab: user namespaces are not available here ({}): parts that need namespaces are not run",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        Err(e) => {
            eprintln!(
                "socklab: lab: cannot run unshare(1) for a user namespace ({e}): parts that need namespaces are not run"
            );
            return Ok(None);
        }
    }
    let exe = std::env::current_exe().context("find this program to run it in a user namespace")?;
    let status = Command::new("unshare")
        .args(UNSHARE)
        .args(["sh", "-c", MOUNT_RUN, "sh"])
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(IN_USERNS, "1")
        .status()
        .context("run the lab in a user namespace (unshare)")?;
    let code = status.code().unwrap_or(1);
    Ok(Some(ExitCode::from(u8::try_from(code).unwrap_or(1))))
}

/// The experiments for `claims` (all for none); an unknown number is a usage error.
fn choose(
    registry: &[&'static dyn Experiment],
    claims: &[u8],
) -> anyhow::Result<Vec<&'static dyn Experiment>> {
    if claims.is_empty() {
        return Ok(registry.to_vec());
    }
    let known: Vec<String> = registry.iter().map(|e| e.claim().to_string()).collect();
    let mut chosen = Vec::new();
    for c in claims {
        let e = registry.iter().find(|e| e.claim() == *c).ok_or_else(|| {
            anyhow::anyhow!(
                "no experiment for claim {c} (known claims: {}; see `socklab lab list`)",
                known.join(" ")
            )
        })?;
        if !chosen.iter().any(|x: &&dyn Experiment| x.claim() == *c) {
            chosen.push(*e);
        }
    }
    Ok(chosen)
}

fn list(registry: &[&'static dyn Experiment], json: bool) -> anyhow::Result<ExitCode> {
    let mut out = output::Buffer::new();
    if json {
        let v: Vec<_> = registry
            .iter()
            .map(|e| {
                serde_json::json!({"claim": e.claim(), "title": e.title(),
                    "article": e.article(), "explanation": e.explanation()})
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "experiments": v }))?;
    } else {
        write!(out, "{}", report::list(registry))?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Runs each experiment in turn, with a progress bar on stderr when it is a terminal. A panic
/// in an experiment becomes an errored finding (its namespaces are dropped while unwinding).
fn run_all(lab: &Lab, chosen: &[&'static dyn Experiment]) -> Vec<Finding> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(chosen.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:20} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut findings = Vec::new();
    for e in chosen {
        if let Some(b) = &bar {
            b.set_message(format!(
                "claim {} ({}): {}",
                e.claim(),
                lab.family(),
                e.title()
            ));
        }
        let f = catch_unwind(AssertUnwindSafe(|| lab::run_one(*e, lab)))
            .unwrap_or_else(|_| panicked(*e, lab));
        findings.push(f);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    findings
}

fn panicked(e: &dyn Experiment, lab: &Lab) -> Finding {
    Finding {
        claim: e.claim(),
        family: lab.family(),
        title: e.title().into(),
        article: e.article().into(),
        observed: "not run: the experiment panicked".into(),
        verdict: Verdict::NotRun(format!("{}the experiment panicked", lab::ERROR_PREFIX)),
        explanation: e.explanation().into(),
        parts: vec![],
        duration_ms: 0,
        frames: lab.take_frames(),
        ss_seen: lab.take_ss_seen(),
    }
}

/// How a page written to `page` links to directory `dir`: relative when `dir` lies in the
/// page's directory, else an absolute `file://` URL.
fn link_from(page: &Path, dir: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let base = abs(page
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new(".")));
    let dir = abs(dir);
    match dir.strip_prefix(&base) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => format!("file://{}", dir.display()),
    }
}

/// Creates `dir` if it does not exist — its last component only: a missing parent is a usage
/// error, never a chain of directories made from a typo.
fn create_last_component(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("create {}", dir.display()))),
    }
}

fn write_pcaps(dir: &Path, findings: &[Finding]) -> anyhow::Result<()> {
    for f in findings {
        let path = dir.join(capture::pcap_file_name_of(f));
        capture::write_pcapng(&path, &f.frames)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Deletes the network namespaces process `pid` made (`ip netns del`), for an interrupted run
/// whose Drop guards will not run. Returns how many it removed. One being created at that very
/// moment may survive; the next run as root removes it (`netns::sweep_stale`).
fn remove_namespaces_of(pid: u32) -> usize {
    let mark = format!("-{pid}-");
    socklab::netns::existing()
        .into_iter()
        .filter(|n| n.contains(&mark))
        .filter(|n| {
            Command::new("ip")
                .args(["netns", "del", n])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .count()
}

/// Claim numbers as u8, offered to shell completion from the registry.
fn claim_numbers() -> super::common::Hinted<clap::builder::RangedI64ValueParser<u8>> {
    let claims = lab::registry()
        .iter()
        .map(|e| e.claim().to_string())
        .collect::<Vec<_>>();
    super::common::Hinted::new(clap::value_parser!(u8), claims)
}

/// `lab export --python DIR`: writes the scripts and names them on stdout.
fn export_python(dir: &Path) -> anyhow::Result<ExitCode> {
    create_last_component(dir)?;
    let written = lab::python::export(dir).with_context(|| format!("write {}", dir.display()))?;
    let mut out = output::Buffer::new();
    for p in written {
        writeln!(out, "{}", p.display())?;
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// `lab compare A B`: one line per difference, then notes and a summary line; exit 0 when the
/// documents agree, 1 when they differ (bad input is a usage error, exit 2).
fn compare(a: &Path, b: &Path) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| -> anyhow::Result<serde_json::Value> {
        let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))
    };
    let (da, db) = (read(a)?, read(b)?);
    let c = lab::compare::compare(&da, &db).map_err(anyhow::Error::msg)?;
    let mut out = output::Buffer::new();
    for d in &c.differences {
        writeln!(out, "differs: {d}")?;
    }
    for n in &c.notes {
        writeln!(out, "note: {n}")?;
    }
    writeln!(
        out,
        "{} difference(s) in {} part(s) compared (A {}, B {})",
        c.differences.len(),
        c.parts_compared,
        a.display(),
        b.display()
    )?;
    out.finish()?;
    Ok(if c.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
