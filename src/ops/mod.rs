//! Operating a deployed stage: `status` (the front door at a glance) and `redrive` (the
//! failure queue's events through the activator again, then a sweep). Both read the stack as
//! deployed, not the stage file: what runs is what the function's configuration says.

pub mod redrive;
pub mod revoke;
pub mod revoke_find;
pub mod status;
pub mod status_text;

use crate::aws::Clients;
use crate::constructs::{self, Names};
use crate::deploy::{aws_error, stack};
use crate::error::Error;
use crate::stage::Stage;
use std::collections::BTreeMap;

/// What `status` and `redrive` need of the deployed stack, read once.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub stage: String,
    pub stack_name: String,
    pub region: String,
    /// Every alarm the stack names starts with this (`Names::alarm_prefix`).
    pub alarm_prefix: String,
    /// The registered CA's AWS IoT id (the stack's `CaCertificateId` output, else the
    /// activator's configuration).
    pub ca_certificate_id: Option<String>,
    /// Every CA the activator serves (its `JITR_CA_CERTIFICATE_ID` list), the one above
    /// first: a stage rotating its CA has several.
    pub ca_certificate_ids: Vec<String>,
    pub rule_name: Option<String>,
    pub activator_function: String,
    pub failure_queue_url: Option<String>,
    /// Alarms the stack declares (AWS::CloudWatch::Alarm resources' names).
    pub stack_alarms: Vec<String>,
    pub function: FunctionSettings,
}

/// The activator as deployed: its timeout, environment and reserved concurrency.
#[derive(Debug, Clone, Default)]
pub struct FunctionSettings {
    pub timeout_seconds: u32,
    pub environment: BTreeMap<String, String>,
    /// `None`: no reservation (the function draws on the account's unreserved pool).
    pub reserved_concurrency: Option<u32>,
}

impl FunctionSettings {
    /// A variable of the function's environment (empty counts as unset).
    pub fn env(&self, name: &str) -> Option<String> {
        self.environment
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }
}

/// Reads the deployed stack of `stage`: its resources and outputs, and the activator's
/// configuration. `what` names the command for the error when there is no stack.
pub async fn deployed(
    clients: &Clients,
    stage: &Stage,
    what: &'static str,
) -> Result<Deployed, Error> {
    let name = stage.stack_name.as_str();
    let Some(st) = stack::describe(clients, name).await? else {
        return Err(Error::NoStack {
            stack: name.to_string(),
            region: clients.region.clone(),
            stage: stage.name.clone(),
            what,
        });
    };
    let out = clients
        .cfn
        .describe_stack_resources()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| aws_error("DescribeStackResources", &e))?;
    let resources = out.stack_resources();
    let physical = |id: crate::cfn::LogicalId| {
        resources
            .iter()
            .find(|r| r.logical_resource_id() == Some(id.as_str()))
            .and_then(|r| r.physical_resource_id())
            .filter(|p| !p.is_empty())
            .map(str::to_string)
    };
    let stack_alarms = resources
        .iter()
        .filter(|r| r.resource_type() == Some("AWS::CloudWatch::Alarm"))
        .filter_map(|r| r.physical_resource_id().filter(|p| !p.is_empty()))
        .map(str::to_string)
        .collect();
    let activator_function =
        physical(constructs::ACTIVATOR_FUNCTION).ok_or_else(|| Error::Deployed {
            stack: name.to_string(),
            problem: format!(
                "no activator function ({}) in the stack",
                constructs::ACTIVATOR_FUNCTION.as_str()
            ),
        })?;
    let function = function_settings(clients, &activator_function).await?;
    let output = st
        .outputs()
        .iter()
        .find(|o| o.output_key() == Some("CaCertificateId"))
        .and_then(|o| o.output_value())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let (ca_certificate_id, ca_certificate_ids) = ca_ids(output, &function);
    Ok(Deployed {
        stage: stage.name.clone(),
        stack_name: name.to_string(),
        region: clients.region.clone(),
        alarm_prefix: Names::new(name).alarm_prefix,
        ca_certificate_id,
        ca_certificate_ids,
        rule_name: physical(constructs::REGISTRATION_RULE),
        activator_function,
        failure_queue_url: physical(constructs::ACTIVATOR_FAILURE_QUEUE),
        stack_alarms,
        function,
    })
}

/// The CA `status` reports first (the `CaCertificateId` output, the CA named `default`; else
/// the activator's first) and every CA the activator serves (`JITR_CA_CERTIFICATE_ID` lists
/// them all), that one first.
fn ca_ids(output: Option<String>, function: &FunctionSettings) -> (Option<String>, Vec<String>) {
    let listed: Vec<String> = function
        .env(jitr_contract::activator::ENV_CA_CERTIFICATE_ID)
        .map(|ids| ids.split(',').map(|id| id.trim().to_string()).collect())
        .unwrap_or_default();
    let first = output.or_else(|| listed.first().cloned());
    let all = first
        .iter()
        .chain(listed.iter().filter(|id| Some(*id) != first.as_ref()))
        .cloned()
        .collect();
    (first, all)
}

/// The activator's timeout and environment (GetFunctionConfiguration) and its reserved
/// concurrency (GetFunctionConcurrency).
async fn function_settings(clients: &Clients, function: &str) -> Result<FunctionSettings, Error> {
    let conf = clients
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .map_err(|e| aws_error("lambda:GetFunctionConfiguration", &e))?;
    let environment = conf
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let reserved = clients
        .lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .map_err(|e| aws_error("lambda:GetFunctionConcurrency", &e))?;
    Ok(FunctionSettings {
        timeout_seconds: conf.timeout().unwrap_or(3).max(1) as u32,
        environment,
        reserved_concurrency: reserved
            .reserved_concurrent_executions()
            .map(|n| n.max(0) as u32),
    })
}
