use super::render::{code, expr, show_pair, truncate_middle, MAX_VALUE_CHARS};
use super::*;
use jitr_contract::ca_registration::RESOURCE_TYPE as CA_RESOURCE_TYPE;
use serde_json::{json, Value};

/// Stands in for the CA provider's rule (the CLI crate passes the real one, which reads
/// the certificates): a different PEM or mode is a new registration.
fn new_registration(old: &[&str], new: &[&str]) -> bool {
    old != new
}

const CA_RULE: CustomRule = CustomRule {
    resource_type: CA_RESOURCE_TYPE,
    identity: &["CaCertificatePem", "CertificateMode"],
    replaces: new_registration,
};

pub(super) fn diff(
    deployed: Option<&Value>,
    synthesized: &Value,
    change_set: Option<&[ChangeSetChange]>,
) -> StackDiff {
    super::diff(
        deployed,
        synthesized,
        change_set,
        Rules { custom: &[CA_RULE] },
    )
}

fn pair(old: Option<&Value>, new: Option<&Value>) -> (String, String) {
    show_pair(old.map(expr), new.map(expr))
}

const DEV: &str = include_str!("../../../../tests/snapshots/dev.snap.template.json");

pub(super) fn dev() -> Value {
    serde_json::from_str(DEV).unwrap()
}

pub(super) fn template(resources: Value) -> Value {
    json!({ "AWSTemplateFormatVersion": "2010-09-09", "Resources": resources })
}

pub(super) fn device_policy(actions: Value) -> Value {
    template(json!({
        "DevicePolicy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {
                "PolicyName": "jitr-dev-device",
                "PolicyDocument": { "Version": "2012-10-17", "Statement": [
                    { "Effect": "Allow", "Action": actions, "Resource": { "Fn::Sub": "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/x" } }
                ]}
            }
        }
    }))
}

pub(super) fn role(statements: Value) -> Value {
    template(json!({
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": { "Statement": [
                    { "Effect": "Allow", "Principal": { "Service": "lambda.amazonaws.com" }, "Action": "sts:AssumeRole" }
                ]},
                "Policies": [ { "PolicyName": "least-privilege", "PolicyDocument": { "Statement": statements } } ]
            }
        }
    }))
}

pub(super) fn permission(source_arn: Value) -> Value {
    template(json!({
        "Perm": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": { "Fn::GetAtt": ["Fn", "Arn"] },
                "Principal": "iot.amazonaws.com",
                "SourceArn": source_arn
            }
        }
    }))
}

pub(super) fn ca(pem: &str) -> Value {
    template(json!({
        "CaRegistration": {
            "Type": "Custom::JitrCaRegistration",
            "Properties": {
                "ServiceToken": { "Fn::GetAtt": ["CaProviderFunction", "Arn"] },
                "CaCertificatePem": pem,
                "CertificateMode": "SNI_ONLY",
                "Status": "ACTIVE"
            }
        }
    }))
}

fn has_ansi(s: &str) -> bool {
    s.contains('\x1b')
}

#[test]
fn new_stack_is_all_added_and_broadens() {
    let t = dev();
    let d = diff(None, &t, None);
    assert!(d.new_stack);
    let n = t["Resources"].as_object().unwrap().len();
    assert_eq!(d.resources.len(), n);
    assert!(d
        .resources
        .iter()
        .all(|r| r.kind == ChangeKind::Added && r.impact == Impact::Create));
    assert_eq!(d.resources[0].logical_id, "CaProviderLogGroup");
    assert_eq!(d.outputs.len(), 7);
    assert!(d.outputs.iter().all(|o| o.kind == ChangeKind::Added));
    assert!(d.broadens_security());
    assert!(d.security.iter().all(|s| s.change == ChangeKind::Added));
    let count = |k: SecurityKind| d.security.iter().filter(|s| s.kind == k).count();
    // 3 + 9 + 1 role statements; 3 trust statements; 3 device statements; 2 permissions
    // (the topic rule's and the sweep schedule's).
    assert_eq!(count(SecurityKind::IamStatement), 13);
    assert_eq!(count(SecurityKind::TrustPolicy), 3);
    assert_eq!(count(SecurityKind::DevicePolicyStatement), 3);
    assert_eq!(count(SecurityKind::LambdaPermission), 2);
    assert!(
        d.fleet_breaking().is_empty(),
        "a new CA registration breaks nothing"
    );
    assert_eq!(d.max_impact(), Some(Impact::Create));
    let text = render_text(&d, false);
    assert!(text.contains("New stack"));
    assert!(text.contains("[+] Custom::JitrCaRegistration CaRegistration"));
}

#[test]
fn identical_templates_are_empty() {
    let t = dev();
    let d = diff(Some(&t), &t, None);
    assert!(d.is_empty(), "{d:?}");
    assert!(!d.new_stack);
    assert!(!d.broadens_security());
    assert_eq!(d.max_impact(), None);
    assert_eq!(render_text(&d, true), "No changes.\n");
    assert!(render_markdown(&d, "dev").contains("No changes."));
}

#[test]
fn key_order_and_list_order_do_not_matter() {
    let a = role(
        json!([{ "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*" }]),
    );
    let b = role(
        json!([{ "Resource": ["*"], "Action": ["s3:PutObject", "s3:GetObject"], "Effect": "Allow" }]),
    );
    let d = diff(Some(&a), &b, None);
    assert!(d.security.is_empty(), "{:?}", d.security);
    // Templates with keys reordered only compare equal.
    let c = role(
        json!([{ "Resource": "*", "Action": ["s3:GetObject", "s3:PutObject"], "Effect": "Allow" }]),
    );
    assert!(diff(Some(&a), &c, None).is_empty());
}

