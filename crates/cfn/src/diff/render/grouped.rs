//! The diff of many targets, each change once: an overview naming the targets each verdict
//! applies to (fleet-breaking, refused, broadens permissions, new stack, no changes), then
//! one section per group of targets, headed with its targets and holding that group's diff
//! exactly as the single-stack renderers show it (banners and the whole security view
//! included). With one target the output is the single-stack renderer's, unchanged.

use super::markdown::{body as markdown_body, code};
use super::text::{paint, BOLD, BOLD_RED, DIM};
use super::{render_markdown, render_text};
use crate::diff::{GroupedDiff, TargetGroup};
use std::fmt::Write as _;

/// What a group's heading says: `only in a`, `same change in all 5 targets`, `same change
/// in all 4 changed targets: a, b, c, d`, `same change in 3 targets: a, b, c`; each target
/// as `show` writes it.
fn heading(g: &GroupedDiff, group: &TargetGroup, show: &dyn Fn(&str) -> String) -> String {
    let n = group.targets.len();
    let list = || {
        group
            .targets
            .iter()
            .map(|t| show(t))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if n == 1 {
        format!("only in {}", list())
    } else if n == g.total {
        format!("same change in all {n} targets")
    } else if n == g.total - g.unchanged.len() {
        format!("same change in all {n} changed targets: {}", list())
    } else {
        format!("same change in {n} targets: {}", list())
    }
}

/// The overview's lines: a verdict and the targets it applies to; only verdicts that
/// apply to some target. Flag: whether the line is an alarm.
fn overview(g: &GroupedDiff) -> Vec<(&'static str, Vec<&str>, bool)> {
    let unchanged = g.unchanged.iter().map(String::as_str).collect();
    let new_stacks = g.new_stacks.iter().map(String::as_str).collect();
    [
        ("FLEET-BREAKING in", g.fleet_breaking(), true),
        ("refused by CloudFormation in", g.refused(), true),
        ("broadens permissions in", g.broadens_security(), true),
        ("new stack in", new_stacks, false),
        ("no changes", unchanged, false),
    ]
    .into_iter()
    .filter(|(_, targets, _)| !targets.is_empty())
    .collect()
}

/// `5 targets, 4 with changes`
fn count_line(g: &GroupedDiff) -> String {
    let changed = g.total - g.unchanged.len();
    let with = match changed {
        0 => "none".to_string(),
        n if n == g.total => "all".to_string(),
        n => n.to_string(),
    };
    format!("{} targets, {with} with changes", g.total)
}

/// The diff of many targets for a terminal; ANSI colours only when `color`. One target:
/// exactly [`render_text`] of its diff.
pub fn render_grouped_text(g: &GroupedDiff, color: bool) -> String {
    if g.total <= 1 {
        let only = g.groups.first().map(|t| t.diff.clone()).unwrap_or_default();
        return render_text(&only, color);
    }
    let mut out = paint(color, BOLD, &count_line(g));
    out.push('\n');
    for (words, targets, alarm) in overview(g) {
        let line = format!("  {words}: {}", targets.join(", "));
        let style = if alarm { BOLD_RED } else { DIM };
        let _ = writeln!(out, "{}", paint(color, style, &line));
    }
    for group in &g.groups {
        let head = format!("=== {} ===", heading(g, group, &|t| t.to_string()));
        let _ = write!(
            out,
            "\n{}\n{}",
            paint(color, BOLD, &head),
            render_text(&group.diff, color)
        );
    }
    out
}

/// The diff of many targets for `GITHUB_STEP_SUMMARY`. One target: exactly
/// [`render_markdown`] of its diff.
pub fn render_grouped_markdown(g: &GroupedDiff, title: &str) -> String {
    if g.total <= 1 {
        let only = g.groups.first().map(|t| t.diff.clone()).unwrap_or_default();
        return render_markdown(&only, title);
    }
    let mut out = format!("### {title}\n\n{}.\n", count_line(g));
    let lines = overview(g);
    if !lines.is_empty() {
        out.push('\n');
    }
    for (words, targets, alarm) in lines {
        let targets: Vec<String> = targets.into_iter().map(code).collect();
        let words = if alarm {
            format!("**⚠️ {words}:**")
        } else {
            format!("{words}:")
        };
        let _ = writeln!(out, "- {words} {}", targets.join(", "));
    }
    for group in &g.groups {
        let head = heading(g, group, &|t| code(t));
        let _ = write!(out, "\n### {head}\n\n{}", markdown_body(&group.diff));
    }
    out
}
