//! A ladder as text for the terminal, at most [`WIDTH`] characters a line: the time in
//! milliseconds, a lifeline per column (`|`), calls (`*`, `x` when the call failed), packets
//! as arrows (`|--SYN-->|`), states seen by `ss` (`#`), and beside each row its note (the
//! call, the packet with its frame number in the pcap, the state), wrapped when long.

use std::fmt::Write as _;

use super::{Ladder, Rung, for_part, note};
use crate::lab::{Finding, Part};

/// The widest line `lab show` prints (a ladder is drawn 2 narrower and indented by 2).
pub const WIDTH: usize = 100;
/// Characters of the time field (`1234.567` ms) and the space after it.
const TIME: usize = 10;
/// Fewest characters left for the notes.
const NOTE_MIN: usize = 24;
/// Widest and narrowest spacing of lifelines.
const GAP_MAX: usize = 18;
const GAP_MIN: usize = 3;

/// Part `p`'s ladder as shown by `lab show`, indented under the part: `  ladder:` and the
/// drawing, or where the same ladder was drawn; empty when there is none.
pub fn section(f: &Finding, p: &Part) -> String {
    match for_part(f, p) {
        Some(Ok(l)) => {
            let mut s = String::from("  ladder:\n");
            for line in draw_in(&l, WIDTH - 2).lines() {
                let _ = writeln!(s, "  {line}");
            }
            s
        }
        Some(Err(q)) => format!("  ladder: the same as in {}{} above\n", f.claim, q.id),
        None => String::new(),
    }
}

/// The ladder as lines of at most [`WIDTH`] characters: a legend of the columns, the header
/// and one line (or more, for a long note) per row.
pub fn draw(l: &Ladder) -> String {
    draw_in(l, WIDTH)
}

/// The ladder as lines of at most `width` characters, scene by scene ([`Ladder::scenes`]).
fn draw_in(l: &Ladder, width: usize) -> String {
    let scenes = l.scenes();
    if scenes.len() == 1 {
        return draw_scene(l, width);
    }
    let mut s = String::new();
    for (k, scene) in scenes.iter().enumerate() {
        let _ = writeln!(s, "  -- scene {} of {} --", k + 1, scenes.len());
        s.push_str(&draw_scene(scene, width));
    }
    s
}

