use super::super::tests::{ca, dev, device_policy, diff, role, template};
use super::*;
use crate::diff::{
    render_grouped_markdown, render_grouped_text, render_markdown, render_text, ChangeKind,
    SecurityChange, SecurityKind,
};
use serde_json::{json, Value};

const A: &str = "eu-west-1/111111111111";
const B: &str = "us-east-1/111111111111";
const C: &str = "eu-west-1/222222222222";
const D: &str = "ap-south-1/222222222222";
const E: &str = "us-west-2/333333333333";

fn targets(diffs: &[(&str, &StackDiff)]) -> Vec<(String, StackDiff)> {
    diffs
        .iter()
        .map(|(t, d)| (t.to_string(), (*d).clone()))
        .collect()
}

/// One template holding the resources of all of `parts`.
fn merged(parts: &[Value]) -> Value {
    let mut resources = serde_json::Map::new();
    for p in parts {
        for (k, v) in p["Resources"].as_object().unwrap() {
            resources.insert(k.clone(), v.clone());
        }
    }
    template(Value::Object(resources))
}

/// A device policy that gains `iot:Subscribe`.
fn subscribe_added() -> StackDiff {
    let old = device_policy(json!("iot:Publish"));
    let new = device_policy(json!(["iot:Publish", "iot:Subscribe"]));
    diff(Some(&old), &new, None)
}

fn statement(sid: &str, action: &str) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": action, "Resource": "*" })
}

fn added_statement(sid: &str, action: &str) -> SecurityChange {
    SecurityChange {
        kind: SecurityKind::IamStatement,
        change: ChangeKind::Added,
        resource: "Role".into(),
        detail: json!({ "policyName": "least-privilege", "statement": statement(sid, action) }),
    }
}

/// Each target's changes, put back together from the groups naming it, sorted (as debug
/// text) so the comparison is as multisets.
fn rebuilt(g: &GroupedDiff, target: &str) -> Vec<String> {
    let mut items = Vec::new();
    for group in g
        .groups
        .iter()
        .filter(|x| x.targets.iter().any(|t| t == target))
    {
        let d = &group.diff;
        items.extend(d.resources.iter().map(|x| format!("{x:?}")));
        items.extend(d.security.iter().map(|x| format!("{x:?}")));
        items.extend(d.parameters.iter().map(|x| format!("p{x:?}")));
        items.extend(d.outputs.iter().map(|x| format!("o{x:?}")));
    }
    items.sort();
    items
}

fn flattened(d: &StackDiff) -> Vec<String> {
    let mut items: Vec<String> = d.resources.iter().map(|x| format!("{x:?}")).collect();
    items.extend(d.security.iter().map(|x| format!("{x:?}")));
    items.extend(d.parameters.iter().map(|x| format!("p{x:?}")));
    items.extend(d.outputs.iter().map(|x| format!("o{x:?}")));
    items.sort();
    items
}

#[test]
fn identical_diffs_in_five_targets_are_one_group() {
    let d = subscribe_added();
    let g = group_by_targets(&targets(&[(A, &d), (B, &d), (C, &d), (D, &d), (E, &d)]));
    assert_eq!(g.groups.len(), 1);
    assert_eq!(g.groups[0].targets, [A, B, C, D, E]);
    assert_eq!(g.groups[0].diff, d);
    assert!(g.unchanged.is_empty() && g.new_stacks.is_empty());
    assert_eq!(g.total, 5);
    let text = render_grouped_text(&g, false);
    assert_eq!(
        text,
        format!(
            "5 targets, all with changes\n  broadens permissions in: {A}, {B}, {C}, {D}, {E}\n\
             \n=== same change in all 5 targets ===\n{}",
            render_text(&d, false)
        )
    );
    // The change is read once.
    assert_eq!(text.matches("iot:Subscribe").count(), 2, "{text}");
    let md = render_grouped_markdown(&g, "jitr-infra diff: prod");
    assert!(
        md.starts_with("### jitr-infra diff: prod\n\n5 targets, all with changes.\n\n"),
        "{md}"
    );
    assert!(md.contains("\n### same change in all 5 targets\n\n#### Security changes"));
    assert_eq!(md.matches("#### Resources").count(), 1, "{md}");
}

