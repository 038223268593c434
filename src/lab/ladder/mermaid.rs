//! A ladder as a Mermaid `sequenceDiagram` (rendered by GitHub, GitLab and most Markdown
//! viewers): a participant per column, calls and states as notes over their column, packets
//! as messages (`->>`; `-x` for a reset; `-)` for a datagram or an ICMP error), each with its
//! time in milliseconds.

use std::fmt::Write as _;

use super::{Ladder, Rung, detail, for_part};
use crate::lab::{Finding, Part};

/// Part `p`'s ladder for the Markdown report: a folded ```` ```mermaid ```` block, or a line
/// saying where the same ladder was drawn (with its anchor); empty when there is none.
pub fn section(f: &Finding, p: &Part) -> String {
    match for_part(f, p) {
        Some(Ok(l)) => {
            let scenes = l.scenes();
            let mut s = format!(
                "<a id=\"claim-{c}{id}{sfx}-ladder\"></a>\n<details><summary>Packet ladder of {c}{id} \
                 ({rows} rows: calls, packets, socket states{more})</summary>\n\n",
                c = f.claim,
                id = p.id,
                sfx = f.anchor_suffix(),
                rows = l.rows.len(),
                more = match scenes.len() {
                    1 => String::new(),
                    n => format!("; {n} scenes"),
                }
            );
            for scene in &scenes {
                let _ = write!(s, "```mermaid\n{}```\n\n", draw(scene));
            }
            s.push_str("</details>\n\n");
            s
        }
        Some(Err(q)) => format!(
            "Packet ladder: the same as in [{c}{id}](#claim-{c}{id}{sfx}-ladder).\n\n",
            c = f.claim,
            id = q.id,
            sfx = f.anchor_suffix()
        ),
        None => String::new(),
    }
}

/// The ladder (or one of its scenes) as the body of a ```` ```mermaid ```` block (without
/// the fence).
pub fn draw(l: &Ladder) -> String {
    let mut s = String::from("sequenceDiagram\n");
    for i in 0..l.columns.len() {
        let _ = writeln!(
            s,
            "    participant {} as {}",
            Ladder::letter(i),
            text(&l.legend(i)).replace(':', "#58;")
        );
    }
    for r in &l.rows {
        let ms = format!("{:.3} ms", r.at.as_secs_f64() * 1e3);
        match &r.rung {
            Rung::Call { col, .. } | Rung::Return { col, .. } | Rung::State { col, .. } => {
                let _ = writeln!(
                    s,
                    "    Note over {}: {ms} {}",
                    Ladder::letter(*col),
                    text(&detail(&r.rung))
                );
            }
            Rung::Packet {
                from,
                to,
                label,
                line,
                ..
            } => {
                let arrow = match (line.starts_with("TCP"), label.contains("RST")) {
                    (true, true) => "-x",
                    (true, false) => "->>",
                    (false, _) => "-)",
                };
                let _ = writeln!(
                    s,
                    "    {}{arrow}{}: {ms} {}",
                    Ladder::letter(*from),
                    Ladder::letter(*to),
                    text(&detail(&r.rung))
                );
            }
            Rung::Folded { text: t } => {
                let (first, last) = (0, l.columns.len().saturating_sub(1));
                let _ = writeln!(
                    s,
                    "    Note over {},{}: {}",
                    Ladder::letter(first),
                    Ladder::letter(last),
                    text(t)
                );
            }
        }
    }
    s
}

/// Text safe in a Mermaid message or note: characters Mermaid would read as syntax (`;`,
/// `#`, `:` in a participant alias, `<`, `>`, `{`, `}`, quotes) as its `#code;` entities, on
/// one line.
pub fn text(t: &str) -> String {
    let mut s = String::with_capacity(t.len());
    for ch in t.chars() {
        match ch {
            '#' | ';' | '<' | '>' | '{' | '}' | '"' | '`' | '%' | '&' | '\\' => {
                let _ = write!(s, "#{};", u32::from(ch));
            }
            '\n' | '\r' => s.push(' '),
            ch => s.push(ch),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_characters_become_entities() {
        assert_eq!(text("a;b #3 <x>"), "a#59;b #35;3 #60;x#62;");
        assert_eq!(text("two\nlines"), "two lines");
    }
}
