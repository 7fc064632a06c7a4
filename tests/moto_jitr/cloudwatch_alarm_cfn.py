"""CloudFormation creates AWS::CloudWatch::Alarm.

AWS CloudFormation User Guide, "AWS::CloudWatch::Alarm": the stack's alarms exist in
CloudWatch (DescribeAlarms, SetAlarmState), named by AlarmName (Ref is the name, Fn::GetAtt
Arn its ARN; a new AlarmName replaces the alarm, other changes update it in place, as
PutMetricAlarm does). moto 5.2's CloudFormation has no model for the type and skips it
silently (`moto/cloudformation/parsing.py::parse_resource` warns and returns None), so a
stack's alarms would never exist and `jitr-infra status` could never read their states.

Here CloudFormation creates, updates and deletes them through moto's cloudwatch backend
(`put_metric_alarm`, `delete_alarms`): single-metric alarms (Namespace, MetricName,
Dimensions, Statistic, Period) and alarms on queries (`Metrics`: metric math or a Metrics
Insights expression, or a MetricStat), with their actions and TreatMissingData.
"""
from __future__ import annotations

from typing import Any

from moto.cloudwatch.models import (  # noqa: E402
    Dimension,
    Metric,
    MetricDataQuery,
    MetricStat,
    cloudwatch_backends,
)
from moto.core.common_models import CloudFormationModel  # noqa: E402


def _number(value: Any) -> Any:
    """CloudFormation passes template numbers through as they are written (int, or a string
    once a Ref or a parameter is involved); PutMetricAlarm takes numbers."""
    if isinstance(value, str):
        return float(value) if "." in value else int(value)
    return value


def _dimensions(items: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [{"Name": d["Name"], "Value": str(d["Value"])} for d in items or []]


def _queries(items: list[dict[str, Any]] | None) -> list[MetricDataQuery] | None:
    if not items:
        return None
    queries = []
    for q in items:
        stat = None
        if "MetricStat" in q:
            m = q["MetricStat"]["Metric"]
            dims = [Dimension(d["Name"], str(d["Value"])) for d in m.get("Dimensions", [])]
            stat = MetricStat(
                Metric(m["MetricName"], m["Namespace"], dims),
                q["MetricStat"]["Period"],
                q["MetricStat"]["Stat"],
                q["MetricStat"].get("Unit"),
            )
        queries.append(MetricDataQuery(
            query_id=q["Id"],
            label=q.get("Label"),
            period=q.get("Period"),
            return_data=q.get("ReturnData"),
            expression=q.get("Expression"),
            metric_stat=stat,
        ))
    return queries


def _put(account_id: str, region_name: str, name: str, p: dict[str, Any]) -> None:
    cloudwatch_backends[account_id][region_name].put_metric_alarm(
        name=name,
        namespace=p.get("Namespace"),
        metric_name=p.get("MetricName"),
        comparison_operator=p["ComparisonOperator"],
        evaluation_periods=_number(p["EvaluationPeriods"]),
        period=_number(p.get("Period")),
        threshold=_number(p.get("Threshold")),
        statistic=p.get("Statistic"),
        description=p.get("AlarmDescription"),
        dimensions=_dimensions(p.get("Dimensions")),
        alarm_actions=list(p.get("AlarmActions", [])),
        metric_data_queries=_queries(p.get("Metrics")),
        datapoints_to_alarm=_number(p.get("DatapointsToAlarm")),
        extended_statistic=p.get("ExtendedStatistic"),
        ok_actions=list(p.get("OKActions", [])),
        insufficient_data_actions=list(p.get("InsufficientDataActions", [])),
        unit=p.get("Unit"),
        actions_enabled=p.get("ActionsEnabled", True) not in (False, "false"),
        treat_missing_data=p.get("TreatMissingData"),
        threshold_metric_id=p.get("ThresholdMetricId"),
    )


class _CfnAlarm(CloudFormationModel):
    # moto's model metaclass files every model under the service its module names.
    __module__ = "moto.cloudwatch.jitr_alarm"

    def __init__(self, account_id: str, region_name: str, name: str):
        self.account_id = account_id
        self.region_name = region_name
        self.name = name

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name != "Arn":
            raise UnformattedGetAttTemplateException()
        return cloudwatch_backends[self.account_id][self.region_name].alarms[self.name].alarm_arn

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _CfnAlarm:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("AlarmName", resource_name)
        _put(account_id, region_name, name, properties)
        return cls(account_id, region_name, name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls, original_resource: _CfnAlarm, new_resource_name: str, cloudformation_json: Any,
        account_id: str, region_name: str,
    ) -> _CfnAlarm:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("AlarmName", new_resource_name)
        _put(account_id, region_name, name, properties)
        if name != original_resource.name:  # a replacement: the new alarm, then the old goes
            original_resource.delete(account_id, region_name)
            return cls(account_id, region_name, name)
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        properties = cloudformation_json.get("Properties", {})
        cls(account_id, region_name, properties.get("AlarmName", resource_name)).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])