#[test]
fn an_extra_statement_in_one_target_is_only_in_its_group() {
    let keep = statement("Keep", "sqs:SendMessage");
    let drop = statement("Drop", "sqs:DeleteQueue");
    let common = diff(Some(&role(json!([keep, drop]))), &role(json!([keep])), None);
    assert!(!common.broadens_security());
    let mut extra = common.clone();
    let grant = added_statement("Grant", "s3:*");
    extra.security.push(grant.clone());
    let g = group_by_targets(&targets(&[(A, &common), (B, &extra), (C, &common)]));
    assert_eq!(g.groups.len(), 2);
    assert_eq!(g.groups[0].targets, [A, B, C]);
    assert_eq!(g.groups[0].diff, common);
    assert_eq!(g.groups[1].targets, [B]);
    assert_eq!(g.groups[1].diff.security, [grant]);
    assert!(g.groups[1].diff.resources.is_empty());
    // The overview names the one target the common group's "only removes" does not cover.
    assert_eq!(g.broadens_security(), [B]);
    let text = render_grouped_text(&g, false);
    let only = text.find(&format!("=== only in {B} ===")).expect(&text);
    let grants = text.find("+ IAM statement Role/least-privilege: Allow s3:*");
    assert!(grants.expect(&text) > only, "{text}");
    assert!(
        text.contains(&format!("  broadens permissions in: {B}\n")),
        "{text}"
    );
    assert!(text.contains("Security changes (only removes permissions)"));
    assert!(text.contains("Security changes (broadens permissions)"));
}

#[test]
fn a_statement_added_in_some_targets_from_templates() {
    let keep = statement("Keep", "sqs:SendMessage");
    let drop = statement("Drop", "sqs:DeleteQueue");
    let grant = statement("Grant", "s3:*");
    let deployed = role(json!([keep, drop]));
    let fewer = diff(Some(&deployed), &role(json!([keep])), None);
    let granted = diff(Some(&deployed), &role(json!([keep, grant])), None);
    let g = group_by_targets(&targets(&[(A, &fewer), (B, &granted), (C, &fewer)]));
    let text = render_grouped_text(&g, false);
    for t in [A, B, C] {
        let own = if t == B { &granted } else { &fewer };
        assert_eq!(rebuilt(&g, t), flattened(own), "{t}");
    }
    let grant_line = "+ IAM statement Role/least-privilege: Allow s3:* on * [Grant]";
    assert_eq!(text.matches(grant_line).count(), 1, "{text}");
    let b_only = text.find(&format!("=== only in {B} ===")).expect(&text);
    assert!(text.find(grant_line).unwrap() > b_only, "{text}");
    assert_eq!(g.broadens_security(), [B]);
}

#[test]
fn a_fleet_breaking_banner_appears_with_its_targets_only() {
    let old = merged(&[ca("OLD PEM"), device_policy(json!("iot:Publish"))]);
    let rotated = merged(&[
        ca("NEW PEM"),
        device_policy(json!(["iot:Publish", "iot:Subscribe"])),
    ]);
    let kept = merged(&[
        ca("OLD PEM"),
        device_policy(json!(["iot:Publish", "iot:Subscribe"])),
    ]);
    let breaks = diff(Some(&old), &rotated, None);
    let fine = diff(Some(&old), &kept, None);
    assert!(!breaks.fleet_breaking().is_empty() && fine.fleet_breaking().is_empty());
    let g = group_by_targets(&targets(&[(A, &fine), (B, &breaks), (C, &fine)]));
    assert_eq!(g.fleet_breaking(), [B]);
    assert_eq!(g.groups[0].targets, [A, B, C]);
    assert!(g.groups[0].diff.fleet_breaking().is_empty());
    assert_eq!(g.groups[1].targets, [B]);
    assert_eq!(g.groups[1].diff.fleet_breaking(), breaks.fleet_breaking());
    let text = render_grouped_text(&g, false);
    assert!(
        text.contains(&format!("  FLEET-BREAKING in: {B}\n")),
        "{text}"
    );
    let banner = text.find("!!! FLEET-BREAKING CHANGES !!!").expect(&text);
    assert_eq!(text.matches("!!! FLEET-BREAKING CHANGES !!!").count(), 1);
    assert!(banner > text.find(&format!("=== only in {B} ===")).unwrap());
    let md = render_grouped_markdown(&g, "prod");
    assert!(
        md.contains(&format!("- **⚠️ FLEET-BREAKING in:** `{B}`\n")),
        "{md}"
    );
    let head = md
        .find(&format!("### only in `{B}`\n\n> [!CAUTION]"))
        .expect(&md);
    assert!(head > md.find("### same change in all 3 targets").unwrap());
}

