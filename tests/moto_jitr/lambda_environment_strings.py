"""A function's environment variables are strings, also when CloudFormation fills one with the
`Ref` of a Number parameter.

AWS CloudFormation User Guide, "Parameters" (the Number type): CloudFormation validates the
value as a number, but "when you use the parameter elsewhere in your template (for example, by
using the Ref intrinsic function), the parameter value becomes a string"; and the Lambda API
reference (Environment.Variables) maps names to strings. moto resolves a Number parameter to a
Python int and stores it in the function's environment as it is: GetFunctionConfiguration then
answers a JSON number, which the AWS SDKs refuse to parse ("unhandled error"), and the
function's process would get a non-string variable. Our activator reads its reserved
concurrency this way (`JITR_CONCURRENCY` = `Ref ActivatorReservedConcurrency`).

Here the environment a CloudFormation template gives a function is turned into strings before
moto's model takes it, on create and on update.
"""
from __future__ import annotations

from typing import Any

from moto.awslambda.models import LambdaFunction  # noqa: E402


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _stringify(cloudformation_json: dict[str, Any]) -> None:
    variables = cloudformation_json.get("Properties", {}).get("Environment", {}).get("Variables")
    if isinstance(variables, dict):
        for name, value in list(variables.items()):
            variables[name] = _as_text(value)


_moto_create = LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
_moto_update = LambdaFunction.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _create(
    cls: type[LambdaFunction], resource_name: str, cloudformation_json: dict[str, Any],
    account_id: str, region_name: str, **kwargs: Any,
) -> LambdaFunction:
    _stringify(cloudformation_json)
    return _moto_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


@classmethod  # type: ignore[misc]
def _update(
    cls: type[LambdaFunction], original_resource: LambdaFunction, new_resource_name: str,
    cloudformation_json: dict[str, Any], account_id: str, region_name: str,
) -> LambdaFunction:
    _stringify(cloudformation_json)
    return _moto_update(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)


LambdaFunction.create_from_cloudformation_json = _create
LambdaFunction.update_from_cloudformation_json = _update