/// One scene as lines of at most `width` characters.
fn draw_scene(l: &Ladder, width: usize) -> String {
    let n = l.columns.len().max(1);
    let room = width - TIME - 2 - NOTE_MIN;
    let gap = if n == 1 {
        GAP_MAX
    } else {
        (room.min(46) / (n - 1)).clamp(GAP_MIN, GAP_MAX)
    };
    let band = (n - 1) * gap + 1;
    let mut s = String::new();
    if TIME + band + 2 + NOTE_MIN > width {
        return draw_list(l, width);
    }
    let note_width = width - TIME - band - 2;
    for i in 0..l.columns.len() {
        for line in wrap(
            &format!("{} = {}", Ladder::letter(i), l.legend(i)),
            width - 2,
        ) {
            let _ = writeln!(s, "  {line}");
        }
    }
    let mut head = vec![' '; band];
    for i in 0..l.columns.len() {
        for (k, ch) in Ladder::letter(i).chars().enumerate() {
            if let Some(c) = head.get_mut(i * gap + k) {
                *c = ch;
            }
        }
    }
    let title = [
        "note (#N: frame N of the pcap)",
        "note (#N: pcap frame)",
        "note",
    ]
    .into_iter()
    .find(|t| t.len() <= note_width)
    .unwrap_or_default();
    let _ = writeln!(
        s,
        "{:>w$} {}  {title}",
        "ms",
        head.iter().collect::<String>(),
        w = TIME - 1
    );
    let lifelines = |mark: char| {
        let mut b = vec![' '; band];
        for i in 0..l.columns.len() {
            b[i * gap] = mark;
        }
        b
    };
    for r in &l.rows {
        let mut b = lifelines('|');
        match &r.rung {
            Rung::Call { col, failed, .. } | Rung::Return { col, failed, .. } => {
                b[col * gap] = if *failed { 'x' } else { '*' };
            }
            Rung::State { col, .. } => b[col * gap] = '#',
            Rung::Packet {
                from, to, label, ..
            } => arrow(&mut b, from * gap, to * gap, label),
            Rung::Folded { .. } => b = lifelines(':'),
        }
        let time = match r.rung {
            Rung::Folded { .. } => String::new(),
            _ => format!("{:.3}", r.at.as_secs_f64() * 1e3),
        };
        let notes = wrap(&note(&r.rung), note_width);
        for (k, text) in notes.iter().enumerate() {
            let band_text: String = if k == 0 {
                b.iter().collect()
            } else {
                lifelines('|').iter().collect()
            };
            let t = if k == 0 { time.as_str() } else { "" };
            let line = format!("{t:>w$} {band_text}  {text}", w = TIME - 1);
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }
    s
}

/// A scene with too many columns for lifelines: the legend, then one line per row naming
/// the columns by letter (`B -> C  UDP len 27 #1`).
fn draw_list(l: &Ladder, width: usize) -> String {
    let mut s = String::new();
    for i in 0..l.columns.len() {
        for line in wrap(
            &format!("{} = {}", Ladder::letter(i), l.legend(i)),
            width - 2,
        ) {
            let _ = writeln!(s, "  {line}");
        }
    }
    let _ = writeln!(
        s,
        "{:>w$}  ({} columns: one line per row, #N: frame N of the pcap)",
        "ms",
        l.columns.len(),
        w = TIME - 1
    );
    for r in &l.rows {
        let (time, text) = match &r.rung {
            Rung::Folded { text } => (String::new(), text.clone()),
            Rung::Packet { from, to, .. } => (
                format!("{:.3}", r.at.as_secs_f64() * 1e3),
                format!(
                    "{} -> {}  {}",
                    Ladder::letter(*from),
                    Ladder::letter(*to),
                    note(&r.rung)
                ),
            ),
            rung => (format!("{:.3}", r.at.as_secs_f64() * 1e3), note(rung)),
        };
        for (k, line) in wrap(&text, width - TIME - 1).iter().enumerate() {
            let t = if k == 0 { time.as_str() } else { "" };
            let _ = writeln!(s, "{t:>w$}  {line}", w = TIME - 1);
        }
    }
    s
}

/// Draws an arrow between band positions `a` (source) and `b` (destination), with `label`
/// in it when it fits; a packet to its own column is an `o`.
fn arrow(band: &mut [char], a: usize, b: usize, label: &str) {
    if a == b {
        band[a] = 'o';
        return;
    }
    let (lo, hi) = (a.min(b), a.max(b));
    for c in &mut band[lo + 1..hi] {
        *c = '-';
    }
    if a < b {
        band[hi - 1] = '>';
    } else {
        band[lo + 1] = '<';
    }
    let room = hi - lo - 3;
    let len = label.chars().count();
    if len > 0 && len < room {
        let start = lo + 2 + (room - len) / 2;
        for (k, ch) in label.chars().enumerate() {
            band[start + k] = ch;
        }
    }
}

/// `text` cut into lines of at most `width` characters, at spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = cur.chars().count();
            let sep = usize::from(used > 0);
            if used + sep + word.len() <= width {
                if sep == 1 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut cur));
                continue;
            }
            // A word longer than a line: cut it.
            let rest = word.split_off(width);
            lines.push(word.iter().collect());
            word = rest;
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_every_word_within_the_width() {
        let text = "connect(3, 127.0.0.1:80) = -1 ECONNREFUSED (Connection refused) aaaaaaaaaaaaaaaaaaaaaaaaaa";
        let lines = wrap(text, 12);
        assert!(lines.iter().all(|l| l.chars().count() <= 12), "{lines:?}");
        assert_eq!(lines.join(" ").replace(' ', ""), text.replace(' ', ""));
        assert_eq!(wrap("", 5), vec![String::new()]);
    }

    #[test]
    fn arrows_point_from_source_to_destination() {
        let mut b = vec![' '; 17];
        arrow(&mut b, 0, 16, "SYN");
        assert_eq!(b.iter().collect::<String>().trim_end(), " ------SYN----->");
        let mut b = vec![' '; 17];
        arrow(&mut b, 16, 0, "A-VERY-LONG-LABEL");
        assert_eq!(b.iter().collect::<String>().trim_end(), " <--------------");
    }
}
