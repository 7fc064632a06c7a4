"""Lambda account concurrency: GetAccountSettings and the unreserved minimum.

AWS Lambda Developer Guide, "Configuring reserved concurrency" and "Lambda quotas": an account
has a concurrency limit of which part (100, or all of it when lower) stays unreserved;
PutFunctionConcurrency beyond that fails with InvalidParameterValueException, and
GetAccountSettings reports AccountLimit.ConcurrentExecutions and
UnreservedConcurrentExecutions (Lambda API Reference). moto has no GetAccountSettings and
enforces no limit; here each account and region has one (1000 unless a test sets another
through the test hook).
"""
from __future__ import annotations

import json
import uuid
from typing import Any

from ._base import LambdaFunction, lambda_backends  # noqa: F401
from .custom_resources import _CustomResourceFailed, _in_operation  # noqa: F401

# ---------------------------------------------------------------------------------------------
# Lambda account concurrency. AWS keeps part of an account's concurrency limit unreserved: 100
# units, or the whole limit when it is lower (new accounts often have 10 or 50; Lambda
# Developer Guide, "Configuring reserved concurrency": "You can reserve up to the Unreserved
# account concurrency value minus 100"). A reservation that would cut into it is refused with
# InvalidParameterValueException, "Specified ReservedConcurrentExecutions for function
# decreases account's UnreservedConcurrentExecution below its minimum value of [N]." (N = 100,
# or the limit), by PutFunctionConcurrency and by CloudFormation's AWS::Lambda::Function
# handler, which then fails the resource. GetAccountSettings (Lambda API reference) reports
# AccountLimit.ConcurrentExecutions and UnreservedConcurrentExecutions.
#
# moto has no GetAccountSettings, enforces no limit unless one global environment variable is
# set (with a fixed minimum of 100), and ignores ReservedConcurrentExecutions on a
# CloudFormation update. Here every account and region has a limit (1000 unless a test sets
# another: POST /moto-api/jitr/lambda-concurrency-limit {"account", "region", "limit"}).
# ---------------------------------------------------------------------------------------------

from moto.awslambda import urls as _lambda_urls  # noqa: E402
from moto.awslambda.exceptions import InvalidParameterValueException  # noqa: E402
from moto.awslambda.models import LambdaBackend  # noqa: E402
from moto.awslambda.responses import LambdaResponse  # noqa: E402
from moto.moto_api._internal import urls as _moto_api_urls  # noqa: E402

LAMBDA_DEFAULT_CONCURRENCY_LIMIT = 1000
_concurrency_limits: dict[tuple[str, str], int] = {}  # (account, region) -> ConcurrentExecutions


def _concurrency_limit(account_id: str, region: str) -> int:
    return _concurrency_limits.get((account_id, region), LAMBDA_DEFAULT_CONCURRENCY_LIMIT)


def _reserved_by_others(backend: LambdaBackend, function_name: str | None) -> int:
    return sum(
        int(fn.reserved_concurrency)
        for fn in backend.list_functions()
        if fn.reserved_concurrency is not None and fn.function_name != function_name
    )


def _reservation_refusal(account_id: str, region: str, function_name: str | None, wanted: Any) -> str | None:
    """AWS's message when reserving `wanted` for the function would leave too little
    unreserved; None when it fits (or when nothing is reserved)."""
    if wanted is None:
        return None
    limit = _concurrency_limit(account_id, region)
    backend = lambda_backends[account_id][region]
    kept = min(100, limit)
    if limit - _reserved_by_others(backend, function_name) - int(wanted) >= kept:
        return None
    return (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{kept}]."
    )


def _put_function_concurrency(self: LambdaBackend, function_name: str, reserved_concurrency: str) -> str:
    fn = self.get_function(function_name)
    refusal = _reservation_refusal(self.account_id, self.region_name, fn.function_name, reserved_concurrency)
    if refusal:
        raise InvalidParameterValueException(refusal)
    fn.reserved_concurrency = int(reserved_concurrency)
    return fn.reserved_concurrency


LambdaBackend.put_function_concurrency = _put_function_concurrency


def _get_account_settings(self: LambdaResponse) -> Any:
    backend = self.backend
    functions = backend.list_functions()
    limit = _concurrency_limit(backend.account_id, backend.region_name)
    code_size = sum(int(getattr(fn, "code_size", 0) or 0) for fn in functions)
    body = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - _reserved_by_others(backend, None),
        },
        "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def _account_settings_route(request: Any, full_url: str, headers: Any) -> Any:
    # Not LambdaResponse.dispatch: that finds the action by botocore's request URI, which has
    # the final slash the Rust SDK leaves out.
    response = LambdaResponse()
    response.setup_class(request, full_url, headers)
    return _get_account_settings(response)


# GET /2016-08-19/account-settings/, with or without the final slash (moto's routes become
# Flask rules, which match a trailing slash exactly).
_lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings$"] = _account_settings_route
_lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/$"] = _account_settings_route


def _set_concurrency_limit(request: Any, full_url: str, headers: Any) -> Any:
    size = int(headers.get("Content-Length") or 0)
    body = json.loads(request.environ["wsgi.input"].read(size) or b"{}")
    _concurrency_limits[(str(body["account"]), str(body["region"]))] = int(body["limit"])
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


_moto_api_urls.url_paths["{0}/moto-api/jitr/lambda-concurrency-limit"] = _set_concurrency_limit


def _reservation_failed(logical_id: str, physical_id: str, refusal: str) -> BaseException:
    """A failed AWS::Lambda::Function, worded as CloudFormation's resource handler words it."""
    reason = (
        f'Resource handler returned message: "{refusal} (Service: Lambda, Status Code: 400, '
        f'Request ID: {uuid.uuid4()})" (RequestToken: {uuid.uuid4()}, HandlerErrorCode: InvalidRequest)'
    )
    if getattr(_in_operation, "depth", 0):
        # The stack operation wrappers above turn this into CREATE_FAILED / UPDATE_FAILED.
        return _CustomResourceFailed(logical_id, "AWS::Lambda::Function", physical_id, reason)
    return ValueError(reason)


_moto_function_create_cfn = LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
_moto_function_update_cfn = LambdaFunction.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _function_create_cfn(
    cls: type[LambdaFunction],
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> LambdaFunction:
    wanted = cloudformation_json.get("Properties", {}).get("ReservedConcurrentExecutions")
    refusal = _reservation_refusal(account_id, region_name, None, wanted)
    if refusal:
        raise _reservation_failed(kwargs.get("LogicalId", resource_name), resource_name, refusal)
    return _moto_function_create_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


@classmethod  # type: ignore[misc]
def _function_update_cfn(
    cls: type[LambdaFunction],
    original_resource: LambdaFunction,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> LambdaFunction:
    wanted = cloudformation_json.get("Properties", {}).get("ReservedConcurrentExecutions")
    refusal = _reservation_refusal(account_id, region_name, original_resource.function_name, wanted)
    if refusal:
        logical_id = getattr(original_resource, "logical_resource_id", original_resource.function_name)
        raise _reservation_failed(logical_id, original_resource.function_name, refusal)
    fn = _moto_function_update_cfn(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    )
    # CloudFormation puts or deletes the function's concurrency to match the template.
    fn.reserved_concurrency = None if wanted is None else int(wanted)
    return fn


LambdaFunction.create_from_cloudformation_json = _function_create_cfn
LambdaFunction.update_from_cloudformation_json = _function_update_cfn
