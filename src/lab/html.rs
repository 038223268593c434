//! The lab's report as one self-contained HTML page (`socklab lab --html FILE`): no scripts,
//! no network fetches, no external fonts or images; inline CSS and inline SVG only, so it
//! opens the same anywhere, offline.
//!
//! The page: the run's meta line; the summary as a table with a colour per verdict; then per
//! claim what the article says, the explanation, and per part its statement, what this kernel
//! did, its packet ladder ([`super::ladder::svg`]) and its evidence folded in `<details>`
//! (facts, matrices as tables, counters, the trace, socket states, and the wire, each wire
//! line linked to its arrow in the ladder and named by its frame number in the experiment's
//! pcap). All text goes through [`escape`].

use std::fmt::Write as _;

use super::capture::pcap_file_name_of;
use super::ladder::{self, Rung};
use super::report::{
    Meta, by_claim, compact, families, family_tag, kernel_lines, split_matrices, summary_lines,
    verdict_text,
};
use super::{Family, Finding, Part, Verdict};
use crate::trace::render;

/// Text safe in HTML (and SVG) content and in quoted attribute values: `&`, `<`, `>`, `"`
/// and `'` as character references.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            ch => s.push(ch),
        }
    }
    s
}

/// The CSS class of a verdict: `v-confirmed`, `v-refuted`, `v-partly`, `v-not-run`,
/// `v-analogue`.
fn verdict_class(v: &Verdict) -> &'static str {
    match v {
        Verdict::Confirmed => "v-confirmed",
        Verdict::Refuted => "v-refuted",
        Verdict::Partly => "v-partly",
        Verdict::NotRun(_) => "v-not-run",
        Verdict::Analogue(_) => "v-analogue",
    }
}