#[test]
fn empty_diffs_are_unchanged_and_in_no_group() {
    let d = subscribe_added();
    let none = diff(Some(&dev()), &dev(), None);
    assert!(none.is_empty());
    let g = group_by_targets(&targets(&[(A, &none), (B, &d), (C, &none), (D, &d)]));
    assert_eq!(g.unchanged, [A, C]);
    assert_eq!(g.groups.len(), 1);
    assert_eq!(g.groups[0].targets, [B, D]);
    assert_eq!(g.changed(), [B, D]);
    let text = render_grouped_text(&g, false);
    assert!(text.starts_with("4 targets, 2 with changes\n"), "{text}");
    assert!(
        text.contains(&format!("  no changes: {A}, {C}\n")),
        "{text}"
    );
    let head = format!("=== same change in all 2 changed targets: {B}, {D} ===");
    assert!(text.contains(&head), "{text}");
    let all = group_by_targets(&targets(&[(A, &none), (B, &none)]));
    assert!(all.groups.is_empty());
    assert_eq!(
        render_grouped_text(&all, false),
        format!("2 targets, none with changes\n  no changes: {A}, {B}\n")
    );
    assert_eq!(
        render_grouped_markdown(&all, "t"),
        format!("### t\n\n2 targets, none with changes.\n\n- no changes: `{A}`, `{B}`\n")
    );
}

#[test]
fn one_target_renders_exactly_as_the_single_stack_renderers() {
    let cases = [
        diff(None, &dev(), None),
        diff(Some(&ca("OLD")), &ca("NEW"), None),
        subscribe_added(),
        diff(Some(&dev()), &dev(), None),
    ];
    for d in &cases {
        let g = group_by_targets(&targets(&[(A, d)]));
        for color in [false, true] {
            assert_eq!(render_grouped_text(&g, color), render_text(d, color));
        }
        assert_eq!(
            render_grouped_markdown(&g, "jitr-infra diff: dev"),
            render_markdown(d, "jitr-infra diff: dev")
        );
    }
}

#[test]
fn new_stacks_are_listed_and_said_of_groups_only_when_all_are_new() {
    let fresh = diff(None, &dev(), None);
    let mut old = dev();
    old["Resources"]
        .as_object_mut()
        .unwrap()
        .remove("CaRegistration");
    let grown = diff(Some(&old), &dev(), None);
    let g = group_by_targets(&targets(&[(A, &fresh), (B, &grown), (C, &fresh)]));
    assert_eq!(g.new_stacks, [A, C]);
    // The CA registration is added everywhere; the rest only where the stack is new.
    assert_eq!(g.groups[0].targets, [A, B, C]);
    assert!(!g.groups[0].diff.new_stack);
    assert_eq!(g.groups[1].targets, [A, C]);
    assert!(g.groups[1].diff.new_stack);
    assert_eq!(g.groups.len(), 2);
    let text = render_grouped_text(&g, false);
    assert!(
        text.contains(&format!("  new stack in: {A}, {C}\n")),
        "{text}"
    );
    assert_eq!(
        text.matches("New stack: every resource below is created.")
            .count(),
        1
    );
}

#[test]
fn equal_changes_match_as_multisets() {
    let grant = added_statement("Grant", "s3:*");
    let once = StackDiff {
        security: vec![grant.clone()],
        ..StackDiff::default()
    };
    let twice = StackDiff {
        security: vec![grant.clone(), grant.clone()],
        ..StackDiff::default()
    };
    let g = group_by_targets(&targets(&[(A, &once), (B, &twice)]));
    assert_eq!(g.groups.len(), 2);
    assert_eq!(g.groups[0].targets, [A, B]);
    assert_eq!(g.groups[0].diff.security, std::slice::from_ref(&grant));
    assert_eq!(g.groups[1].targets, [B]);
    assert_eq!(g.groups[1].diff.security, [grant]);
}

#[test]
fn groups_are_ordered_by_size_then_by_their_targets_positions() {
    let change = |sid: &str| added_statement(sid, "s3:GetObject");
    let with = |sids: &[&str]| StackDiff {
        security: sids.iter().map(|s| change(s)).collect(),
        ..StackDiff::default()
    };
    // z everywhere, y in A and D, x in B and C, w in C only.
    let input = targets(&[
        (A, &with(&["z", "y"])),
        (B, &with(&["x", "z"])),
        (C, &with(&["w", "x", "z"])),
        (D, &with(&["y", "z"])),
    ]);
    let g = group_by_targets(&input);
    let sets: Vec<(Vec<&str>, Vec<&str>)> = g
        .groups
        .iter()
        .map(|x| {
            let sids = x.diff.security.iter();
            let sids = sids.map(|s| s.detail["statement"]["Sid"].as_str().unwrap());
            (
                x.targets.iter().map(String::as_str).collect(),
                sids.collect(),
            )
        })
        .collect();
    assert_eq!(
        sets,
        [
            (vec![A, B, C, D], vec!["z"]),
            (vec![A, D], vec!["y"]),
            (vec![B, C], vec!["x"]),
            (vec![C], vec!["w"]),
        ]
    );
    for (t, d) in &input {
        assert_eq!(rebuilt(&g, t), flattened(d), "{t}");
    }
    // The same input in the same order gives the same output.
    assert_eq!(group_by_targets(&input), g);
}
