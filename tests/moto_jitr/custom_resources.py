"""CloudFormation custom resources as CloudFormation runs them; change-set stacks' Outputs.

CloudFormation sends a custom resource's provider Create, Update and Delete requests and
waits for the answer at the ResponseURL before it goes on, so `Fn::GetAtt` on the resource
resolves for its dependents; a FAILED answer fails the operation and rolls the stack back, and
the answered PhysicalResourceId is the resource's id (AWS CloudFormation User Guide, "Custom
resources", "Custom resource request objects" and "Custom resource response objects"). moto
only sends Create, in a background thread, and never looks at FAILED answers. A stack created
or updated through a change set also reports its Outputs here (CloudFormation API Reference,
"DescribeStacks": Outputs), which moto builds only from the template the stack was created
with.
"""
from __future__ import annotations

import itertools
import json
import threading
import uuid
from typing import Any
from urllib.parse import quote

from ._base import _resource_event, CloudFormationBackend, CloudFormationResponse, CustomModel, ENDPOINT, Event, LambdaFunction, OutputMap, ResourceMap, Stack, _say, cloudformation_backends, lambda_backends  # noqa: F401
from .lambda_executor import _Result, _error_body, _is_ours, run_function  # noqa: F401

# ---------------------------------------------------------------------------------------------
# CloudFormation custom resources.
#
# moto's CustomModel invokes the ServiceToken function in a background thread on Create and
# marks the resource created when a SUCCESS answer arrives; the rest of the stack is created
# meanwhile, so a `Fn::GetAtt` on the custom resource resolves to None for the resources that
# depend on it (our activator's JITR_CA_CERTIFICATE_ID), a FAILED answer leaves the stack
# CREATE_IN_PROGRESS forever, and Update and Delete are never sent.
#
# Here a stack operation reaching a custom resource of a function we run invokes the provider
# and waits for its answer, as CloudFormation does. The answer arrives on another request
# thread (the provider PUTs it to the ResponseURL, this server); that thread only hands the
# answer to the waiting operation, which applies it. A FAILED answer (or a provider that
# returns or dies without answering) raises _CustomResourceFailed out of moto's resource loop,
# and the wrappers of the four stack operations below turn it into the stack status
# CloudFormation would report.
# ---------------------------------------------------------------------------------------------

# After the provider returned without answering, how long to still wait for its PUT.
ANSWER_GRACE_S = 2.0


class _CustomResourceFailed(BaseException):
    """A custom resource's provider answered FAILED, or never answered.

    A BaseException on purpose: moto's resource loops catch Exception and retry the resource
    up to five times (dependency errors), which would send the provider the same request
    again; this must stop the operation at once, as CloudFormation does.
    """

    def __init__(self, logical_id: str, resource_type: str, physical_id: str, reason: str):
        super().__init__(reason)
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.physical_id = physical_id
        self.reason = reason