/// The whole page. `pcap_dir`: where the page finds the experiments' pcap files
/// ([`pcap_file_name_of`]), as a link target relative to the page, when they were written
/// (`--pcap`); then every wire line names its file and frame number.
pub fn report(meta: &Meta, findings: &[Finding], pcap_dir: Option<&str>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>socklab lab report</title>\n<style>\n{PAGE_STYLE}{}</style>\n</head>\n<body>\n",
        ladder::svg::STYLE
    );
    let _ = writeln!(s, "<h1>socklab lab report</h1>");
    let _ = writeln!(
        s,
        "<p class=\"meta\">Linux {} · {} CPU{} · {} · socklab {} · started {}</p>",
        escape(&meta.kernel),
        meta.cpus,
        if meta.cpus == 1 { "" } else { "s" },
        if meta.root {
            "root (private network namespaces)"
        } else {
            "not root (host loopback; two-host parts not run)"
        },
        escape(&meta.socklab_version),
        escape(&meta.started_at)
    );
    summary_table(&mut s, findings);
    for f in findings {
        claim(&mut s, f, pcap_dir);
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// The summary table: a row per claim; per address family run, what this kernel did and the
/// verdict (side by side when the run covered IPv4 and IPv6).
fn summary_table(s: &mut String, findings: &[Finding]) {
    let families = families(findings);
    let tagged = families.len() > 1 || families.first() != Some(&Family::Ipv4);
    let head = |what: &str, f: Family| match tagged {
        true => format!("<th>{what} ({})</th>", f.name()),
        false => format!("<th>{what}</th>"),
    };
    let _ = write!(
        s,
        "<table class=\"summary\" id=\"summary\">\n<thead><tr><th>claim</th><th>title</th>\
         <th>the article says</th>"
    );
    for &fam in &families {
        s.push_str(&head("what this kernel did", fam));
        s.push_str(&head("verdict", fam));
    }
    s.push_str("</tr></thead>\n<tbody>\n");
    for row in by_claim(findings) {
        let Some(first) = row.iter().flatten().next() else {
            continue;
        };
        let _ = write!(
            s,
            "<tr class=\"{cls}\"><td><a href=\"#claim-{c}{sfx}\">{c}</a></td><td>{title}</td>\
             <td>{article}</td>",
            cls = verdict_class(&first.verdict),
            c = first.claim,
            sfx = first.anchor_suffix(),
            title = escape(&first.title),
            article = escape(&first.article),
        );
        for f in &row {
            match f {
                Some(f) => {
                    let _ = write!(
                        s,
                        "<td class=\"did\">{did}</td><td class=\"verdict\">\
                         <a href=\"#claim-{c}{sfx}\"><span class=\"badge {cls}\">{word}</span></a></td>",
                        did = escape(&kernel_lines(f)).replace('\n', "<br>"),
                        c = f.claim,
                        sfx = f.anchor_suffix(),
                        cls = verdict_class(&f.verdict),
                        word = f.verdict.word()
                    );
                }
                None => s.push_str("<td class=\"did\">–</td><td class=\"verdict\">–</td>"),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody>\n</table>\n");
    for line in summary_lines(findings) {
        let _ = writeln!(s, "<p class=\"summary-line\">{}</p>", escape(&line));
    }
}

fn claim(s: &mut String, f: &Finding, pcap_dir: Option<&str>) {
    let _ = writeln!(
        s,
        "<section class=\"claim\" id=\"claim-{c}{sfx}\">\n<h2>Claim {c}{fam}: {title} \
         <span class=\"badge {cls}\">{verdict}</span></h2>",
        c = f.claim,
        sfx = f.anchor_suffix(),
        fam = family_tag(f),
        title = escape(&f.title),
        cls = verdict_class(&f.verdict),
        verdict = escape(&verdict_text(&f.verdict))
    );
    let _ = writeln!(
        s,
        "<blockquote class=\"article\">{}</blockquote>\n<p class=\"why\">{}</p>",
        escape(&f.article),
        escape(&f.explanation)
    );
    for (i, p) in f.parts.iter().enumerate() {
        part(s, f, i, p, pcap_dir);
    }
    s.push_str("</section>\n");
}

/// The id of part `p`'s block and the prefix of its ladder's ids: `claim-13a`
/// (`claim-13a-v6` over IPv6).
fn part_id(f: &Finding, p: &Part) -> String {
    format!("claim-{}{}{}", f.claim, p.id, f.anchor_suffix())
}

fn part(s: &mut String, f: &Finding, i: usize, p: &Part, pcap_dir: Option<&str>) {
    let id = part_id(f, p);
    let role = if p.votes() {
        "<span class=\"role vote\">vote</span>"
    } else {
        "<span class=\"role aside\">aside · not counted</span>"
    };
    let _ = writeln!(
        s,
        "<div class=\"part {kind}\" id=\"{id}\">\n<h3>{c}{pid} {role} <span class=\"badge {cls}\">{verdict}</span></h3>",
        kind = if p.votes() { "vote" } else { "aside" },
        id = escape(&id),
        c = f.claim,
        pid = escape(&p.id),
        cls = verdict_class(&p.verdict),
        verdict = escape(&verdict_text(&p.verdict)),
    );
    // A vote tests the article's own sentence, quoted; an aside is the lab's statement.
    match &p.quote {
        Some(q) if p.votes() => {
            let _ = writeln!(
                s,
                "<blockquote class=\"quote\"><p lang=\"zh\">「{}」</p><p class=\"en\">{}</p></blockquote>",
                escape(q.zh),
                escape(q.en)
            );
        }
        _ => s.push_str(
            "<p class=\"aside-note\">Aside: the lab's own statement, not a sentence of the \
             article; its result is shown, never counted in the claim's verdict.</p>\n",
        ),
    }
    let _ = writeln!(
        s,
        "<p><em>Tested:</em> {statement}</p>\n<p><em>This kernel:</em> {observed}</p>",
        statement = escape(&p.statement),
        observed = escape(&p.observed)
    );
    // The ladder, or where the same one was drawn; its id prefix, for the wire links.
    let (ladder_id, drawn) = match ladder::drawn_before(f, i) {
        Some(q) => {
            let at = part_id(f, q);
            let l = ladder::of(f, q);
            if l.is_drawn() {
                let _ = writeln!(
                    s,
                    "<p class=\"same\">Packet ladder: the same as in <a href=\"#{at}-ladder\">{}{}</a>.</p>",
                    f.claim,
                    escape(&q.id)
                );
            }
            (format!("{at}-ladder"), l)
        }
        None => {
            let l = ladder::of(f, p);
            let lid = format!("{id}-ladder");
            if l.is_drawn() {
                let _ = writeln!(
                    s,
                    "<figure class=\"ladder\">{}<figcaption>Packet ladder of {}{}: socket calls \
                     (dots; red: failed), packets (arrows; #N is the frame number in the pcapng file) and \
                     socket states seen by ss (green), on one time axis.</figcaption></figure>",
                    ladder::svg::draw(&l, &lid),
                    f.claim,
                    escape(&p.id)
                );
            }
            (lid, l)
        }
    };
    evidence(s, f, p, &ladder_id, &drawn, pcap_dir);
    s.push_str("</div>\n");
}

fn evidence(
    s: &mut String,
    f: &Finding,
    p: &Part,
    ladder_id: &str,
    drawn: &ladder::Ladder,
    pcap_dir: Option<&str>,
) {
    let ev = &p.evidence;
    let (matrices, facts) = split_matrices(&ev.facts);
    if ev.trace.is_empty()
        && ev.facts.is_empty()
        && ev.counters.is_empty()
        && ev.states.is_empty()
        && ev.wire.is_empty()
    {
        return;
    }
    s.push_str("<details class=\"evidence\"><summary>Evidence</summary>\n");
    for (name, _, m) in &matrices {
        let _ = writeln!(
            s,
            "<p class=\"ev-title\">{}</p>\n<table class=\"matrix\">",
            escape(name)
        );
        let head: String = m
            .header()
            .iter()
            .map(|h| format!("<th>{}</th>", escape(h)))
            .collect();
        let _ = writeln!(s, "<tr>{head}</tr>");
        for row in m.rows_text() {
            let cells: String = row
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    if k == 0 {
                        format!("<th>{}</th>", escape(c))
                    } else {
                        format!("<td>{}</td>", escape(c))
                    }
                })
                .collect();
            let _ = writeln!(s, "<tr>{cells}</tr>");
        }
        s.push_str("</table>\n");
    }
    if !facts.is_empty() {
        s.push_str("<p class=\"ev-title\">Facts</p>\n<dl class=\"facts\">\n");
        for (k, v) in facts {
            let _ = writeln!(
                s,
                "<dt>{}</dt><dd><code>{}</code></dd>",
                escape(k),
                escape(&compact(v))
            );
        }
        s.push_str("</dl>\n");
    }
    if !ev.counters.is_empty() {
        let c: Vec<String> = ev
            .counters
            .iter()
            .map(|(k, v)| format!("<code>{}</code> {v:+}", escape(k)))
            .collect();
        let _ = writeln!(
            s,
            "<p class=\"ev-title\">Counters that moved</p>\n<p>{}</p>",
            c.join(", ")
        );
    }
    if !ev.trace.is_empty() {
        let lines: Vec<String> = ev.trace.iter().map(|e| escape(&render::text(e))).collect();
        let _ = writeln!(
            s,
            "<p class=\"ev-title\">Trace</p>\n<pre class=\"trace\">{}</pre>",
            lines.join("\n")
        );
    }
    if !ev.states.is_empty() {
        let lines: Vec<String> = ev.states.iter().map(|l| escape(l)).collect();
        let _ = writeln!(
            s,
            "<p class=\"ev-title\">Socket states (ss)</p>\n<pre class=\"states\">{}</pre>",
            lines.join("\n")
        );
    }
    if !ev.wire.is_empty() {
        wire(s, f, p, ladder_id, drawn, pcap_dir);
    }
    s.push_str("</details>\n");
}

/// The wire lines, each with its frame number in the pcap (linked to its arrow in the ladder
/// when drawn there) and, with `--pcap`, the file holding it.
fn wire(
    s: &mut String,
    f: &Finding,
    p: &Part,
    ladder_id: &str,
    drawn: &ladder::Ladder,
    pcap_dir: Option<&str>,
) {
    let file = pcap_file_name_of(f);
    let numbers = ladder::wire_frames(&p.evidence.wire, &f.frames);
    let on_ladder = |n: usize| {
        drawn
            .rows
            .iter()
            .any(|r| matches!(r.rung, Rung::Packet { frame, .. } if frame == n))
    };
    s.push_str("<p class=\"ev-title\">Wire</p>\n<ol class=\"wire\">\n");
    for (line, n) in p.evidence.wire.iter().zip(numbers) {
        let mut where_ = String::new();
        if let Some(n) = n {
            if on_ladder(n) {
                let _ = write!(
                    where_,
                    "<a class=\"frame\" href=\"#{}\">frame {n}</a>",
                    escape(&ladder::svg::frame_id(ladder_id, n))
                );
            } else {
                let _ = write!(where_, "<span class=\"frame\">frame {n}</span>");
            }
            if let Some(dir) = pcap_dir {
                let _ = write!(
                    where_,
                    " of <a class=\"pcap\" href=\"{}\">{}</a>",
                    escape(&format!("{}/{file}", dir.trim_end_matches('/'))),
                    escape(&file)
                );
            }
        }
        let _ = writeln!(s, "<li><code>{}</code> {where_}</li>", escape(line));
    }
    s.push_str("</ol>\n");
}

const PAGE_STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#111;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}
p.meta{color:#555;margin-top:0}
table{border-collapse:collapse}
table.summary{width:100%;margin:1em 0}
table.summary th,table.summary td{border:1px solid #ccc;padding:.35em .5em;vertical-align:top;text-align:left}
table.summary thead th{background:#f3f4f6}
table.summary td.did{font-size:.9em}
tr.v-confirmed td:first-child{border-left:6px solid #16a34a}
tr.v-refuted td:first-child{border-left:6px solid #dc2626}
tr.v-partly td:first-child{border-left:6px solid #d97706}
tr.v-not-run td:first-child{border-left:6px solid #9ca3af}
tr.v-analogue td:first-child{border-left:6px solid #60a5fa}
.badge{display:inline-block;padding:.05em .55em;border-radius:.8em;font-size:.8em;font-weight:600;white-space:nowrap;vertical-align:middle}
.badge.v-confirmed{background:#dcfce7;color:#166534}
.badge.v-refuted{background:#fee2e2;color:#991b1b}
.badge.v-partly{background:#fef3c7;color:#92400e}
.badge.v-not-run{background:#e5e7eb;color:#374151}
.badge.v-analogue{background:#dbeafe;color:#1e3a8a}
section.claim{border-top:2px solid #e5e7eb;margin-top:2em;padding-top:.5em}
blockquote.article{margin:.5em 0;padding:.4em .8em;border-left:4px solid #93c5fd;background:#eff6ff}
p.why{color:#444;font-size:.95em}
div.part{margin:1em 0 1.5em 1em}
div.part h3{margin-bottom:.2em}
div.part.aside{border-left:3px dashed #9ca3af;padding-left:.8em;color:#374151}
.role{display:inline-block;padding:0 .45em;border-radius:.3em;font-size:.75em;font-weight:600;vertical-align:middle;border:1px solid}
.role.vote{color:#1e40af;border-color:#93c5fd}
.role.aside{color:#4b5563;border-color:#9ca3af;border-style:dashed}
blockquote.quote{margin:.4em 0;padding:.3em .8em;border-left:4px solid #1e40af;background:#f8fafc}
blockquote.quote p{margin:.15em 0}
blockquote.quote p[lang=zh]{font-size:1.05em}
blockquote.quote p.en{font-style:italic;color:#374151}
p.aside-note{font-style:italic;color:#4b5563}
figure.ladder{margin:.5em 0;overflow-x:auto;border:1px solid #e5e7eb;padding:.3em}
figure.ladder figcaption{font-size:.85em;color:#555}
details.evidence{margin:.5em 0;background:#fafafa;border:1px solid #e5e7eb;padding:.3em .6em}
details.evidence summary{cursor:pointer;font-weight:600}
p.ev-title{font-weight:600;margin:.6em 0 .2em}
pre{background:#f3f4f6;padding:.5em;overflow-x:auto;font-size:.85em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;font-size:.9em}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
table.matrix th,table.matrix td{border:1px solid #ccc;padding:.2em .5em;font-size:.9em}
ol.wire{font-size:.85em}
a.frame,span.frame{margin-left:.5em;color:#555}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{Evidence, Verdict};

    fn hostile_finding() -> Finding {
        let mut ev = Evidence::default();
        ev.fact("payload", "<script>alert('x')</script> & \"quoted\"");
        ev.states
            .push("ESTAB 0 0 127.0.0.1:1 127.0.0.1:2 <&>".into());
        ev.wire
            .push("UDP 127.0.0.1:1 > 127.0.0.1:2 len 4 <b>".into());
        let p = Part::judged("a", "a < b & \"c\"", "d > e 'f'".into(), true, ev);
        Finding {
            claim: 3,
            family: Family::Ipv4,
            title: "<i>title</i>".into(),
            article: "the article's \"claim\" <here> & there".into(),
            observed: "o".into(),
            verdict: Verdict::Confirmed,
            explanation: "x < y".into(),
            parts: vec![p],
            duration_ms: 1,
            frames: vec![],
            ss_seen: vec![],
        }
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let meta = Meta::now(false, serde_json::Value::Null);
        let page = report(&meta, &[hostile_finding()], Some("pcap dir"));
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<i>title"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(!page.contains("<here>"), "{page}");
        assert!(
            page.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"
            )
        );
        assert!(page.contains("the article&#39;s &quot;claim&quot; &lt;here&gt; &amp; there"));
        assert!(page.contains("127.0.0.1:2 &lt;&amp;&gt;"));
        assert!(page.contains("a &lt; b &amp; &quot;c&quot;"));
        // Every tag opened is one of ours: count `<` that start a tag name we did not write.
        for tag in page.split('<').skip(1) {
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
                .collect();
            assert!(
                [
                    "!DOCTYPE",
                    "html",
                    "head",
                    "meta",
                    "title",
                    "style",
                    "body",
                    "h1",
                    "h2",
                    "h3",
                    "p",
                    "table",
                    "thead",
                    "tbody",
                    "tr",
                    "th",
                    "td",
                    "a",
                    "span",
                    "section",
                    "blockquote",
                    "div",
                    "em",
                    "details",
                    "summary",
                    "dl",
                    "dt",
                    "dd",
                    "code",
                    "pre",
                    "ol",
                    "li",
                    "figure",
                    "figcaption",
                    "svg",
                    "br"
                ]
                .contains(&name.as_str()),
                "unexpected tag <{name}"
            );
        }
    }

    #[test]
    fn escape_handles_the_five_specials() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