#[test]
fn device_policy_action_added_broadens() {
    let old = device_policy(json!("iot:Publish"));
    let new = device_policy(json!(["iot:Publish", "iot:Subscribe"]));
    let d = diff(Some(&old), &new, None);
    assert!(d.broadens_security());
    let kinds: Vec<_> = d.security.iter().map(|s| (s.kind, s.change)).collect();
    assert_eq!(
        kinds,
        vec![
            (SecurityKind::DevicePolicyStatement, ChangeKind::Removed),
            (SecurityKind::DevicePolicyStatement, ChangeKind::Added)
        ]
    );
    assert_eq!(d.security[1].resource, "DevicePolicy");
    assert_eq!(
        d.security[1].detail["Action"],
        json!(["iot:Publish", "iot:Subscribe"])
    );
    let r = &d.resources[0];
    assert_eq!(r.kind, ChangeKind::Modified);
    assert_eq!(r.replacement, Replacement::No);
    assert_eq!(r.impact, Impact::Update);
    // The document is compared leaf by leaf: one action added to the statement.
    assert_eq!(r.properties.len(), 1, "{:?}", r.properties);
    assert_eq!(r.properties[0].path, "PolicyDocument.Statement[0].Action");
    assert!(r.properties[0].member);
    assert_eq!(r.properties[0].new, Some(json!("iot:Subscribe")));
    assert_eq!(r.properties[0].old, None);
}

