//! One diff over many targets (region/account pairs of one stage), split so a reviewer
//! reads each change once: every resource, security, parameter and output change goes into
//! the group of exactly the targets whose diff has it ("same change in 5 targets").
//!
//! Changes are compared whole (`PartialEq`): a resource modified in two targets with
//! different property changes is two changes, each in its own group. Equal changes are
//! matched as multisets, so a statement added twice in one target and once in another is
//! once in their common group and once more in the first target's own group. Since every
//! change of a target lands in a group that names the target, the verdicts each group's
//! diff carries (fleet-breaking, refused updates, broadens permissions) are exactly the
//! target's verdicts, split by where they come from.

#[cfg(test)]
mod tests;

use super::StackDiff;
use serde::Serialize;
use std::collections::BTreeMap;

/// The changes `targets` have in common (and no other target has).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub diff: StackDiff,
}

/// The targets' diffs, each change once: [`group_by_targets`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupedDiff {
    /// Most targets first, then by the first target's position in the input.
    pub groups: Vec<TargetGroup>,
    /// Targets whose diff is empty, in input order.
    pub unchanged: Vec<String>,
    /// Targets whose stack does not exist yet, in input order.
    pub new_stacks: Vec<String>,
    /// How many targets were compared.
    pub total: usize,
    /// Every target, in input order.
    pub targets: Vec<String>,
}

impl GroupedDiff {
    /// Targets with at least one change, in input order.
    pub fn changed(&self) -> Vec<&str> {
        self.having(|_| true)
    }

    /// Targets with a fleet-breaking change (the CA registration replaced or removed).
    pub fn fleet_breaking(&self) -> Vec<&str> {
        self.having(|d| !d.fleet_breaking().is_empty())
    }

    /// Targets with a change CloudFormation will refuse.
    pub fn refused(&self) -> Vec<&str> {
        self.having(|d| !d.refused_updates().is_empty())
    }

    /// Targets in which something is granted that was not before.
    pub fn broadens_security(&self) -> Vec<&str> {
        self.having(StackDiff::broadens_security)
    }

    /// The targets in a group whose diff satisfies `pred`, in input order. Every change of
    /// a target is in a group naming it, so this is "the targets whose own diff does".
    fn having(&self, pred: impl Fn(&StackDiff) -> bool) -> Vec<&str> {
        let hit: Vec<&TargetGroup> = self.groups.iter().filter(|g| pred(&g.diff)).collect();
        self.targets
            .iter()
            .filter(|t| hit.iter().any(|g| g.targets.contains(t)))
            .map(String::as_str)
            .collect()
    }
}

/// The targets' diffs, split so each change appears once: every resource change, security
/// change, parameter change and output change goes into the group of exactly the targets
/// that have it. Groups ordered: most targets first, then by the targets' positions in
/// `diffs` (first target first); targets inside a group keep their order in `diffs`, and
/// changes inside a group keep the order of the group's first target. A target whose diff
/// is empty is in no group (it is in `unchanged`). A group's diff is a new stack when every
/// one of its targets is. With one target, its one group's diff equals the input.
pub fn group_by_targets(diffs: &[(String, StackDiff)]) -> GroupedDiff {
    let mut grouped: BTreeMap<Vec<usize>, StackDiff> = BTreeMap::new();
    split(diffs, |d| &d.resources, &mut grouped, |g| &mut g.resources);
    split(diffs, |d| &d.security, &mut grouped, |g| &mut g.security);
    split(
        diffs,
        |d| &d.parameters,
        &mut grouped,
        |g| &mut g.parameters,
    );
    split(diffs, |d| &d.outputs, &mut grouped, |g| &mut g.outputs);
    let mut groups: Vec<(Vec<usize>, StackDiff)> = grouped.into_iter().collect();
    groups.sort_by(|(a, _), (b, _)| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    let names = |keep: &dyn Fn(&StackDiff) -> bool| -> Vec<String> {
        diffs
            .iter()
            .filter(|(_, d)| keep(d))
            .map(|(t, _)| t.clone())
            .collect()
    };
    GroupedDiff {
        groups: groups
            .into_iter()
            .map(|(set, mut diff)| {
                diff.new_stack = set.iter().all(|&t| diffs[t].1.new_stack);
                TargetGroup {
                    targets: set.iter().map(|&t| diffs[t].0.clone()).collect(),
                    diff,
                }
            })
            .collect(),
        unchanged: names(&StackDiff::is_empty),
        new_stacks: names(&|d| d.new_stack),
        total: diffs.len(),
        targets: names(&|_| true),
    }
}

/// Puts one section's changes into their groups: the `k`-th copy of a change in a target
/// belongs to the targets having at least `k + 1` equal copies, and is taken from the first
/// of them (so it is placed once, in that target's order).
fn split<T: PartialEq + Clone>(
    diffs: &[(String, StackDiff)],
    section: impl Fn(&StackDiff) -> &Vec<T>,
    groups: &mut BTreeMap<Vec<usize>, StackDiff>,
    slot: impl Fn(&mut StackDiff) -> &mut Vec<T>,
) {
    for (t, (_, d)) in diffs.iter().enumerate() {
        let items = section(d);
        for (i, item) in items.iter().enumerate() {
            let copy = items[..i].iter().filter(|x| *x == item).count();
            let set: Vec<usize> = diffs
                .iter()
                .enumerate()
                .filter(|(_, (_, other))| {
                    section(other).iter().filter(|x| *x == item).count() > copy
                })
                .map(|(u, _)| u)
                .collect();
            if set.first() != Some(&t) {
                continue;
            }
            slot(groups.entry(set).or_default()).push(item.clone());
        }
    }
}
