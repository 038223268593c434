//! How a lab run is shown: the table of findings with a summary line, the `show` view of every
//! part with its evidence, one JSON document (`{"meta": …, "experiments": […]}`, schema in
//! docs/lab.md), and a Markdown report a reader can publish.
//!
//! Renderers are generic over the evidence: a fact named `matrix` (or `matrix_…`) shaped as
//! `{"rows": [...], "cols": [...], "cells": [[...]]}` (optionally with a `"title"` for the
//! corner) is drawn as a table in the `show` view and in Markdown, once per claim: a later part
//! whose evidence holds the same matrix refers to the part where it was drawn (the JSON keeps
//! every part's evidence whole).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use serde_json::Value;

use super::{Evidence, Experiment, Family, Finding, Part, Verdict};
use crate::trace::render;

/// What a run was: the facts a reader needs to reproduce or compare it.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// This program's version (Cargo.toml).
    pub socklab_version: String,
    /// The kernel release (`uname -r`, from /proc/sys/kernel/osrelease).
    pub kernel: String,
    /// CPUs available to this process.
    pub cpus: usize,
    /// Whether the run could create namespaces (root, or root of a user namespace).
    pub root: bool,
    /// How the run was isolated: `root` (namespaces of the machine's root), `user namespace`
    /// (an unprivileged run re-executed as root of its own user namespace), `none` (the host's
    /// loopback; parts needing namespaces not run).
    pub isolation: String,
    /// The sysctls that shape the results, as read where the experiments run
    /// (`net.ipv4.tcp_wmem` …; missing ones left out).
    pub sysctls: BTreeMap<String, String>,
    /// When the run started, RFC 3339 in UTC (`2026-11-25T01:30:00Z`).
    pub started_at: String,
    /// The parameters of the run (which claims, which outputs).
    pub parameters: Value,
}

impl Meta {
    /// The meta block of a run starting now.
    pub fn now(root: bool, parameters: Value) -> Self {
        Self {
            socklab_version: env!("CARGO_PKG_VERSION").into(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            root,
            isolation: if root { "root" } else { "none" }.into(),
            sysctls: BTreeMap::new(),
            started_at: rfc3339(SystemTime::now()),
            parameters,
        }
    }
}

/// The sysctls that shape the lab's results, read from /proc/sys in the calling thread's network
/// namespace: buffer sizes and limits (claims 10, 11), TIME-WAIT reuse (13, 14), the
/// ephemeral port range (ports the kernel picks), and the TIME-WAIT bucket limit.
pub fn sysctls() -> BTreeMap<String, String> {
    const NAMES: [&str; 8] = [
        "net.ipv4.tcp_wmem",
        "net.ipv4.tcp_rmem",
        "net.core.rmem_max",
        "net.core.wmem_max",
        "net.core.rmem_default",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_max_tw_buckets",
    ];
    NAMES
        .iter()
        .filter_map(|n| {
            let path = format!("/proc/sys/{}", n.replace('.', "/"));
            let v = std::fs::read_to_string(path).ok()?;
            Some((
                n.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

/// `2026-11-25T01:30:00Z` for a time (whole seconds, UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// How many findings got each verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Experiments run.
    pub experiments: usize,
    /// Claims confirmed.
    pub confirmed: usize,
    /// Claims refuted.
    pub refuted: usize,
    /// Claims partly confirmed.
    pub partly: usize,
    /// Claims not run (needs root, inconclusive, or the experiment failed).
    pub not_run: usize,
    /// Claims with no form in the family run, where an analogue ran instead (IPv6: claims 7
    /// and 8, broadcast).
    pub analogue: usize,
    /// Experiments that failed with an error (counted in `not_run` too).
    pub errors: usize,
}

impl Summary {
    /// Counts the verdicts of `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut s = Self {
            experiments: findings.len(),
            ..Self::default()
        };
        for f in findings {
            match f.verdict {
                Verdict::Confirmed => s.confirmed += 1,
                Verdict::Refuted => s.refuted += 1,
                Verdict::Partly => s.partly += 1,
                Verdict::NotRun(_) => s.not_run += 1,
                Verdict::Analogue(_) => s.analogue += 1,
            }
            s.errors += usize::from(f.errored());
        }
        s
    }

    /// `5 claims: 3 confirmed, 2 partly, 0 refuted, 0 not run`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} claim{}: {} confirmed, {} partly, {} refuted, {} not run",
            self.experiments,
            if self.experiments == 1 { "" } else { "s" },
            self.confirmed,
            self.partly,
            self.refuted,
            self.not_run
        );
        if self.analogue > 0 {
            let _ = write!(line, ", {} analogue", self.analogue);
        }
        if self.errors > 0 {
            let _ = write!(line, " ({} failed with an error)", self.errors);
        }
        line
    }
}

/// The address families of `findings`, in the order they ran.
pub fn families(findings: &[Finding]) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for f in findings {
        if !out.contains(&f.family) {
            out.push(f.family);
        }
    }
    out
}