#[test]
fn iam_statement_removed_only_does_not_broaden() {
    let keep = json!({ "Sid": "Keep", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": { "Fn::GetAtt": ["Q", "Arn"] } });
    let drop = json!({ "Sid": "Drop", "Effect": "Allow", "Action": "iot:AttachThingPrincipal", "Resource": "*" });
    let old = role(json!([keep.clone(), drop.clone()]));
    let new = role(json!([keep]));
    let d = diff(Some(&old), &new, None);
    assert!(!d.broadens_security());
    assert_eq!(d.security.len(), 1);
    let s = &d.security[0];
    assert_eq!(
        (s.kind, s.change),
        (SecurityKind::IamStatement, ChangeKind::Removed)
    );
    assert_eq!(s.resource, "Role");
    assert_eq!(
        s.detail,
        json!({ "policyName": "least-privilege", "statement": drop })
    );
    let text = render_text(&d, false);
    assert!(text.contains("(only removes permissions)"), "{text}");
    assert!(
        text.contains(
            "- IAM statement Role/least-privilege: Allow iot:AttachThingPrincipal on * [Drop]"
        ),
        "{text}"
    );
}

#[test]
fn trust_statement_widened_is_reported() {
    let mut old = role(json!([]));
    let mut new = old.clone();
    new["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        ["Principal"] = json!({ "Service": ["lambda.amazonaws.com", "iot.amazonaws.com"] });
    let d = diff(Some(&old), &new, None);
    assert!(d.broadens_security());
    assert!(d
        .security
        .iter()
        .any(|s| s.kind == SecurityKind::TrustPolicy && s.change == ChangeKind::Added));
    // A string and a one-element list are the same principal.
    old["Resources"]["Role"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        ["Principal"] = json!({ "Service": ["lambda.amazonaws.com"] });
    let same = role(json!([]));
    assert!(diff(Some(&old), &same, None).security.is_empty());
}

#[test]
fn managed_policy_attached_broadens() {
    let old = role(json!([]));
    let mut new = old.clone();
    new["Resources"]["Role"]["Properties"]["ManagedPolicyArns"] =
        json!(["arn:aws:iam::aws:policy/AdministratorAccess"]);
    let d = diff(Some(&old), &new, None);
    assert!(d.broadens_security());
    assert_eq!(
        d.security[0].detail["managedPolicyArn"],
        json!("arn:aws:iam::aws:policy/AdministratorAccess")
    );
}

#[test]
fn lambda_permission_source_arn_change_replaces() {
    let old = permission(json!({ "Fn::GetAtt": ["RuleA", "Arn"] }));
    let new = permission(json!({ "Fn::GetAtt": ["RuleB", "Arn"] }));
    let d = diff(Some(&old), &new, None);
    let r = &d.resources[0];
    assert_eq!(r.replacement, Replacement::Yes);
    assert_eq!(r.impact, Impact::Replace);
    assert_eq!(r.properties.len(), 1);
    assert_eq!(r.properties[0].path, "SourceArn");
    assert!(r.properties[0].causes_replacement);
    let changes: Vec<_> = d.security.iter().map(|s| (s.kind, s.change)).collect();
    assert_eq!(
        changes,
        vec![
            (SecurityKind::LambdaPermission, ChangeKind::Removed),
            (SecurityKind::LambdaPermission, ChangeKind::Added)
        ]
    );
    assert_eq!(
        d.security[1].detail["SourceArn"],
        json!({ "Fn::GetAtt": ["RuleB", "Arn"] })
    );
    assert!(d.broadens_security());
    assert_eq!(d.max_impact(), Some(Impact::Replace));
}

#[test]
fn ca_certificate_change_is_fleet_breaking() {
    let d = diff(Some(&ca("OLD PEM")), &ca("NEW PEM"), None);
    let r = &d.resources[0];
    assert_eq!(r.replacement, Replacement::Yes);
    assert_eq!(r.impact, Impact::Replace);
    assert_eq!(r.properties[0].path, "CaCertificatePem");
    assert!(r.properties[0].causes_replacement);
    let fleet = d.fleet_breaking();
    assert_eq!(fleet.len(), 1);
    assert!(
        fleet[0].contains("CaRegistration") && fleet[0].contains("REPLACED"),
        "{fleet:?}"
    );
    assert!(fleet[0].contains("CaCertificatePem"));
    let text = render_text(&d, false);
    assert!(text.starts_with("!!! FLEET-BREAKING"), "{text}");
    assert!(
        text.contains("[~] Custom::JitrCaRegistration CaRegistration (replace)"),
        "{text}"
    );
    assert!(
        text.contains("CaCertificatePem (replace): \"OLD PEM\" -> \"NEW PEM\""),
        "{text}"
    );
    // A Status change updates in place: nothing fleet-breaking.
    let mut active = ca("OLD PEM");
    active["Resources"]["CaRegistration"]["Properties"]["Status"] = json!("INACTIVE");
    let d = diff(Some(&ca("OLD PEM")), &active, None);
    assert_eq!(d.resources[0].impact, Impact::Update);
    assert!(d.fleet_breaking().is_empty());
}

fn with_ca_prop(template: &Value, name: &str, value: Value) -> Value {
    let mut t = template.clone();
    t["Resources"]["CaRegistration"]["Properties"][name] = value;
    t
}

#[test]
fn a_service_token_change_is_refused_by_cloudformation_not_a_replacement() {
    let deployed = ca("PEM");
    let moved = with_ca_prop(
        &deployed,
        "ServiceToken",
        json!({ "Fn::GetAtt": ["OtherProvider", "Arn"] }),
    );
    let d = diff(Some(&deployed), &moved, None);
    let r = &d.resources[0];
    assert_eq!((r.replacement, r.impact), (Replacement::No, Impact::Update));
    assert!(d.fleet_breaking().is_empty());
    assert!(r.properties[0].update_fails.is_some());
    let refused = d.refused_updates();
    assert_eq!(
        refused,
        [
            "CaRegistration ServiceToken: CloudFormation does not allow changing a custom \
          resource's ServiceToken: the update will fail. A new provider needs a new resource \
          (a new logical id)"
        ]
    );
    let text = render_text(&d, false);
    assert!(
        text.starts_with(
            "!!! CHANGES CLOUDFORMATION WILL REFUSE !!!\n  !! CaRegistration ServiceToken"
        ),
        "{text}"
    );
    assert!(text.contains("    ServiceToken (update fails): "), "{text}");
    let md = render_markdown(&d, "dev");
    assert!(
        md.contains("**Changes CloudFormation will refuse**"),
        "{md}"
    );
    assert!(md.contains("**(update fails)**"), "{md}");
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["refusedUpdates"], json!(refused));
}

#[test]
fn ca_registration_removed_is_fleet_breaking() {
    let d = diff(Some(&ca("PEM")), &template(json!({})), None);
    assert_eq!(d.resources[0].kind, ChangeKind::Removed);
    assert_eq!(d.resources[0].impact, Impact::Destroy);
    let fleet = d.fleet_breaking();
    assert_eq!(fleet.len(), 1);
    assert!(fleet[0].contains("REMOVED"), "{fleet:?}");
    assert_eq!(d.max_impact(), Some(Impact::Destroy));
}

#[test]
fn change_set_replacement_overrides_the_table() {
    let mut old = template(
        json!({ "Q": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": "a", "VisibilityTimeout": 30 } } }),
    );
    let mut new = old.clone();
    new["Resources"]["Q"]["Properties"]["VisibilityTimeout"] = json!(60);
    let cs = |r: &str| {
        vec![ChangeSetChange {
            logical_id: "Q".into(),
            resource_type: "AWS::SQS::Queue".into(),
            action: "Modify".into(),
            replacement: Some(r.into()),
        }]
    };
    assert_eq!(
        diff(Some(&old), &new, None).resources[0].replacement,
        Replacement::No
    );
    let d = diff(Some(&old), &new, Some(&cs("True")));
    assert_eq!(
        (d.resources[0].replacement, d.resources[0].impact),
        (Replacement::Yes, Impact::Replace)
    );
    let d = diff(Some(&old), &new, Some(&cs("Conditional")));
    assert_eq!(d.resources[0].impact, Impact::MayReplace);
    // The table says replace; the change set says it does not.
    new["Resources"]["Q"]["Properties"]["QueueName"] = json!("b");
    let d = diff(Some(&old), &new, Some(&cs("False")));
    assert_eq!(d.resources[0].replacement, Replacement::No);
    assert!(d.resources[0]
        .properties
        .iter()
        .all(|p| !p.causes_replacement));
    // Unchanged templates, but the change set modifies (a parameter value changed).
    old = new.clone();
    let d = diff(Some(&old), &new, Some(&cs("True")));
    assert_eq!(d.resources.len(), 1);
    assert_eq!(d.resources[0].kind, ChangeKind::Modified);
    assert!(d.resources[0].properties.is_empty());
    assert_eq!(d.resources[0].impact, Impact::Replace);
}

#[test]
fn change_set_cannot_lower_a_custom_resource_replacement() {
    let cs = vec![ChangeSetChange {
        logical_id: "CaRegistration".into(),
        resource_type: CA_RESOURCE_TYPE.into(),
        action: "Modify".into(),
        replacement: Some("False".into()),
    }];
    let d = diff(Some(&ca("OLD")), &ca("NEW"), Some(&cs));
    assert_eq!(d.resources[0].replacement, Replacement::Yes);
    assert!(!d.fleet_breaking().is_empty());
}

#[test]
fn change_set_add_or_remove_for_unchanged_resource_is_reported() {
    let t = dev();
    let cs = vec![
        ChangeSetChange {
            logical_id: "ActivatorFailureQueue".into(),
            resource_type: "AWS::SQS::Queue".into(),
            action: "Add".into(),
            replacement: None,
        },
        ChangeSetChange {
            logical_id: "CaRegistration".into(),
            resource_type: CA_RESOURCE_TYPE.into(),
            action: "Remove".into(),
            replacement: None,
        },
        ChangeSetChange {
            logical_id: "Ghost".into(),
            resource_type: "AWS::SNS::Topic".into(),
            action: "Remove".into(),
            replacement: None,
        },
    ];
    let d = diff(Some(&t), &t, Some(&cs));
    let rows: Vec<_> = d
        .resources
        .iter()
        .map(|r| (r.logical_id.as_str(), r.kind, r.properties.len()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("CaRegistration", ChangeKind::Removed, 0),
            ("ActivatorFailureQueue", ChangeKind::Added, 0),
            ("Ghost", ChangeKind::Removed, 0),
        ]
    );
    assert_eq!(d.resources[0].resource_type, CA_RESOURCE_TYPE);
    assert!(!d.fleet_breaking().is_empty());
    assert!(d.security.is_empty());
}

#[test]
fn nested_paths_and_attributes() {
    let old = dev();
    let mut new = old.clone();
    let rule = &mut new["Resources"]["RegistrationRule"];
    rule["Properties"]["TopicRulePayload"]["Sql"] = json!({ "Fn::Sub": "SELECT * FROM 'x'" });
    rule["Properties"]["TopicRulePayload"]["RuleDisabled"] = json!(true);
    rule["DependsOn"] = json!("ActivatorFunction");
    rule["DeletionPolicy"] = json!("Retain");
    new["Resources"]["ActivatorFunction"]["Properties"]["Environment"]["Variables"]
        ["JITR_CREATE_THING"] = json!("false");
    new["Resources"]["ActivatorFunction"]["Properties"]
        .as_object_mut()
        .unwrap()
        .remove("ReservedConcurrentExecutions");
    let d = diff(Some(&old), &new, None);
    let ids: Vec<_> = d.resources.iter().map(|r| r.logical_id.as_str()).collect();
    assert_eq!(ids, vec!["ActivatorFunction", "RegistrationRule"]);
    let f = &d.resources[0];
    let paths: Vec<_> = f.properties.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "Environment.Variables.JITR_CREATE_THING",
            "ReservedConcurrentExecutions"
        ]
    );
    assert_eq!(f.properties[1].new, None);
    assert_eq!(
        f.properties[1].old,
        Some(
            old["Resources"]["ActivatorFunction"]["Properties"]["ReservedConcurrentExecutions"]
                .clone()
        )
    );
    let r = &d.resources[1];
    let paths: Vec<_> = r.properties.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "TopicRulePayload.Sql",
            "TopicRulePayload.RuleDisabled",
            "DependsOn",
            "DeletionPolicy"
        ]
    );
    assert!(r.properties.iter().all(|p| !p.causes_replacement));
    assert_eq!(r.impact, Impact::Update);
    assert!(d.security.is_empty());
    let text = render_text(&d, false);
    assert!(
        text.contains("    TopicRulePayload.RuleDisabled: false -> true"),
        "{text}"
    );
    assert!(
        text.contains("    DeletionPolicy: (none) -> \"Retain\""),
        "{text}"
    );
}

#[test]
fn depends_on_is_a_set() {
    let with = |d: Value| template(json!({ "Q": { "Type": "AWS::SQS::Queue", "DependsOn": d } }));
    let same = |a: Value, b: Value| diff(Some(&with(a)), &with(b), None).is_empty();
    assert!(same(json!("A"), json!(["A"])));
    assert!(same(json!(["A", "B"]), json!(["B", "A"])));
    assert!(!same(json!(["A"]), json!(["A", "B"])));
}

#[test]
fn rule_rename_replaces_and_type_change_replaces() {
    let old = dev();
    let mut new = old.clone();
    new["Resources"]["RegistrationRule"]["Properties"]["RuleName"] = json!("other");
    new["Resources"]["ActivatorFailureQueue"]["Type"] = json!("AWS::SNS::Topic");
    let d = diff(Some(&old), &new, None);
    let q = d
        .resources
        .iter()
        .find(|r| r.logical_id == "ActivatorFailureQueue")
        .unwrap();
    assert_eq!(q.properties[0].path, "Type");
    assert_eq!(q.replacement, Replacement::Yes);
    let rule = d
        .resources
        .iter()
        .find(|r| r.logical_id == "RegistrationRule")
        .unwrap();
    assert_eq!(rule.impact, Impact::Replace);
}

#[test]
fn unknown_type_name_property_may_replace() {
    let old = template(
        json!({ "T": { "Type": "AWS::ECR::Repository", "Properties": { "RepositoryName": "a", "DisplayName": "x", "Other": 1 } } }),
    );
    let mut new = old.clone();
    new["Resources"]["T"]["Properties"]["Other"] = json!(2);
    assert_eq!(
        diff(Some(&old), &new, None).resources[0].replacement,
        Replacement::No
    );
    new["Resources"]["T"]["Properties"]["RepositoryName"] = json!("b");
    let d = diff(Some(&old), &new, None);
    assert_eq!(
        (d.resources[0].replacement, d.resources[0].impact),
        (Replacement::Conditional, Impact::MayReplace)
    );
    assert!(render_text(&d, false).contains("[~] AWS::ECR::Repository T (may replace)"));
}

#[test]
fn removed_resources_come_last_in_deployed_order() {
    let old = template(json!({
        "A": { "Type": "AWS::SQS::Queue" },
        "Gone1": { "Type": "AWS::SQS::Queue" },
        "B": { "Type": "AWS::SQS::Queue", "Properties": { "DelaySeconds": 1 } },
        "Gone2": { "Type": "AWS::SQS::Queue" }
    }));
    let new = template(json!({
        "New": { "Type": "AWS::SQS::Queue" },
        "B": { "Type": "AWS::SQS::Queue", "Properties": { "DelaySeconds": 2 } },
        "A": { "Type": "AWS::SQS::Queue" }
    }));
    let d = diff(Some(&old), &new, None);
    let rows: Vec<_> = d
        .resources
        .iter()
        .map(|r| (r.logical_id.as_str(), r.kind))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("New", ChangeKind::Added),
            ("B", ChangeKind::Modified),
            ("Gone1", ChangeKind::Removed),
            ("Gone2", ChangeKind::Removed)
        ]
    );
    assert_eq!(d.max_impact(), Some(Impact::Destroy));
}

