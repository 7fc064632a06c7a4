use super::*;

const A: LogicalId = LogicalId("Alpha");
const B: LogicalId = LogicalId("Beta");

#[test]
fn intrinsics_serialize_as_cloudformation_expects() {
    assert_eq!(A.r#ref().to_json(), json!({"Ref": "Alpha"}));
    assert_eq!(
        A.get_att("Arn").to_json(),
        json!({"Fn::GetAtt": ["Alpha", "Arn"]})
    );
    assert_eq!(
        Value::sub("x-${AWS::Region}").to_json(),
        json!({"Fn::Sub": "x-${AWS::Region}"})
    );
    assert_eq!(
        Value::Sub("${X}".into(), vec![("X".into(), A.r#ref())]).to_json(),
        json!({"Fn::Sub": ["${X}", {"X": {"Ref": "Alpha"}}]})
    );
    assert_eq!(
        Value::Join(":".into(), vec!["a".into(), Pseudo::Region.into()]).to_json(),
        json!({"Fn::Join": [":", ["a", {"Ref": "AWS::Region"}]]})
    );
}

#[test]
fn validate_finds_every_problem() {
    let mut t = Template::default();
    t.add(
        Resource::new(A, "AWS::SQS::Queue")
            .prop("X", Value::sub("${Gamma.Arn}-${!Literal}-${AWS::Region}")),
    );
    t.add(Resource::new(A, "AWS::SQS::Queue").depends_on(LogicalId("Delta")));
    t.add(Resource::new(LogicalId("bad-id"), "AWS::SQS::Queue").prop("Y", B.r#ref()));
    let problems: Vec<String> = t.validate().into_iter().map(|e| e.0).collect();
    assert!(
        problems.contains(&"logical id Alpha is used twice".to_string()),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("\"Gamma\"")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("unknown Delta")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("\"bad-id\"")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("\"Beta\"")),
        "{problems:?}"
    );
    assert!(!problems
        .iter()
        .any(|p| p.contains("Literal") || p.contains("AWS::")));
}

#[test]
fn conditions_render_and_are_checked() {
    let mut t = Template::default();
    t.parameters.push(Parameter {
        name: "Count",
        kind: "Number",
        description: "n".into(),
        default: None,
        no_echo: false,
    });
    t.conditions.push(Condition {
        name: "NoCount",
        value: Value::Equals(
            Box::new(Value::Ref("Count".into())),
            Box::new(Value::Int(0)),
        ),
    });
    t.add(Resource::new(A, "AWS::SQS::Queue").prop(
        "DelaySeconds",
        Value::If(
            "NoCount".into(),
            Box::new(Pseudo::NoValue.into()),
            Box::new(Value::Ref("Count".into())),
        ),
    ));
    assert!(t.validate().is_empty(), "{:?}", t.validate());
    let j = t.to_json();
    assert_eq!(
        j["Conditions"],
        json!({"NoCount": {"Fn::Equals": [{"Ref": "Count"}, 0]}})
    );
    assert_eq!(
        j["Resources"]["Alpha"]["Properties"]["DelaySeconds"],
        json!({"Fn::If": ["NoCount", {"Ref": "AWS::NoValue"}, {"Ref": "Count"}]})
    );
    let text = t.render();
    assert!(text.find("\"Parameters\"") < text.find("\"Conditions\""));
    assert!(text.find("\"Conditions\"") < text.find("\"Resources\""));

    t.conditions.push(Condition {
        name: "Bad",
        value: Value::Equals(Box::new(A.r#ref()), Box::new(Value::Int(0))),
    });
    t.add(Resource::new(B, "AWS::SQS::Queue").prop(
        "DelaySeconds",
        Value::If(
            "Nope".into(),
            Box::new(Value::Int(1)),
            Box::new(Value::Int(2)),
        ),
    ));
    let problems: Vec<String> = t.validate().into_iter().map(|e| e.0).collect();
    assert_eq!(
        problems,
        [
            "condition Bad references \"Alpha\", which is not a parameter",
            "Fn::If uses unknown condition \"Nope\""
        ]
    );
}

#[test]
fn sections_come_in_order() {
    let mut t = Template {
        description: "d".into(),
        ..Default::default()
    };
    t.add(Resource::new(A, "AWS::SQS::Queue"));
    t.outputs.push(Output {
        name: "Out",
        description: "o",
        value: A.r#ref(),
    });
    let text = t.render();
    let pos = |k: &str| text.find(k).unwrap();
    assert!(pos("AWSTemplateFormatVersion") < pos("Description"));
    assert!(pos("Description") < pos("Resources"));
    assert!(pos("Resources") < pos("Outputs"));
}
