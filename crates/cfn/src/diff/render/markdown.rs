//! The diff for `GITHUB_STEP_SUMMARY`: the same content as the text, as tables.

use super::{marker, walk, Alert, Body, Format, Line, NamedRow, ResourceRow, SecurityRow};
use crate::diff::{ChangeKind, Impact, StackDiff};
use std::fmt::Write as _;

/// Text as a markdown code span that survives a table cell: a fence longer than any
/// backtick run inside, and `|` escaped.
pub(in crate::diff) fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{}{pad}{fence}", s.replace('|', "\\|"))
}

fn md_text(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A change line inside a table cell.
fn cell_line(l: &Line) -> String {
    let mark = l.mark.map(|m| format!(" **{m}**")).unwrap_or_default();
    let body = match &l.body {
        Body::Change(o, n) => format!("{} → {}", code(o), code(n)),
        Body::Member(true, v) => format!("➕ {}", code(v)),
        Body::Member(false, v) => format!("➖ {}", code(v)),
        Body::Note(note) => return md_text(note),
    };
    format!("{}{mark}: {body}", code(&l.path))
}

struct Markdown {
    out: String,
}

impl Format for Markdown {
    fn alert(&mut self, alert: Alert, messages: &[String]) {
        let title = match alert {
            Alert::FleetBreaking => "**⚠️ FLEET-BREAKING CHANGES**",
            Alert::Refused => "**Changes CloudFormation will refuse**",
        };
        let _ = write!(self.out, "> [!CAUTION]\n> {title}\n>\n");
        for m in messages {
            let _ = writeln!(self.out, "> - {}", md_text(m));
        }
        self.out.push('\n');
    }

    fn new_stack(&mut self) {
        self.out
            .push_str("**New stack:** every resource below is created.\n\n");
    }

    fn security(&mut self, broadens: bool, rows: &[SecurityRow]) {
        self.out.push_str("#### Security changes\n\n");
        if broadens {
            self.out
                .push_str("> [!WARNING]\n> This deploy **broadens permissions**.\n\n");
        } else {
            self.out
                .push_str("This deploy only removes permissions.\n\n");
        }
        self.out
            .push_str("| | Kind | Where | What |\n|---|---|---|---|\n");
        for c in rows {
            let sign = if c.change == ChangeKind::Added {
                "➕"
            } else {
                "➖"
            };
            let _ = writeln!(
                self.out,
                "| {sign} | {} | {} | {} |",
                c.kind,
                code(&c.place),
                code(&c.what)
            );
        }
        self.out.push('\n');
    }

    fn resources(&mut self, summary: &str, rows: &[ResourceRow<'_>]) {
        let _ = writeln!(self.out, "#### Resources\n\n{summary}\n");
        self.out
            .push_str("| | Logical id | Type | Impact | Changes |\n|---|---|---|---|---|\n");
        for row in rows {
            let r = row.r;
            let impact = match r.impact {
                Impact::Replace | Impact::MayReplace | Impact::Destroy => {
                    format!("**{}**", r.impact.label())
                }
                _ => r.impact.label().to_string(),
            };
            let changes: Vec<String> = row.lines.iter().map(cell_line).collect();
            let _ = writeln!(
                self.out,
                "| `{}` | {} | {} | {impact} | {} |",
                marker(r.kind),
                code(&r.logical_id),
                code(&r.resource_type),
                changes.join("<br>")
            );
        }
        self.out.push('\n');
    }

    fn named(&mut self, title: &str, rows: &[NamedRow]) {
        let _ = writeln!(
            self.out,
            "#### {title}\n\n| | Name | Old | New |\n|---|---|---|---|"
        );
        for c in rows {
            let mut new = c.new.as_deref().map(code).unwrap_or_default();
            for l in &c.lines {
                new.push_str("<br>");
                new.push_str(&cell_line(l));
            }
            let _ = writeln!(
                self.out,
                "| `{}` | {} | {} | {new} |",
                marker(c.kind),
                code(&c.name),
                c.old.as_deref().map(code).unwrap_or_default(),
            );
        }
        self.out.push('\n');
    }
}

/// The diff for `GITHUB_STEP_SUMMARY`: the same content as the text, as tables.
pub fn render_markdown(d: &StackDiff, title: &str) -> String {
    format!("### {title}\n\n{}", body(d))
}

/// The diff below its title: its sections, or `No changes.`.
pub(super) fn body(d: &StackDiff) -> String {
    if d.is_empty() {
        return "No changes.\n".into();
    }
    let mut f = Markdown { out: String::new() };
    walk(d, &mut f);
    let mut out = f.out;
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