#[test]
fn parameters_and_outputs() {
    let mut old = dev();
    old["Parameters"] = json!({ "Old": { "Type": "String" }, "Same": { "Type": "String" } });
    let mut new = dev();
    new["Parameters"] =
        json!({ "Same": { "Type": "String" }, "New": { "Type": "String", "NoEcho": true } });
    new["Outputs"]["CaCertificateId"]["Description"] = json!("changed");
    new["Outputs"]
        .as_object_mut()
        .unwrap()
        .remove("DevicePolicyName");
    let d = diff(Some(&old), &new, None);
    let params: Vec<_> = d
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        params,
        vec![("New", ChangeKind::Added), ("Old", ChangeKind::Removed)]
    );
    let outs: Vec<_> = d
        .outputs
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        outs,
        vec![
            ("CaCertificateId", ChangeKind::Modified),
            ("DevicePolicyName", ChangeKind::Removed)
        ]
    );
    assert!(d.resources.is_empty());
    assert!(!d.is_empty());
    let text = render_text(&d, false);
    assert!(
        text.contains("Parameters\n[+] New: {\"Type\":\"String\",\"NoEcho\":true}"),
        "{text}"
    );
    assert!(
        text.contains(
            "Outputs\n[~] CaCertificateId = GetAtt CaRegistration.CaCertificateId\n    \
             Description: \"AWS IoT id of the registered device CA\" -> \"changed\"\n\
             [-] DevicePolicyName = Ref DevicePolicy"
        ),
        "{text}"
    );
}

