"""CloudFormation creates AWS::IoT::TopicRule.

AWS CloudFormation User Guide, "AWS::IoT::TopicRule": the stack's topic rule exists in AWS
IoT (GetTopicRule, Enable/DisableTopicRule). moto's CloudFormation skips the type, so the rule
that `destroy` turns off would never exist.
"""
from __future__ import annotations

from typing import Any

# =============================================================================================
# Destroy and stack protection (issue 7, items 13 and 18).
#
# What `jitr-infra destroy` and the protected `prod` stage rely on, where moto differs from AWS:
# the registration topic rule exists in CloudFormation, a function whose reserved concurrency is
# 0 is throttled, a failed resource deletion leaves the stack DELETE_FAILED, termination
# protection refuses DeleteStack, and a stack policy denies updates.
# =============================================================================================

from moto.awslambda.exceptions import LambdaClientError  # noqa: E402
from moto.cloudformation.exceptions import ValidationError  # noqa: E402
from moto.core.common_models import CloudFormationModel  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.iot.models import iot_backends  # noqa: E402


# ---------------------------------------------------------------------------------------------
# AWS::IoT::TopicRule. moto's CloudFormation skips the type (it logs "No Moto CloudFormation
# support"), so a stack's topic rule never exists in moto's IoT backend, although that backend has
# topic rules. Here CloudFormation creates, replaces (a new RuleName) or updates (ReplaceTopicRule)
# and deletes it in the IoT backend, as AWS does (AWS::IoT::TopicRule in the CloudFormation
# template reference: Ref is the rule name, Fn::GetAtt Arn its ARN; RuleName changes replace it).
# ---------------------------------------------------------------------------------------------


def _api_shape(value: Any) -> Any:
    """A TopicRulePayload's actions as the IoT API spells them: CloudFormation's property names
    are the API's member names with a capital first letter (Lambda.FunctionArn ->
    lambda.functionArn, CloudwatchLogs.LogGroupName -> cloudwatchLogs.logGroupName)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _api_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_shape(v) for v in value]
    return value


def _rule_arguments(properties: dict[str, Any]) -> dict[str, Any]:
    payload = properties.get("TopicRulePayload", {})
    return {
        "sql": payload.get("Sql", ""),
        "description": payload.get("Description", ""),
        "rule_disabled": bool(payload.get("RuleDisabled", False)),
        "actions": _api_shape(payload.get("Actions", [])),
        "error_action": _api_shape(payload.get("ErrorAction", {})),
        "aws_iot_sql_version": payload.get("AwsIotSqlVersion", "2016-03-23"),
    }


class _CfnTopicRule(CloudFormationModel):
    # moto's model metaclass files every model under the service its module names.
    __module__ = "moto.iot.jitr_topic_rule"

    def __init__(self, account_id: str, region_name: str, rule_name: str):
        self.account_id = account_id
        self.region_name = region_name
        self.rule_name = rule_name

    @property
    def physical_resource_id(self) -> str:
        return self.rule_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "RuleName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IoT::TopicRule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name != "Arn":
            raise UnformattedGetAttTemplateException()
        backend = iot_backends[self.account_id][self.region_name]
        return backend.rules[self.rule_name].arn

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _CfnTopicRule:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("RuleName", resource_name)
        iot_backends[account_id][region_name].create_topic_rule(name, **_rule_arguments(properties))
        return cls(account_id, region_name, name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls, original_resource: _CfnTopicRule, new_resource_name: str, cloudformation_json: Any,
        account_id: str, region_name: str,
    ) -> _CfnTopicRule:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("RuleName", new_resource_name)
        backend = iot_backends[account_id][region_name]
        if name != original_resource.rule_name:  # a replacement: the new rule, then the old goes
            backend.create_topic_rule(name, **_rule_arguments(properties))
            original_resource.delete(account_id, region_name)
            return cls(account_id, region_name, name)
        backend.replace_topic_rule(name, **_rule_arguments(properties))
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        properties = cloudformation_json.get("Properties", {})
        cls(account_id, region_name, properties.get("RuleName", resource_name)).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iot_backends[account_id][region_name]
        if self.rule_name in backend.rules:  # already gone: CloudFormation skips it too
            backend.delete_topic_rule(self.rule_name)
