"""A failed resource deletion leaves the stack DELETE_FAILED; termination protection.

AWS CloudFormation User Guide, "Delete a stack from the CloudFormation console" and the stack
status codes: DeleteStack deletes what it can and leaves the stack DELETE_FAILED with the
failed resource's event and reason. "Protect a CloudFormation stack from being deleted": with
termination protection DeleteStack fails with a ValidationError (API Reference,
"UpdateTerminationProtection"). moto drops the failure and the flag.
"""
from __future__ import annotations

from typing import Any

from ._base import _resource_event, CloudFormationBackend, CloudFormationResponse, Event, OutputMap, ResourceMap, _say  # noqa: F401
from moto.cloudformation.exceptions import ValidationError
from moto.core.responses import ActionResult

# ---------------------------------------------------------------------------------------------
# A resource that fails to delete. CloudFormation accepts DeleteStack, deletes what it can and
# leaves the stack DELETE_FAILED with the resource's DELETE_FAILED event and reason (e.g. an
# AWS::IoT::Policy still attached to a certificate: DeleteConflictException). moto lets the
# resource's exception escape from DeleteStack itself, as an API error, and drops the stack.
#
# Termination protection. AWS refuses DeleteStack on a protected stack ("ValidationError: Stack
# [name] cannot be deleted while TerminationProtection is enabled"; CloudFormation user guide,
# "Protect CloudFormation stacks from being deleted") and has UpdateTerminationProtection to turn
# it on and off. moto stores the flag given to CreateStack but neither enforces it nor implements
# UpdateTerminationProtection.
# ---------------------------------------------------------------------------------------------

_moto_delete_resource = ResourceMap._delete_resource


def _delete_resource_naming_it(self: ResourceMap, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
    try:
        _moto_delete_resource(self, parsed_resource, resource_json)
    except Exception as e:
        # Remembered on the exception: moto's loop re-raises the last one without saying whose.
        e._jitr_failed = (  # type: ignore[attr-defined]
            getattr(parsed_resource, "logical_resource_id", "?"),
            resource_json.get("Type", ""),
            str(getattr(parsed_resource, "physical_resource_id", "") or ""),
        )
        raise


ResourceMap._delete_resource = _delete_resource_naming_it


def _error_text(e: Exception) -> str:
    return str(getattr(e, "message", "") or getattr(e, "description", "") or e)


_delete_stack_without_protection = CloudFormationBackend.delete_stack


def _delete_stack_protected(self: CloudFormationBackend, name_or_stack_id: str) -> None:
    stack = self.stacks.get(name_or_stack_id)
    if stack is None:  # by name: moto comes back here with the id
        return _delete_stack_without_protection(self, name_or_stack_id)
    if stack.enable_termination_protection:
        raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled")
    try:
        _delete_stack_without_protection(self, name_or_stack_id)
    except Exception as e:
        failed = getattr(e, "_jitr_failed", None)
        if failed is None:
            raise
        logical_id, resource_type, physical_id = failed
        reason = _error_text(e)
        _say("cloudformation", f"{stack.name}: {logical_id} DELETE_FAILED: {reason}")
        self.stacks[stack.stack_id] = stack
        _resource_event(stack, logical_id, resource_type, physical_id, "DELETE_FAILED", reason)
        stack.status = "DELETE_FAILED"
        stack._add_stack_event(
            "DELETE_FAILED", resource_status_reason=f"The following resource(s) failed to delete: [{logical_id}]. "
        )
        # What was deleted stays deleted: moto would create it again on the next describe.
        resources = stack.resource_map
        resources._resource_json_map = {
            k: v for k, v in resources._resource_json_map.items() if k in resources._parsed_resources
        }
        stack.output_map = OutputMap(resources, {}, stack.stack_id)


CloudFormationBackend.delete_stack = _delete_stack_protected


def _update_termination_protection(self: CloudFormationResponse) -> ActionResult:
    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    if stack.status in ("DELETE_IN_PROGRESS", "DELETE_COMPLETE"):
        raise ValidationError(message=f"Stack [{stack.name}] is in {stack.status} state")
    stack.enable_termination_protection = str(self._get_param("EnableTerminationProtection")).lower() == "true"
    return ActionResult({"StackId": stack.stack_id})


CloudFormationResponse.update_termination_protection = _update_termination_protection