#[test]
fn text_colour_only_when_asked() {
    let mut new = dev();
    new["Resources"]["CaRegistration"]["Properties"]["CertificateMode"] = json!("DEFAULT");
    new["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]["Action"] =
        json!("iot:*");
    let d = diff(Some(&dev()), &new, None);
    let plain = render_text(&d, false);
    assert!(!has_ansi(&plain), "{plain}");
    for needle in [
        "!!! FLEET-BREAKING",
        "Security changes (broadens permissions)",
        "+ device policy statement DevicePolicy: Allow iot:* on arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/devices/${iot:Connection.Thing.ThingName}/* [OwnTopics]",
        "- device policy statement DevicePolicy: Allow iot:Publish, iot:Receive on",
        "Resources (1 to update, 1 to replace)",
        "[~] Custom::JitrCaRegistration CaRegistration (replace)",
        "CertificateMode (replace): \"SNI_ONLY\" -> \"DEFAULT\"",
        "[~] AWS::IoT::Policy DevicePolicy\n",
    ] {
        assert!(plain.contains(needle), "missing {needle:?} in\n{plain}");
    }
    let fleet_at = plain.find("FLEET-BREAKING").unwrap();
    assert!(fleet_at < plain.find("Security changes").unwrap());
    assert!(plain.find("Security changes").unwrap() < plain.find("Resources").unwrap());
    let coloured = render_text(&d, true);
    assert!(has_ansi(&coloured));
    assert!(coloured.contains("\x1b[1;31m"));
}

#[test]
fn long_values_are_truncated_in_the_middle() {
    let mut new = dev();
    let pem = "A".repeat(100) + &"B".repeat(100);
    new["Resources"]["CaRegistration"]["Properties"]["CaCertificatePem"] = json!(pem);
    let d = diff(Some(&dev()), &new, None);
    let text = render_text(&d, false);
    let line = text
        .lines()
        .find(|l| l.starts_with("    CaCertificatePem"))
        .unwrap();
    let new_part = line.split(" -> ").nth(1).unwrap();
    assert!(new_part.chars().count() <= MAX_VALUE_CHARS, "{new_part}");
    assert!(
        new_part.starts_with("\"AAAA") && new_part.ends_with("BBB\"") && new_part.contains('…')
    );
    assert_eq!(truncate_middle("short", 120), "short");
    assert_eq!(truncate_middle("abcdefghij", 5), "ab…ij");
}

#[test]
fn long_values_differing_in_the_middle_show_the_difference() {
    let with = |middle: &str| {
        let long = format!("{}{middle}{}", "x".repeat(150), "y".repeat(150));
        template(
            json!({ "Q": { "Type": "AWS::SQS::Queue", "Properties": { "Description": long } } }),
        )
    };
    let d = diff(Some(&with("OLD")), &with("NEW"), None);
    let text = render_text(&d, false);
    let line = text
        .lines()
        .find(|l| l.starts_with("    Description"))
        .unwrap();
    let (o, n) = line.split_once(": ").unwrap().1.split_once(" -> ").unwrap();
    assert_ne!(o, n);
    assert!(o.contains("OLD"), "{o}");
    assert!(n.contains("NEW"), "{n}");
    assert!(o.chars().count() <= MAX_VALUE_CHARS + 2, "{o}");
    // A policy document is not a long value: its leaves are shown.
    let mut new = dev();
    new["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"][1]["Action"] =
        json!("iot:*");
    let text = render_text(&diff(Some(&dev()), &new, None), false);
    for line in [
        "    PolicyDocument.Statement[1].Action: - iot:Publish\n",
        "    PolicyDocument.Statement[1].Action: - iot:Receive\n",
        "    PolicyDocument.Statement[1].Action: + iot:*\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Short values are shown whole.
    let (o, n) = pair(Some(&json!(1)), Some(&json!(2)));
    assert_eq!((o.as_str(), n.as_str()), ("1", "2"));
    // A long value against a short one.
    let long = json!("x".repeat(300));
    let (o, n) = pair(Some(&long), Some(&json!("y")));
    assert!(
        o.chars().count() <= MAX_VALUE_CHARS + 2 && o.contains('…'),
        "{o}"
    );
    assert_eq!(n, "\"y\"");
}

#[test]
fn markdown_warns_about_fleet_breaking_and_security() {
    let d = diff(Some(&ca("OLD")), &ca("NEW"), None);
    let md = render_markdown(&d, "Stack jitr-dev");
    assert!(md.starts_with("### Stack jitr-dev\n"));
    assert!(md.contains("> [!CAUTION]"), "{md}");
    assert!(md.contains("FLEET-BREAKING"));
    assert!(
        md.contains("| `[~]` | `CaRegistration` | `Custom::JitrCaRegistration` | **replace** |"),
        "{md}"
    );
    assert!(!has_ansi(&md));

    let d = diff(None, &dev(), None);
    let md = render_markdown(&d, "dev");
    assert!(md.contains("**New stack:**"));
    assert!(md.contains("> [!WARNING]"));
    assert!(md.contains("#### Security changes"));
    assert!(!md.contains("[!CAUTION]"));
    // Every table row has the same number of cells as its header (no stray `|`).
    for line in md.lines().filter(|l| l.starts_with("| ➕")) {
        assert_eq!(line.replace("\\|", "").matches('|').count(), 5, "{line}");
    }
}

#[test]
fn markdown_code_spans_escape_pipes_and_backticks() {
    assert_eq!(code("a|b"), "`a\\|b`");
    assert_eq!(code("x `y` z"), "``x `y` z``");
    assert_eq!(code("`edge"), "`` `edge ``");
}

#[test]
fn json_is_camel_case_and_carries_the_verdicts() {
    let d = diff(Some(&ca("OLD")), &ca("NEW"), None);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["newStack"], json!(false));
    assert_eq!(v["maxImpact"], json!("replace"));
    assert_eq!(v["broadensSecurity"], json!(false));
    assert_eq!(v["fleetBreaking"].as_array().unwrap().len(), 1);
    let r = &v["resources"][0];
    assert_eq!(r["logicalId"], json!("CaRegistration"));
    assert_eq!(r["resourceType"], json!(CA_RESOURCE_TYPE));
    assert_eq!(r["kind"], json!("modified"));
    assert_eq!(r["replacement"], json!("yes"));
    assert_eq!(r["properties"][0]["causesReplacement"], json!(true));
    let d = diff(None, &permission(json!("arn")), None);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["security"][0]["kind"], json!("lambdaPermission"));
    assert_eq!(v["security"][0]["change"], json!("added"));
    assert_eq!(v["maxImpact"], json!("create"));
}

