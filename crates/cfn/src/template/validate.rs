//! [`Template::validate`]: the structural checks CloudFormation would otherwise make at
//! deploy time.

use super::{Template, TemplateError, Value, MAX_RESOURCES};

impl Template {
    /// Structural checks CloudFormation would otherwise reject at deploy time: logical ids
    /// alphanumeric and unique, references resolvable, the resource limit. All problems are
    /// returned, not just the first.
    pub fn validate(&self) -> Vec<TemplateError> {
        let mut problems = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let all_ids = self
            .resources
            .iter()
            .map(|r| r.id.0)
            .chain(self.parameters.iter().map(|p| p.name));
        for id in all_ids {
            if id.is_empty() || id.len() > 255 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems.push(TemplateError(format!(
                    "logical id {id:?} must be 1-255 alphanumeric characters"
                )));
            }
            if names.contains(&id) {
                problems.push(TemplateError(format!("logical id {id} is used twice")));
            }
            names.push(id);
        }
        for out in &self.outputs {
            if names.contains(&out.name) {
                // Outputs live in their own namespace; a clash still confuses readers.
                problems.push(TemplateError(format!(
                    "output {} has the same name as a resource or parameter",
                    out.name
                )));
            }
        }
        let check = |owner: &str, value: &Value, problems: &mut Vec<TemplateError>| {
            let mut refs = Vec::new();
            value.references(&mut refs);
            for r in refs {
                if !names.contains(&r.as_str()) {
                    problems.push(TemplateError(format!("{owner} references unknown {r:?}")));
                }
            }
        };
        for r in &self.resources {
            for (k, v) in &r.properties {
                check(&format!("{}.{k}", r.id), v, &mut problems);
            }
            for d in &r.depends_on {
                if !names.contains(&d.0) {
                    problems.push(TemplateError(format!(
                        "{} depends on unknown {}",
                        r.id, d.0
                    )));
                }
            }
        }
        for o in &self.outputs {
            check(&format!("output {}", o.name), &o.value, &mut problems);
        }
        problems.extend(self.validate_conditions());
        if self.resources.len() > MAX_RESOURCES {
            problems.push(TemplateError(format!(
                "{} resources; CloudFormation allows {MAX_RESOURCES}",
                self.resources.len()
            )));
        }
        problems
    }

    /// Conditions: alphanumeric unique names, referring only to parameters (as CloudFormation
    /// requires), and every `Fn::If` naming one that exists.
    fn validate_conditions(&self) -> Vec<TemplateError> {
        let mut problems = Vec::new();
        let mut declared: Vec<&str> = Vec::new();
        for c in &self.conditions {
            if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems.push(TemplateError(format!(
                    "condition {:?} must be alphanumeric",
                    c.name
                )));
            }
            if declared.contains(&c.name) {
                problems.push(TemplateError(format!(
                    "condition {} is declared twice",
                    c.name
                )));
            }
            declared.push(c.name);
            let mut refs = Vec::new();
            c.value.references(&mut refs);
            for r in refs {
                if !self.parameters.iter().any(|p| p.name == r) {
                    problems.push(TemplateError(format!(
                        "condition {} references {r:?}, which is not a parameter",
                        c.name
                    )));
                }
            }
        }
        let mut used = Vec::new();
        for r in &self.resources {
            r.properties
                .iter()
                .for_each(|(_, v)| v.conditions_used(&mut used));
        }
        self.outputs
            .iter()
            .for_each(|o| o.value.conditions_used(&mut used));
        for name in used {
            if !declared.contains(&name) {
                problems.push(TemplateError(format!(
                    "Fn::If uses unknown condition {name:?}"
                )));
            }
        }
        problems
    }
}