class _Waiter:
    """One outstanding custom resource request: its answer, or the provider's end."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.answer: dict[str, Any] | None = None
        self.finished: _Result | None = None

    def answered(self, answer: dict[str, Any]) -> None:
        with self.cond:
            self.answer = answer
            self.cond.notify_all()

    def provider_finished(self, result: _Result) -> None:
        with self.cond:
            self.finished = result
            self.cond.notify_all()

    def wait(self) -> dict[str, Any] | None:
        with self.cond:
            # Bounded: the provider's own timeout ends it, and then finished is set.
            self.cond.wait_for(lambda: self.answer is not None or self.finished is not None)
            if self.answer is None:
                self.cond.wait_for(lambda: self.answer is not None, ANSWER_GRACE_S)
            return self.answer


_waiters: dict[str, _Waiter] = {}  # by RequestId, while the operation waits
_sent: set[str] = set()  # every RequestId we sent, to recognize late answers

# How many of the wrapped stack operations below this thread is in. Outside them (moto
# resolving a resource lazily, say) a failure must be an ordinary exception, which moto turns
# into an error response, not a BaseException that would kill the request thread.
_in_operation = threading.local()


class _Operation:
    def __enter__(self) -> None:
        _in_operation.depth = getattr(_in_operation, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        _in_operation.depth -= 1


def _as_strings(value: Any) -> Any:
    """Custom resource properties as CloudFormation sends them: every scalar a string."""
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value
_stack_operation_sequence = itertools.count()


def _response_url(region: str, stack_id: str) -> str:
    # The path moto routes to CloudFormationResponse.cfnresponse (see moto's
    # get_service_from_path); the query is only informative, the answer names its stack.
    return f"{ENDPOINT}/cloudformation_{region}/cfnresponse?stack={quote(stack_id, safe='')}"


def _request(
    fn: LambdaFunction,
    request_type: str,
    context: dict[str, Any],
    physical_id: str | None,
    properties: dict[str, Any],
    old_properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sends one custom resource request to its provider and returns the SUCCESS answer."""
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": context["service_token"],
        "ResponseURL": _response_url(context["region"], context["stack_id"]),
        "StackId": context["stack_id"],
        "RequestId": request_id,
        "LogicalResourceId": context["logical_id"],
        "ResourceType": context["resource_type"],
        "ResourceProperties": _as_strings(properties),
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        event["OldResourceProperties"] = _as_strings(old_properties)
    waiter = _waiters[request_id] = _Waiter()
    _sent.add(request_id)

    def run() -> None:
        try:
            waiter.provider_finished(run_function(fn, json.dumps(event).encode()))
        except Exception as e:
            rid = str(uuid.uuid4())
            waiter.provider_finished(_Result(rid, _error_body("Moto.Error", repr(e)), True, [], 0))

    # The provider runs on its own thread so that its answer, not its return, ends the wait
    # (CloudFormation does not wait for the function either).
    threading.Thread(target=run, name=f"cfn-{context['logical_id']}", daemon=True).start()
    try:
        answer = waiter.wait()
    finally:
        _waiters.pop(request_id, None)
    failed_id = physical_id or context["logical_id"]

    def fail(reason: str) -> BaseException:
        if getattr(_in_operation, "depth", 0) == 0:
            return RuntimeError(f"custom resource {context['logical_id']}: {reason}")
        return _CustomResourceFailed(context["logical_id"], context["resource_type"], failed_id, reason)

    if answer is None:
        outcome = waiter.finished
        detail = f": {outcome.error_summary()}" if outcome is not None and outcome.error else ""
        raise fail(
            f"{request_type} request to {fn.function_name} ended without a response to the "
            f"ResponseURL{detail}. See the function's log in moto's stderr."
        )
    if answer.get("Status") != "SUCCESS":
        raise fail(str(answer.get("Reason") or "the provider answered FAILED without a Reason"))
    if not answer.get("PhysicalResourceId"):
        raise fail("Invalid PhysicalResourceId")
    return answer


def _context(cr: CustomModel) -> dict[str, Any]:
    """What Update and Delete need to know about a custom resource we created. AttributeError
    for the custom resources moto created itself (providers we do not run): moto then handles
    them its own way."""
    return cr._jitr_context  # type: ignore[attr-defined]


def _provider(context: dict[str, Any]) -> LambdaFunction | None:
    backend = lambda_backends[context["account_id"]][context["region"]]
    try:
        return backend.get_function(context["service_token"])
    except Exception:
        return None