#[test]
fn may_replace_ordering() {
    assert!(Impact::Update < Impact::Create);
    assert!(Impact::Create < Impact::MayReplace);
    assert!(Impact::MayReplace < Impact::Replace);
    assert!(Impact::Replace < Impact::Destroy);
}

#[test]
fn policy_document_as_json_text_is_read() {
    let doc =
        json!({ "Statement": [{ "Effect": "Allow", "Action": "iot:Connect", "Resource": "*" }] });
    let as_object = template(
        json!({ "P": { "Type": "AWS::IoT::Policy", "Properties": { "PolicyDocument": doc } } }),
    );
    let as_text = template(
        json!({ "P": { "Type": "AWS::IoT::Policy", "Properties": { "PolicyDocument": doc.to_string() } } }),
    );
    let d = diff(Some(&as_object), &as_text, None);
    assert!(d.security.is_empty(), "{:?}", d.security);
    assert_eq!(diff(None, &as_text, None).security.len(), 1);
}

#[test]
fn create_only_lists_come_from_the_vendored_schemas() {
    let props = |t: &str| create_only_properties(t).unwrap().to_vec();
    assert!(props("AWS::Lambda::Function").contains(&"/properties/FunctionName".to_string()));
    assert!(props("AWS::IoT::ThingGroup").contains(&"/properties/ParentGroupName".to_string()));
    assert!(create_only_properties("AWS::ECR::Repository").is_none());
    // A property the hand table never had: the function's package type.
    let old = dev();
    let mut new = dev();
    new["Resources"]["ActivatorFunction"]["Properties"]["PackageType"] = json!("Image");
    let d = diff(Some(&old), &new, None);
    let f = d
        .resources
        .iter()
        .find(|r| r.logical_id == "ActivatorFunction")
        .unwrap();
    assert_eq!(f.replacement, Replacement::Yes);
}