/// The findings as rows, one per claim (in the order first run), with a column per family of
/// [`families`]: the finding of that claim in that family, if it ran.
pub fn by_claim(findings: &[Finding]) -> Vec<Vec<Option<&Finding>>> {
    let fams = families(findings);
    let mut claims: Vec<u8> = Vec::new();
    for f in findings {
        if !claims.contains(&f.claim) {
            claims.push(f.claim);
        }
    }
    claims
        .iter()
        .map(|&c| {
            fams.iter()
                .map(|&fam| findings.iter().find(|f| f.claim == c && f.family == fam))
                .collect()
        })
        .collect()
}

/// The summary line ([`Summary::line`]) of a run over IPv4 alone; one per family, prefixed
/// with its name (`ipv6: 14 claims: …`), otherwise.
pub fn summary_lines(findings: &[Finding]) -> Vec<String> {
    let fams = families(findings);
    if fams.len() <= 1 && fams.first().is_none_or(|f| *f == Family::Ipv4) {
        return vec![Summary::of(findings).line()];
    }
    fams.iter()
        .map(|&fam| {
            let of: Vec<Finding> = findings
                .iter()
                .filter(|f| f.family == fam)
                .cloned()
                .collect();
            format!("{fam}: {}", Summary::of(&of).line())
        })
        .collect()
}

/// How a claim's heading names its family: nothing for IPv4 (the article's own), ` (ipv6)`.
pub fn family_tag(f: &Finding) -> String {
    match f.family {
        Family::Ipv4 => String::new(),
        fam => format!(" ({fam})"),
    }
}

/// The list of experiments: claim, title, what the article says.
pub fn list(experiments: &[&dyn Experiment]) -> String {
    let mut t = table(&["claim", "title", "the article says"]);
    for e in experiments {
        t.add_row(vec![
            e.claim().to_string(),
            e.title().into(),
            e.article().into(),
        ]);
    }
    format!("{t}\n")
}

/// The findings as a table (claim, what the article says, what this kernel did, verdict)
/// followed by the summary line.
/// A run over both families is drawn side by side: per claim, a column per family with its
/// verdict and its parts' marks (`1a ✓ 1b ✗ · aside 1e ✓`); `lab show` has the rest.
pub fn findings_table(findings: &[Finding]) -> String {
    let fams = families(findings);
    let t = if fams.len() > 1 {
        let mut header = vec!["claim".to_string(), "the article says".to_string()];
        header.extend(fams.iter().map(|f| format!("verdict ({f})")));
        let mut t = table(&header.iter().map(String::as_str).collect::<Vec<_>>());
        for row in by_claim(findings) {
            let Some(first) = row.iter().flatten().next() else {
                continue;
            };
            let mut cells = vec![first.claim.to_string(), first.article.clone()];
            cells.extend(row.iter().map(|f| {
                f.map_or_else(
                    || "–".to_string(),
                    |f| format!("{}\n{}", verdict_text(&f.verdict), part_marks(f)),
                )
            }));
            t.add_row(cells);
        }
        t
    } else {
        let tag = fams.first().filter(|f| **f != Family::Ipv4);
        let did = match tag {
            Some(f) => format!("what this kernel did ({f})"),
            None => "what this kernel did".into(),
        };
        let mut t = table(&["claim", "the article says", &did, "verdict"]);
        for f in findings {
            t.add_row(vec![
                f.claim.to_string(),
                f.article.clone(),
                kernel_lines(f),
                verdict_text(&f.verdict),
            ]);
        }
        t
    };
    format!("{t}\n{}\n", summary_lines(findings).join("\n"))
}