_moto_custom_create = CustomModel.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _custom_create(
    cls: type[CustomModel],
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> CustomModel:
    properties = cloudformation_json["Properties"]
    service_token = properties["ServiceToken"]
    fn = lambda_backends[account_id][region_name].get_function(service_token)
    if not _is_ours(fn):
        return _moto_custom_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    context = {
        "account_id": account_id,
        "region": region_name,
        "stack_id": kwargs["StackId"],
        "logical_id": kwargs["LogicalId"],
        "resource_type": kwargs["ResourceType"],
        "service_token": service_token,
        "properties": properties,
        "sequence": next(_stack_operation_sequence),
    }
    answer = _request(fn, "Create", context, None, properties)
    custom = CustomModel(region_name, str(uuid.uuid4()), context["logical_id"], answer["PhysicalResourceId"])
    custom.set_data(answer.get("Data") or {})
    custom._jitr_context = context  # type: ignore[attr-defined]
    stack = cloudformation_backends[account_id][region_name].get_stack(context["stack_id"])
    stack.add_custom_resource(custom)
    return custom


@classmethod  # type: ignore[misc]
def _custom_update(
    cls: type[CustomModel],
    original_resource: CustomModel,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> CustomModel:
    # moto has no update for custom resources: the resource would silently vanish from the
    # stack. Without a context of ours (not our provider), keep the old resource as it was.
    try:
        old = _context(original_resource)
    except AttributeError:
        return original_resource
    properties = cloudformation_json["Properties"]
    context = dict(old, properties=properties, service_token=properties["ServiceToken"])
    fn = _provider(context)
    if fn is None:
        raise RuntimeError(f"ServiceToken {context['service_token']} is not a function")
    old_id = original_resource.resource_name
    answer = _request(fn, "Update", context, old_id, properties, old["properties"])
    custom = CustomModel(region_name, str(uuid.uuid4()), context["logical_id"], answer["PhysicalResourceId"])
    custom.set_data(answer.get("Data") or {})
    custom._jitr_context = context  # type: ignore[attr-defined]
    stack = cloudformation_backends[account_id][region_name].get_stack(context["stack_id"])
    stack.add_custom_resource(custom)
    if answer["PhysicalResourceId"] != old_id:
        # A replacement: CloudFormation deletes the old one once the update succeeded.
        stack._jitr_cleanup = getattr(stack, "_jitr_cleanup", []) + [original_resource]
    return custom


def _custom_delete(self: CustomModel, account_id: str, region_name: str) -> None:
    context = _context(self)  # AttributeError: moto's own (no-op) delete path takes over
    fn = _provider(context)
    if fn is None:
        # The provider is gone already: CloudFormation would fail the deletion; a test
        # server has nothing better to do than to let the resource go.
        _say("cloudformation", f"{context['logical_id']}: provider gone, Delete not sent")
        return
    _request(fn, "Delete", context, self.resource_name, context["properties"])


CustomModel.create_from_cloudformation_json = _custom_create
CustomModel.update_from_cloudformation_json = _custom_update
CustomModel.delete = _custom_delete


# The answer to a ResponseURL: handed to the operation waiting for it. Answers to requests we
# did not send (custom resources moto runs its own way) keep moto's handling.
_moto_process_cfn_response = CloudFormationResponse.process_cfn_response


def _process_cfn_response(self: CloudFormationResponse) -> Any:
    try:
        raw = self.body.decode("utf-8") if isinstance(self.body, bytes) else (self.body or "")
        answer = json.loads(raw)
    except ValueError:
        answer = None
    request_id = answer.get("RequestId", "") if isinstance(answer, dict) else ""
    if request_id not in _sent:
        return _moto_process_cfn_response(self)
    waiter = _waiters.get(request_id)
    if waiter is None:  # S3 would take it all the same; the operation has moved on
        _say("cloudformation", f"late answer to request {request_id} ignored: {raw[:300]}")
    else:
        waiter.answered(answer)
    return 200, {"status": 200}, ""


CloudFormationResponse.process_cfn_response = _process_cfn_response


# Deletion order: moto deletes a stack's resources in set order, retrying failures, so a
# custom resource's provider function (or its role) may be gone before the Delete request is
# sent. CloudFormation deletes dependents first; the custom resources are the dependents of
# their providers, so ours go first, newest first.
_moto_resource_map_delete = ResourceMap.delete


def _resource_map_delete(self: ResourceMap) -> None:
    ours = []
    for logical_id, resource in list(self._parsed_resources.items()):
        if isinstance(resource, CustomModel) and hasattr(resource, "_jitr_context"):
            if self._resource_json_map.get(logical_id, {}).get("DeletionPolicy") != "Retain":
                ours.append((resource._jitr_context["sequence"], logical_id, resource))
    for _, logical_id, resource in sorted(ours, key=lambda item: item[0], reverse=True):
        resource.delete(self._account_id, self._region_name)
        self._parsed_resources.pop(logical_id, None)
    _moto_resource_map_delete(self)


ResourceMap.delete = _resource_map_delete


def _failure_event(stack: Stack, failure: _CustomResourceFailed, status: str) -> None:
    _resource_event(stack, failure.logical_id, failure.resource_type, failure.physical_id,
                    status, failure.reason)


def _roll_back_creation(stack: Stack, failure: _CustomResourceFailed) -> None:
    """What CloudFormation does when a resource fails to create: delete what was created."""
    _say("cloudformation", f"{stack.name}: {failure.logical_id} CREATE_FAILED: {failure.reason}")
    _failure_event(stack, failure, "CREATE_FAILED")
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event(
        "ROLLBACK_IN_PROGRESS",
        resource_status_reason=f"The following resource(s) failed to create: [{failure.logical_id}]. "
        "Rollback requested by user.",
    )
    try:
        stack.resource_map.delete()
    except (Exception, _CustomResourceFailed) as e:
        stack.status = "ROLLBACK_FAILED"
        stack._add_stack_event("ROLLBACK_FAILED", resource_status_reason=str(e))
        return
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")
    # moto creates resources and outputs lazily, on first access: describing this stack
    # would otherwise create the rolled-back resources again. It has none, as on AWS.
    stack.resource_map._resource_json_map = {}
    stack.output_map = OutputMap(stack.resource_map, {}, stack.stack_id)


def _fail_update(stack: Stack, failure: _CustomResourceFailed) -> None:
    """A failed update. CloudFormation would also roll the updated resources back; moto's
    resources stay as they were updated, only the status says it."""
    _say("cloudformation", f"{stack.name}: {failure.logical_id} UPDATE_FAILED: {failure.reason}")
    _failure_event(stack, failure, "UPDATE_FAILED")
    stack._add_stack_event(
        "UPDATE_ROLLBACK_IN_PROGRESS",
        resource_status_reason=f"The following resource(s) failed to update: [{failure.logical_id}].",
    )
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    # Resources the update had yet to add would be created lazily on the next access: drop them.
    resources = stack.resource_map
    resources._resource_json_map = {
        k: v for k, v in resources._resource_json_map.items() if k in resources._parsed_resources
    }


def _clean_up_replaced(stack: Stack) -> None:
    """Deletes the custom resources an update replaced (new PhysicalResourceId)."""
    for replaced in getattr(stack, "_jitr_cleanup", []):
        try:
            replaced.delete(stack.account_id, stack.region_name)
        except (Exception, _CustomResourceFailed) as e:  # CloudFormation only warns, too
            _say("cloudformation", f"{stack.name}: deleting the replaced {replaced.logical_id}: {e}")
    stack._jitr_cleanup = []


_moto_create_resources = Stack.create_resources


def _create_resources(self: Stack) -> None:  # CreateStack (and nested stacks)
    try:
        with _Operation():
            _moto_create_resources(self)
    except _CustomResourceFailed as failure:
        _roll_back_creation(self, failure)


Stack.create_resources = _create_resources

_moto_stack_update = Stack.update


def _stack_update(self: Stack, *args: Any, **kwargs: Any) -> None:  # UpdateStack
    try:
        with _Operation():
            _moto_stack_update(self, *args, **kwargs)
    except _CustomResourceFailed as failure:
        _fail_update(self, failure)
        return
    _clean_up_replaced(self)


Stack.update = _stack_update

_moto_execute_change_set = CloudFormationBackend.execute_change_set


def _execute_change_set(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = self.change_sets.get(change_set_name)
    if change_set is None:
        change_set = next((cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None)
    try:
        with _Operation():
            _moto_execute_change_set(self, change_set_name, stack_name)
    except _CustomResourceFailed as failure:
        stack = self.stacks[change_set.stack_id]
        change_set.execution_status = "EXECUTE_FAILED"
        if change_set.change_set_type == "CREATE":
            stack.template = change_set.template
            _roll_back_creation(stack, failure)
        else:
            _fail_update(stack, failure)
        return
    stack = self.stacks[change_set.stack_id]
    _clean_up_replaced(stack)
    # moto keeps the output map (and description) of the template the stack was created with:
    # for a change set's stack, the empty one. Rebuild them from the template just applied.
    stack._parse_template()
    stack.output_map = stack._create_output_map()
    stack.description = stack.template_dict.get("Description")
    for export in stack.exports:
        self.exports[export.name] = export


CloudFormationBackend.execute_change_set = _execute_change_set

_moto_delete_stack = CloudFormationBackend.delete_stack


def _delete_stack(self: CloudFormationBackend, name_or_stack_id: str) -> None:  # DeleteStack
    stack = self.stacks.get(name_or_stack_id)
    if stack is None:  # by name: moto recurses with the id
        return _moto_delete_stack(self, name_or_stack_id)
    try:
        with _Operation():
            _moto_delete_stack(self, name_or_stack_id)
    except _CustomResourceFailed as failure:
        # moto has already taken the stack out of its list; a failed deletion leaves it there.
        _say("cloudformation", f"{stack.name}: {failure.logical_id} DELETE_FAILED: {failure.reason}")
        self.stacks[stack.stack_id] = stack
        _failure_event(stack, failure, "DELETE_FAILED")
        stack.status = "DELETE_FAILED"
        stack._add_stack_event(
            "DELETE_FAILED",
            resource_status_reason=f"The following resource(s) failed to delete: [{failure.logical_id}].",
        )


CloudFormationBackend.delete_stack = _delete_stack
