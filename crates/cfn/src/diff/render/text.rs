//! The diff for a terminal: ANSI colours only when asked.

use super::{marker, walk, Alert, Body, Format, Line, NamedRow, ResourceRow, SecurityRow};
use crate::diff::{ChangeKind, StackDiff};
use std::fmt::Write as _;

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
pub(super) const BOLD: &str = "1";
pub(super) const BOLD_RED: &str = "1;31";
pub(super) const DIM: &str = "2";

/// `s` in the ANSI style `code` when `color`, else as it is.
pub(super) fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

struct Text {
    color: bool,
    out: String,
}

impl Text {
    fn on(&self, code: &str, s: &str) -> String {
        paint(self.color, code, s)
    }

    /// `    path (mark): old -> new`, `    path: + member`, `    note`.
    fn line(&mut self, l: &Line) {
        let mark = l
            .mark
            .map(|m| format!(" {}", self.on(BOLD_RED, m)))
            .unwrap_or_default();
        let body = match &l.body {
            Body::Change(o, n) => format!("{} -> {}", self.on(RED, o), self.on(GREEN, n)),
            Body::Member(true, v) => self.on(GREEN, &format!("+ {v}")),
            Body::Member(false, v) => self.on(RED, &format!("- {v}")),
            Body::Note(note) => self.on(DIM, note),
        };
        if l.path.is_empty() {
            let _ = writeln!(self.out, "    {body}");
        } else {
            let _ = writeln!(self.out, "    {}{mark}: {body}", l.path);
        }
    }
}

fn kind_colour(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => GREEN,
        ChangeKind::Removed => RED,
        ChangeKind::Modified => YELLOW,
    }
}

impl Format for Text {
    fn alert(&mut self, alert: Alert, messages: &[String]) {
        let title = match alert {
            Alert::FleetBreaking => "!!! FLEET-BREAKING CHANGES !!!",
            Alert::Refused => "!!! CHANGES CLOUDFORMATION WILL REFUSE !!!",
        };
        let title = self.on(BOLD_RED, title);
        let _ = writeln!(self.out, "{title}");
        for m in messages {
            let line = self.on(BOLD_RED, &format!("  !! {m}"));
            let _ = writeln!(self.out, "{line}");
        }
        self.out.push('\n');
    }

    fn new_stack(&mut self) {
        let s = self.on(BOLD, "New stack: every resource below is created.");
        let _ = write!(self.out, "{s}\n\n");
    }

    fn security(&mut self, broadens: bool, rows: &[SecurityRow]) {
        let note = if broadens {
            self.on(BOLD_RED, "(broadens permissions)")
        } else {
            self.on(DIM, "(only removes permissions)")
        };
        let title = self.on(BOLD, "Security changes");
        let _ = writeln!(self.out, "{title} {note}");
        for c in rows {
            let sign = if c.change == ChangeKind::Added {
                "+"
            } else {
                "-"
            };
            let line = format!("  {sign} {} {}: {}", c.kind, c.place, c.what);
            let line = self.on(kind_colour(c.change), &line);
            let _ = writeln!(self.out, "{line}");
        }
        self.out.push('\n');
    }

    fn resources(&mut self, summary: &str, rows: &[ResourceRow<'_>]) {
        let title = self.on(BOLD, "Resources");
        let _ = writeln!(self.out, "{title} ({summary})");
        for row in rows {
            let r = row.r;
            let head = format!("{} {} {}", marker(r.kind), r.resource_type, r.logical_id);
            let mut head = self.on(kind_colour(r.kind), &head);
            let note = super::replacement_note(r.replacement);
            if !note.is_empty() {
                head = format!("{head} {}", self.on(BOLD_RED, note));
            }
            let _ = writeln!(self.out, "{head}");
            row.lines.iter().for_each(|l| self.line(l));
        }
        self.out.push('\n');
    }

    fn named(&mut self, title: &str, rows: &[NamedRow]) {
        let title = self.on(BOLD, title);
        let _ = writeln!(self.out, "{title}");
        for c in rows {
            let head = self.on(
                kind_colour(c.kind),
                &format!("{} {}", marker(c.kind), c.name),
            );
            let body = match (&c.old, &c.new) {
                (Some(o), Some(n)) if o != n => {
                    format!("{} -> {}", self.on(RED, o), self.on(GREEN, n))
                }
                (_, Some(v)) | (Some(v), None) => v.clone(),
                (None, None) => String::new(),
            };
            let _ = writeln!(self.out, "{head}{}{body}", c.sep);
            c.lines.iter().for_each(|l| self.line(l));
        }
        self.out.push('\n');
    }
}

/// The diff for a terminal; ANSI colours only when `color`.
pub fn render_text(d: &StackDiff, color: bool) -> String {
    if d.is_empty() {
        return "No changes.\n".into();
    }
    let mut f = Text {
        color,
        out: String::new(),
    };
    walk(d, &mut f);
    let mut out = f.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