/// The marks of a finding's parts: votes, then asides (`1a ✓ 1b ✗ · aside 1e ✓`).
fn part_marks(f: &Finding) -> String {
    let marks = |votes: bool| {
        f.parts
            .iter()
            .filter(|p| p.votes() == votes)
            .map(|p| format!("{}{} {}", f.claim, p.id, mark(&p.verdict)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match (marks(true), marks(false)) {
        (v, a) if a.is_empty() => v,
        (v, a) if v.is_empty() => format!("aside {a}"),
        (v, a) => format!("{v} · aside {a}"),
    }
}

/// What the kernel did, one line per voting part with its verdict's mark (✓ confirmed,
/// ✗ refuted, ½ partly, – not run), then the asides marked `aside` (they do not count); a
/// finding without parts gives its own line.
pub(crate) fn kernel_lines(f: &Finding) -> String {
    if f.parts.is_empty() {
        return f.observed.clone();
    }
    let votes = f.parts.iter().filter(|p| p.votes());
    let asides = f.parts.iter().filter(|p| !p.votes());
    votes
        .chain(asides)
        .map(|p| {
            let role = if p.votes() { "" } else { " aside" };
            format!(
                "{}{}{role} {} {}",
                f.claim,
                p.id,
                mark(&p.verdict),
                p.observed
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The article's sentence of a vote, as shown: `「中文」 (English)`; an aside says so.
fn quoted(p: &Part) -> String {
    match &p.quote {
        Some(q) if p.votes() => format!("「{}」 ({})", q.zh, q.en),
        _ => "aside (the lab's own statement; not counted in the verdict)".into(),
    }
}

/// A part's label with its role: `8a` for a vote, `8f (aside)`.
fn label(claim: u8, p: &Part) -> String {
    if p.votes() {
        format!("{claim}{}", p.id)
    } else {
        format!("{claim}{} (aside)", p.id)
    }
}

fn mark(v: &Verdict) -> &'static str {
    match v {
        Verdict::Confirmed => "✓",
        Verdict::Refuted => "✗",
        Verdict::Partly => "½",
        Verdict::NotRun(_) => "–",
        Verdict::Analogue(_) => "≈",
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if !t.is_tty() {
        t.set_width(140);
    }
    t
}

/// Every part of `f` with its statement, what was observed, its verdict and the evidence:
/// the trace as strace-like lines, facts, counters, socket states and the wire.
pub fn show(f: &Finding) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Claim {}{}: {} — {}",
        f.claim,
        family_tag(f),
        f.title,
        verdict_text(&f.verdict)
    );
    let _ = writeln!(s, "The article: {}", f.article);
    let _ = writeln!(s, "Why: {}", f.explanation);
    let _ = writeln!(s, "Took {} ms.", f.duration_ms);
    let mut drawn = Drawn::default();
    for p in &f.parts {
        let _ = writeln!(
            s,
            "\n{} [{}] {}",
            label(f.claim, p),
            verdict_text(&p.verdict),
            p.statement
        );
        let _ = writeln!(s, "  the article: {}", quoted(p));
        let _ = writeln!(s, "  observed: {}", p.observed);
        show_evidence(
            &mut s,
            &p.evidence,
            &mut drawn,
            &format!("{}{}", f.claim, p.id),
        );
        let py = super::python::lines(&p.evidence);
        if !py.is_empty() {
            let _ = writeln!(s, "  in Python:");
            for l in py {
                let _ = writeln!(s, "    {l}");
            }
        }
        s.push_str(&super::ladder::ascii::section(f, p));
    }
    s
}

/// The matrices and evidence blocks (trace, states, wire) already drawn for one claim, each
/// with the part (`8a`) where it was drawn, so that a repeat is drawn once.
#[derive(Default)]
struct Drawn<'a> {
    seen: Vec<(&'a str, &'a Value, String)>,
    blocks: Vec<(&'static str, Vec<String>, String)>,
}

impl<'a> Drawn<'a> {
    /// The part where the matrix `name` with this value was drawn before, or `None` after
    /// noting that `part` draws it now.
    fn earlier(&mut self, name: &'a str, value: &'a Value, part: &str) -> Option<String> {
        if let Some((_, _, at)) = self.seen.iter().find(|(n, v, _)| *n == name && *v == value) {
            return Some(at.clone());
        }
        self.seen.push((name, value, part.to_string()));
        None
    }

    /// The part where the block `title` with these lines was drawn before, or `None` after
    /// noting that `part` draws it now.
    fn earlier_block(
        &mut self,
        title: &'static str,
        lines: &[String],
        part: &str,
    ) -> Option<String> {
        if let Some((_, _, at)) = self
            .blocks
            .iter()
            .find(|(t, l, _)| *t == title && l == lines)
        {
            return Some(at.clone());
        }
        self.blocks.push((title, lines.to_vec(), part.to_string()));
        None
    }
}

pub(crate) fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::NotRun(reason) => format!("not run: {reason}"),
        Verdict::Analogue(what) => format!("analogue, not a verdict on the article: {what}"),
        v => v.word().into(),
    }
}

fn show_evidence<'a>(s: &mut String, ev: &'a Evidence, drawn: &mut Drawn<'a>, part: &str) {
    if !ev.trace.is_empty() {
        let _ = writeln!(s, "  trace:");
        for e in &ev.trace {
            for line in render::text(e).lines() {
                let _ = writeln!(s, "    {line}");
            }
        }
    }
    let (matrices, facts) = split_matrices(&ev.facts);
    if !facts.is_empty() {
        let _ = writeln!(s, "  facts:");
        for (k, v) in facts {
            let _ = writeln!(s, "    {k}: {}", compact(v));
        }
    }
    for (name, value, m) in matrices {
        if let Some(at) = drawn.earlier(name, value, part) {
            let _ = writeln!(s, "  {name}: the same as in {at} above");
            continue;
        }
        let mut t = table(&m.header());
        for row in m.rows_text() {
            t.add_row(row);
        }
        let _ = writeln!(s, "  {name}:");
        for line in t.to_string().lines() {
            let _ = writeln!(s, "    {line}");
        }
    }
    if !ev.counters.is_empty() {
        let c: Vec<String> = ev
            .counters
            .iter()
            .map(|(k, v)| format!("{k} {v:+}"))
            .collect();
        let _ = writeln!(s, "  counters: {}", c.join(", "));
    }
    for (title, lines) in [("states", &ev.states), ("wire", &ev.wire)] {
        if !lines.is_empty() {
            let _ = writeln!(s, "  {title}:");
            for l in lines {
                let _ = writeln!(s, "    {l}");
            }
        }
    }
}

/// A fact value in one line: strings bare, anything else as compact JSON.
pub(crate) fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A matrix fact: row labels, column labels, cells.
pub(crate) struct Matrix {
    title: String,
    rows: Vec<String>,
    cols: Vec<String>,
    cells: Vec<Vec<String>>,
}

impl Matrix {
    fn parse(v: &Value) -> Option<Self> {
        let labels = |key: &str| -> Option<Vec<String>> {
            Some(v.get(key)?.as_array()?.iter().map(compact).collect())
        };
        let cells = v
            .get("cells")?
            .as_array()?
            .iter()
            .map(|row| Some(row.as_array()?.iter().map(cell).collect()))
            .collect::<Option<Vec<Vec<String>>>>()?;
        Some(Self {
            title: v.get("title").map(compact).unwrap_or_default(),
            rows: labels("rows")?,
            cols: labels("cols")?,
            cells,
        })
    }

    pub(crate) fn header(&self) -> Vec<&str> {
        std::iter::once(self.title.as_str())
            .chain(self.cols.iter().map(String::as_str))
            .collect()
    }

    pub(crate) fn rows_text(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut row = vec![r.clone()];
                row.extend(self.cells.get(i).cloned().unwrap_or_default());
                row
            })
            .collect()
    }
}

