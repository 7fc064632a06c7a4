"""CloudWatch Logs extracts embedded-metric-format (EMF) log events into CloudWatch metrics.

Amazon CloudWatch User Guide, "Specification: Embedded metric format": a log event that is a
JSON object with an `_aws` member (`Timestamp` in epoch milliseconds, `CloudWatchMetrics`: a
list of directives, each a `Namespace`, `Dimensions` as a list of dimension-name sets, and
`Metrics` as `{Name, Unit?}`) becomes metric data, with no PutMetricData call: each metric's
value (a number, or a list of numbers) and each dimension's value are root members of the
object, and a datum is recorded for every dimension set of the directive. Lambda sends a
function's stdout to CloudWatch Logs, so this is how the activator's counts reach CloudWatch.
moto stores log events and never extracts them: here every PutLogEvents (the Lambda executor's
included) records the EMF documents it holds in moto's CloudWatch, as AWS does.
"""
from __future__ import annotations

import datetime
import json
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.logs.models import LogsBackend

_moto_put_log_events = LogsBackend.put_log_events


def emf_metric_data(message: str) -> list[tuple[str, dict[str, Any]]]:
    """(namespace, PutMetricData datum) for every metric of an EMF document; none for a log
    event that is not one (the specification's rejections: no `_aws`, a metric without its
    value, a dimension without its value)."""
    try:
        doc = json.loads(message)
    except ValueError:
        return []
    meta = doc.get("_aws") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("CloudWatchMetrics"), list):
        return []
    # UTC without a zone: how moto keeps every metric timestamp (it compares them).
    timestamp = datetime.datetime.fromtimestamp(int(meta.get("Timestamp", 0)) / 1000, datetime.timezone.utc).replace(tzinfo=None)
    out = []
    for directive in meta["CloudWatchMetrics"]:
        namespace = directive.get("Namespace")
        for names in directive.get("Dimensions") or [[]]:
            if not namespace or any(not isinstance(doc.get(n), str) for n in names):
                continue
            dimensions = [{"Name": n, "Value": doc[n]} for n in names]
            for metric in directive.get("Metrics", []):
                value = doc.get(metric.get("Name"))
                values = value if isinstance(value, list) else [value]
                if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                    continue
                datum = {"MetricName": metric["Name"], "Dimensions": dimensions, "Timestamp": timestamp,
                         "Values": [float(v) for v in values]}
                if metric.get("Unit"):
                    datum["Unit"] = metric["Unit"]
                out.append((namespace, datum))
    return out


def _put_log_events(self: LogsBackend, log_group_name: str, log_stream_name: str,
                    log_events: list[dict[str, Any]]) -> Any:
    result = _moto_put_log_events(self, log_group_name, log_stream_name, log_events)
    cloudwatch = cloudwatch_backends[self.account_id][self.region_name]
    for event in log_events:
        for namespace, datum in emf_metric_data(str(event.get("message", ""))):
            cloudwatch.put_metric_data(namespace, [datum])
    return result


LogsBackend.put_log_events = _put_log_events