fn renamed_activator() -> (Value, Value) {
    let old = dev();
    let mut new = dev();
    new["Resources"]["ActivatorFunction"]["Properties"]["FunctionName"] = json!("jitr-dev-other");
    (old, new)
}

#[test]
fn replacement_spreads_to_create_only_references() {
    let (old, new) = renamed_activator();
    let d = diff(Some(&old), &new, None);
    let get = |id: &str| d.resources.iter().find(|r| r.logical_id == id);
    let f = get("ActivatorFunction").unwrap();
    assert_eq!(f.replacement, Replacement::Yes);
    assert_eq!(f.replaced_because, None);
    let p = get("ActivatorInvokePermission").expect("the permission is replaced too");
    assert_eq!((p.kind, p.impact), (ChangeKind::Modified, Impact::Replace));
    assert!(p.properties.is_empty());
    assert_eq!(
        p.replaced_because,
        Some(ReplacedBecause {
            property: "FunctionName".into(),
            refers_to: "ActivatorFunction".into(),
        })
    );
    let text = render_text(&d, false);
    assert!(
        text.contains(
            "[~] AWS::Lambda::Permission ActivatorInvokePermission (replace)\n    \
             replaced because FunctionName refers to ActivatorFunction, which is replaced\n"
        ),
        "{text}"
    );
    // Template order: the permission is listed where the synthesized template has it.
    let ids: Vec<&str> = d.resources.iter().map(|r| r.logical_id.as_str()).collect();
    let pos = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    let order = new["Resources"].as_object().unwrap();
    let rank = |id: &str| order.keys().position(|k| k == id).unwrap();
    assert!(ids.windows(2).all(|w| rank(w[0]) < rank(w[1])), "{ids:?}");
    assert!(pos("ActivatorFunction") < pos("ActivatorInvokePermission"));
    let v = serde_json::to_value(&d).unwrap();
    let p = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["logicalId"] == "ActivatorInvokePermission")
        .unwrap();
    assert_eq!(
        p["replacedBecause"],
        json!({ "property": "FunctionName", "refersTo": "ActivatorFunction" })
    );
    let md = render_markdown(&d, "dev");
    assert!(
        md.contains("replaced because FunctionName refers to ActivatorFunction"),
        "{md}"
    );
}

#[test]
fn a_reference_outside_create_only_properties_does_not_spread() {
    let with = |name: &str| {
        template(json!({
            "Q": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": name } },
            "F": { "Type": "AWS::Lambda::Function", "Properties": {
                "Environment": { "Variables": { "QUEUE": { "Ref": "Q" } } },
                "DeadLetterConfig": { "TargetArn": { "Fn::GetAtt": ["Q", "Arn"] } }
            } }
        }))
    };
    let d = diff(Some(&with("a")), &with("b"), None);
    let ids: Vec<_> = d
        .resources
        .iter()
        .map(|r| (r.logical_id.as_str(), r.impact))
        .collect();
    assert_eq!(ids, [("Q", Impact::Replace)]);
}

#[test]
fn replacement_through_a_cycle_ends() {
    // Two permissions naming each other as their function: replacing one replaces both.
    let with = |principal: &str| {
        template(json!({
            "A": { "Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction", "Principal": principal,
                "FunctionName": { "Fn::Sub": "${B}" } } },
            "B": { "Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction", "Principal": "iot.amazonaws.com",
                "FunctionName": { "Ref": "A" } } }
        }))
    };
    let d = diff(
        Some(&with("iot.amazonaws.com")),
        &with("s3.amazonaws.com"),
        None,
    );
    let rows: Vec<_> = d
        .resources
        .iter()
        .map(|r| {
            (
                r.logical_id.as_str(),
                r.replacement,
                r.replaced_because.is_some(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("A", Replacement::Yes, false),
            ("B", Replacement::Yes, true)
        ]
    );
}

#[test]
fn a_possible_replacement_spreads_as_possible() {
    let with = |name: Value| {
        template(json!({
            "T": { "Type": "AWS::ECR::Repository", "Properties": { "RepositoryName": name } },
            "P": { "Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction", "Principal": "sns.amazonaws.com",
                "FunctionName": "f", "SourceArn": { "Ref": "T" } } }
        }))
    };
    let d = diff(Some(&with(json!("a"))), &with(json!("b")), None);
    let p = d.resources.iter().find(|r| r.logical_id == "P").unwrap();
    assert_eq!(p.impact, Impact::MayReplace);
    let text = render_text(&d, false);
    assert!(
        text.contains("    may be replaced because SourceArn refers to T, which may be replaced\n"),
        "{text}"
    );
}