/// A matrix cell: `yes`/`no` for booleans, strings bare, other values as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        v => compact(v),
    }
}

/// Facts split into matrices (drawn as tables, kept with their value to tell repeats) and the
/// rest (listed), each with its name.
pub(crate) type Split<'a> = (Vec<(&'a str, &'a Value, Matrix)>, Vec<(&'a str, &'a Value)>);

pub(crate) fn split_matrices(facts: &BTreeMap<String, Value>) -> Split<'_> {
    let mut matrices = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in facts {
        match (k.starts_with("matrix"), Matrix::parse(v)) {
            (true, Some(m)) => matrices.push((k.as_str(), v, m)),
            _ => rest.push((k.as_str(), v)),
        }
    }
    (matrices, rest)
}

/// The whole run as one JSON document, members in this order (schema in docs/lab.md).
#[derive(Debug, Clone, Serialize)]
pub struct Document<'a> {
    /// What the run was.
    pub meta: &'a Meta,
    /// How many claims got each verdict.
    pub summary: Summary,
    /// The same per address family (`ipv4`, `ipv6`), for a run over both.
    pub by_family: BTreeMap<Family, Summary>,
    /// The findings, in the order run.
    pub experiments: &'a [Finding],
}

/// The document of a run: `{"meta": …, "summary": …, "experiments": [Finding…]}`.
pub fn json<'a>(meta: &'a Meta, findings: &'a [Finding]) -> Document<'a> {
    let by_family = families(findings)
        .into_iter()
        .map(|fam| {
            let of: Vec<Finding> = findings
                .iter()
                .filter(|f| f.family == fam)
                .cloned()
                .collect();
            (fam, Summary::of(&of))
        })
        .collect();
    Document {
        meta,
        summary: Summary::of(findings),
        by_family,
        experiments: findings,
    }
}

