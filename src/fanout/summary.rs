//! The table a fanned-out command ends with: one row per target.

use crate::diff::{ChangeKind, StackDiff};
use std::time::Duration;

/// One target's line in the summary.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: String,
    /// What happened, in a word or two (`deployed`, `no changes`, `FAILED`, ...).
    pub result: String,
    /// `+2 ~1 -0` (resources added, modified, removed), or `-`.
    pub changes: String,
    pub duration: Duration,
    /// Why it failed, printed under the table.
    pub error: Option<String>,
}

impl Row {
    /// The resource counts of `d` as `+added ~modified -removed`.
    pub fn changes_of(d: &StackDiff) -> String {
        let count = |k: ChangeKind| d.resources.iter().filter(|r| r.kind == k).count();
        format!(
            "+{} ~{} -{}",
            count(ChangeKind::Added),
            count(ChangeKind::Modified),
            count(ChangeKind::Removed)
        )
    }
}

/// The table, a line counting the results, and each failure's reason under it.
pub fn summary(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(0)
        .max("TARGET".len());
    let result_width = rows
        .iter()
        .map(|r| r.result.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut text = format!(
        "{:<width$}  {:<result_width$}  {:<12}  {:>7}\n",
        "TARGET", "RESULT", "CHANGES", "TIME"
    );
    for r in rows {
        text.push_str(&format!(
            "{:<width$}  {:<result_width$}  {:<12}  {:>6.1}s\n",
            r.target,
            r.result,
            r.changes,
            r.duration.as_secs_f64()
        ));
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(k, _)| *k == r.result) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.result.clone(), 1)),
        }
    }
    let counted: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let targets = if rows.len() == 1 { "target" } else { "targets" };
    text.push_str(&format!(
        "{} {targets}: {}\n",
        rows.len(),
        counted.join(", ")
    ));
    for r in rows {
        if let Some(e) = &r.error {
            text.push_str(&format!("{}: {}\n", r.target, e.trim_end()));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_target_counts_and_reasons() {
        let row = |t: &str, result: &str, error: Option<&str>| Row {
            target: t.into(),
            result: result.into(),
            changes: "-".into(),
            duration: Duration::from_millis(1500),
            error: error.map(str::to_string),
        };
        let text = summary(&[
            row("eu-west-1/111111111111", "deployed", None),
            row("us-east-1/111111111111", "deployed", None),
            row(
                "eu-west-1/222222222222",
                "FAILED",
                Some("AssumeRole x: AccessDenied"),
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TARGET"), "{text}");
        assert!(
            lines[1].contains("eu-west-1/111111111111  deployed"),
            "{text}"
        );
        assert!(lines[3].ends_with("1.5s"), "{text}");
        assert_eq!(lines[4], "3 targets: 2 deployed, 1 FAILED");
        assert_eq!(
            lines[5],
            "eu-west-1/222222222222: AssumeRole x: AccessDenied"
        );
    }
}