const RETAIN_DOC: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"Connect","Effect":"Allow","Action":"iot:Connect","Resource":"arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:Connection.Thing.ThingName}"},{"Sid":"OwnTopics","Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/devices/${!iot:Connection.Thing.ThingName}/*"}]}"#;

#[test]
fn a_policy_document_diffs_leaf_by_leaf_in_every_spelling() {
    let retain = RETAIN_DOC.replace(
        r#"["iot:Publish","iot:Receive"]"#,
        r#"["iot:Publish","iot:Receive","iot:RetainPublish"]"#,
    );
    let iot = |doc: Value| {
        template(
            json!({ "DevicePolicy": { "Type": "AWS::IoT::Policy", "Properties": { "PolicyDocument": doc } } }),
        )
    };
    let as_sub = |t: &str| json!({ "Fn::Sub": t });
    let as_text = |t: &str| json!(t);
    let as_object = |t: &str| serde_json::from_str::<Value>(t).unwrap();
    for spell in [as_sub, as_text, as_object] {
        let d = diff(Some(&iot(spell(RETAIN_DOC))), &iot(spell(&retain)), None);
        let r = &d.resources[0];
        assert_eq!(r.properties.len(), 1, "{:?}", r.properties);
        let p = &r.properties[0];
        assert_eq!(p.path, "PolicyDocument.Statement[1].Action");
        assert!(p.member);
        assert_eq!(p.new, Some(json!("iot:RetainPublish")));
        let text = render_text(&d, false);
        assert!(
            text.contains("    PolicyDocument.Statement[1].Action: + iot:RetainPublish\n"),
            "{text}"
        );
        assert!(!text.contains('…'), "{text}");
    }
    // Written as Fn::Sub text, a policy variable reads as its author wrote it.
    let d = diff(None, &iot(as_sub(&retain)), None);
    let text = render_text(&d, false);
    assert!(
        text.contains("topic/devices/${iot:Connection.Thing.ThingName}/* [OwnTopics]"),
        "{text}"
    );
    assert!(!text.contains("${!"), "{text}");
}

#[test]
fn statements_pair_by_sid_and_new_ones_show_whole() {
    let old = dev();
    let mut new = dev();
    let statements = new["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap();
    statements.insert(
        0,
        json!({ "Sid": "Shadow", "Effect": "Allow", "Action": "iot:GetThingShadow", "Resource": "*" }),
    );
    let d = diff(Some(&old), &new, None);
    let r = &d.resources[0];
    let paths: Vec<_> = r.properties.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["PolicyDocument.Statement[0]"], "{:?}", r.properties);
    assert!(r.properties[0].member && r.properties[0].old.is_none());
}

#[test]
fn the_security_view_never_truncates() {
    let arns: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "arn:aws:iot:eu-west-1:123456789012:topic/devices/fleet-{i}/telemetry/long/path"
            )
        })
        .collect();
    let new = role(
        json!([{ "Sid": "Many", "Effect": "Allow", "Action": "iot:Publish", "Resource": arns,
        "Condition": { "StringEquals": { "aws:SourceAccount": "123456789012", "aws:PrincipalTag/team": "fleet-operations-with-a-long-name" } } }]),
    );
    let d = diff(Some(&role(json!([]))), &new, None);
    for text in [render_text(&d, false), render_markdown(&d, "dev")] {
        let line = text
            .lines()
            .find(|l| l.contains("[Many]"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(!line.contains('…'), "{line}");
        for arn in &arns {
            assert!(line.contains(arn.as_str()), "missing {arn} in {line}");
        }
        assert!(line.contains("fleet-operations-with-a-long-name"), "{line}");
    }
}

#[test]
fn outputs_read_as_name_equals_value() {
    let d = diff(None, &dev(), None);
    let text = render_text(&d, false);
    for line in [
        "[+] CaCertificateId = GetAtt CaRegistration.CaCertificateId\n",
        "[+] RegistrationRuleName = \"jitr_dev_registered\"\n",
        "[+] DevicePolicyName = Ref DevicePolicy\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let mut new = dev();
    new["Outputs"]["DevicePolicyName"]["Value"] = json!({ "Fn::Sub": "${DevicePolicy}-x" });
    let text = render_text(&diff(Some(&dev()), &new, None), false);
    assert!(
        text.contains("[~] DevicePolicyName = Ref DevicePolicy -> Sub ${DevicePolicy}-x\n"),
        "{text}"
    );
}

#[test]
fn intrinsics_read_as_written_in_property_changes() {
    let old = permission(json!({ "Fn::GetAtt": ["RuleA", "Arn"] }));
    let new = permission(json!({ "Fn::GetAtt": ["RuleB", "Arn"] }));
    let text = render_text(&diff(Some(&old), &new, None), false);
    assert!(
        text.contains("    SourceArn (replace): GetAtt RuleA.Arn -> GetAtt RuleB.Arn\n"),
        "{text}"
    );
}

#[test]
fn a_reordered_list_is_still_a_change() {
    let with = |layers: Value| {
        template(
            json!({ "F": { "Type": "AWS::Lambda::Function", "Properties": { "Layers": layers } } }),
        )
    };
    let d = diff(
        Some(&with(json!(["a", "b"]))),
        &with(json!(["b", "a"])),
        None,
    );
    assert_eq!(d.resources[0].properties.len(), 1);
    assert!(!d.resources[0].properties[0].member);
}