/// A Markdown report: the table, the summary, then each claim with its parts, matrices as
/// tables and the evidence in collapsible blocks.
pub fn markdown(meta: &Meta, findings: &[Finding]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# socklab lab report\n");
    let _ = writeln!(
        s,
        "Linux {} · {} CPU{} · {} · socklab {} · started {}\n",
        meta.kernel,
        meta.cpus,
        if meta.cpus == 1 { "" } else { "s" },
        match meta.isolation.as_str() {
            "root" => "root (private network namespaces)",
            "user namespace" => "unprivileged, in a user namespace (private network namespaces)",
            _ => "no namespaces (host loopback; two-host parts not run)",
        },
        meta.socklab_version,
        meta.started_at
    );
    let fams = families(findings);
    if fams.len() > 1 {
        let cols: Vec<String> = fams.iter().map(|f| format!("{f}")).collect();
        let _ = writeln!(s, "| claim | title | {} |", cols.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(cols.len()));
        for row in by_claim(findings) {
            let Some(first) = row.iter().flatten().next() else {
                continue;
            };
            let cells: Vec<String> = row
                .iter()
                .map(|f| {
                    f.map_or_else(
                        || "–".to_string(),
                        |f| {
                            format!(
                                "[**{}**](#claim-{}{}) {}",
                                f.verdict.word(),
                                f.claim,
                                f.anchor_suffix(),
                                md_cell(&part_marks(f))
                            )
                        },
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                first.claim,
                md_cell(&first.title),
                cells.join(" | ")
            );
        }
    } else {
        let _ = writeln!(
            s,
            "| claim | title | votes (the article's sentences) | asides (not counted) | verdict |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for f in findings {
            let marks = |votes: bool| {
                let m: Vec<String> = f
                    .parts
                    .iter()
                    .filter(|p| p.votes() == votes)
                    .map(|p| format!("{}{} {}", f.claim, p.id, mark(&p.verdict)))
                    .collect();
                if m.is_empty() {
                    "–".to_string()
                } else {
                    m.join(" ")
                }
            };
            let _ = writeln!(
                s,
                "| [{}](#claim-{}{}) | {} | {} | {} | **{}** |",
                f.claim,
                f.claim,
                f.anchor_suffix(),
                md_cell(&f.title),
                marks(true),
                marks(false),
                f.verdict.word()
            );
        }
    }
    let _ = writeln!(
        s,
        "\n✓ confirmed · ✗ refuted · ½ partly · – not run · ≈ analogue (the claim has no form in \
         this family; what ran instead is shown, not judged against the article). A claim's \
         verdict comes from its votes only."
    );
    let _ = writeln!(s, "\n{}\n", summary_lines(findings).join("  \n"));
    for f in findings {
        let _ = writeln!(
            s,
            "<a id=\"claim-{}{}\"></a>\n## Claim {}{}: {} — {}\n",
            f.claim,
            f.anchor_suffix(),
            f.claim,
            family_tag(f),
            f.title,
            verdict_text(&f.verdict)
        );
        let _ = writeln!(s, "> {}\n", f.article);
        let _ = writeln!(s, "{}\n", f.explanation);
        let mut drawn = Drawn::default();
        for p in &f.parts {
            markdown_part(&mut s, f, p, &mut drawn);
            s.push_str(&super::ladder::mermaid::section(f, p));
        }
    }
    s
}

fn markdown_part<'a>(s: &mut String, f: &Finding, p: &'a Part, drawn: &mut Drawn<'a>) {
    let claim = f.claim;
    let _ = writeln!(
        s,
        "### {} — {}\n",
        label(claim, p),
        verdict_text(&p.verdict)
    );
    match &p.quote {
        Some(q) if p.votes() => {
            let _ = writeln!(s, "> {}\n>\n> *{}*\n", q.zh, q.en);
        }
        _ => {
            let _ = writeln!(s, "*Aside, not counted in the verdict.*\n");
        }
    }
    let _ = writeln!(s, "*Tested:* {}\n", p.statement);
    let _ = writeln!(s, "*This kernel:* {}\n", p.observed);
    let ev = &p.evidence;
    let (matrices, facts) = split_matrices(&ev.facts);
    let here = format!("{claim}{}", p.id);
    for (name, value, m) in &matrices {
        let anchor = |at: &str| format!("claim-{at}{}-{name}", f.anchor_suffix());
        if let Some(at) = drawn.earlier(name, value, &here) {
            let _ = writeln!(s, "{name}: the same as in [{at}](#{}).\n", anchor(&at));
            continue;
        }
        let _ = writeln!(s, "<a id=\"{}\"></a>\n{name}:\n", anchor(&here));
        let header = m.header();
        let _ = writeln!(
            s,
            "| {} |",
            header
                .iter()
                .map(|h| md_cell(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
        for row in m.rows_text() {
            let _ = writeln!(
                s,
                "| {} |",
                row.iter()
                    .map(|c| md_cell(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let _ = writeln!(s);
    }
    if ev.trace.is_empty()
        && facts.is_empty()
        && ev.counters.is_empty()
        && ev.wire.is_empty()
        && ev.states.is_empty()
    {
        return;
    }
    let _ = writeln!(s, "<details><summary>Evidence</summary>\n");
    let fact_lines: Vec<String> = facts
        .iter()
        .map(|(k, v)| format!("- `{k}`: `{}`", compact(v).replace('`', "'")))
        .collect();
    if !fact_lines.is_empty() {
        match drawn.earlier_block("Facts", &fact_lines, &here) {
            Some(at) => {
                let _ = writeln!(s, "Facts: the same as in {at} above.\n");
            }
            None => {
                let _ = writeln!(s, "{}\n", fact_lines.join("\n"));
            }
        }
    }
    if !ev.counters.is_empty() {
        let c: Vec<String> = ev
            .counters
            .iter()
            .map(|(k, v)| format!("`{k}` {v:+}"))
            .collect();
        let _ = writeln!(s, "Counters: {}\n", c.join(", "));
    }
    let blocks = [
        (
            "Trace",
            ev.trace.iter().map(render::text).collect::<Vec<_>>(),
        ),
        ("Socket states", ev.states.clone()),
        ("Wire", ev.wire.clone()),
    ];
    for (title, lines) in blocks {
        if lines.is_empty() {
            continue;
        }
        match drawn.earlier_block(title, &lines, &here) {
            Some(at) => {
                let _ = writeln!(s, "{title}: the same as in {at} above.\n");
            }
            None => {
                let _ = writeln!(s, "{title}:\n\n```text\n{}\n```\n", lines.join("\n"));
            }
        }
    }
    let _ = writeln!(s, "</details>\n");
}

/// Text safe inside a Markdown table cell.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(claim: u8, parts: Vec<Part>) -> Finding {
        Finding {
            claim,
            family: Family::Ipv4,
            title: "the | title".into(),
            article: "the article".into(),
            observed: "what happened".into(),
            verdict: crate::lab::verdict_of(&parts),
            explanation: "udp(7)".into(),
            parts,
            duration_ms: 3,
            frames: vec![],
            ss_seen: vec![],
        }
    }

    fn matrix_part() -> Part {
        let mut ev = Evidence::default();
        ev.fact(
            "matrix",
            serde_json::json!({"title": "bound to", "rows": ["0.0.0.0", "127.0.0.1"],
                "cols": ["255.255.255.255", "127.255.255.255"],
                "cells": [[true, false], ["no", "yes"]]}),
        );
        ev.fact("port", 9000);
        Part::judged("a", "receivers", "some".into(), true, ev)
            .votes_on(crate::lab::article::BCAST_TEST_4)
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400 + 3_661);
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01Z");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_795_570_229);
        assert_eq!(rfc3339(t), "2026-11-25T01:30:29Z");
    }

    #[test]
    fn summary_counts_each_verdict() {
        let f = vec![
            finding(1, vec![matrix_part()]),
            finding(2, vec![Part::not_run("a", "s", "needs root")]),
        ];
        let s = Summary::of(&f);
        assert_eq!(
            (s.experiments, s.confirmed, s.not_run, s.errors),
            (2, 1, 1, 0)
        );
        assert_eq!(
            s.line(),
            "2 claims: 1 confirmed, 0 partly, 0 refuted, 1 not run"
        );
    }

    #[test]
    fn markdown_draws_matrices_and_escapes_cells() {
        let meta = Meta::now(false, Value::Null);
        let md = markdown(&meta, &[finding(8, vec![matrix_part()])]);
        assert!(
            md.contains("| bound to | 255.255.255.255 | 127.255.255.255 |"),
            "{md}"
        );
        assert!(md.contains("| 0.0.0.0 | yes | no |"), "{md}");
        assert!(md.contains("| 127.0.0.1 | no | yes |"), "{md}");
        assert!(
            md.contains("| [8](#claim-8) | the \\| title | 8a ✓ | – | **confirmed** |"),
            "{md}"
        );
        assert!(md.contains("- `port`: `9000`"), "{md}");
        assert!(
            !md.contains("`matrix`"),
            "the matrix is a table, not a fact: {md}"
        );
    }

    #[test]
    fn show_lists_parts_with_evidence() {
        let mut p = matrix_part();
        p.evidence
            .wire
            .push("UDP 127.0.0.1:1 > 127.0.0.1:2 len 4".into());
        p.evidence.counters.insert("Udp.NoPorts".into(), 2);
        let text = show(&finding(
            8,
            vec![p, Part::not_run("b", "two hosts", "needs root")],
        ));
        assert!(text.contains("8a [confirmed] receivers"), "{text}");
        assert!(
            text.contains("the article: 「4. 接收端绑定0.0.0.0"),
            "{text}"
        );
        assert!(
            text.contains("8b (aside) [not run: needs root] two hosts"),
            "{text}"
        );
        assert!(text.contains("counters: Udp.NoPorts +2"), "{text}");
        assert!(
            text.contains("    UDP 127.0.0.1:1 > 127.0.0.1:2 len 4"),
            "{text}"
        );
        assert!(text.contains("0.0.0.0"), "{text}");
    }

    #[test]
    fn a_matrix_repeated_in_later_parts_is_drawn_once() {
        let mut second = matrix_part();
        second.id = "b".into();
        let mut third = matrix_part();
        third.id = "c".into();
        third.evidence.fact(
            "matrix",
            serde_json::json!({"rows": ["x"], "cols": ["y"], "cells": [["no"]]}),
        );
        let f = finding(8, vec![matrix_part(), second, third]);
        let text = show(&f);
        assert_eq!(text.matches("│ 0.0.0.0").count(), 1, "{text}");
        assert!(text.contains("  matrix: the same as in 8a above"), "{text}");
        assert!(text.contains("│ x "), "a different matrix is drawn: {text}");
        let md = markdown(&Meta::now(false, Value::Null), &[f]);
        assert_eq!(md.matches("| 0.0.0.0 | yes | no |").count(), 1, "{md}");
        assert!(md.contains("<a id=\"claim-8a-matrix\"></a>"), "{md}");
        assert!(
            md.contains("matrix: the same as in [8a](#claim-8a-matrix)."),
            "{md}"
        );
        assert!(md.contains("| x | no |"), "{md}");
        // The same facts in three parts: listed once, then referred to.
        assert_eq!(md.matches("- `port`: `9000`").count(), 1, "{md}");
        assert!(md.contains("Facts: the same as in 8a above."), "{md}");
    }

    #[test]
    fn json_document_has_meta_and_experiments() {
        let meta = Meta::now(true, serde_json::json!({"claims": [8]}));
        let findings = [finding(8, vec![matrix_part()])];
        let text = serde_json::to_string(&json(&meta, &findings)).unwrap();
        assert!(text.starts_with(r#"{"meta":{"#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["meta"]["root"], true);
        assert_eq!(v["meta"]["parameters"]["claims"][0], 8);
        assert_eq!(v["experiments"][0]["claim"], 8);
        assert_eq!(v["experiments"][0]["verdict"], "confirmed");
        assert_eq!(v["experiments"][0]["parts"][0]["verdict"], "confirmed");
        assert_eq!(v["summary"]["confirmed"], 1);
    }
}
