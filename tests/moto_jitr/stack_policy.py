"""Stack policies are enforced on change-set execution.

AWS CloudFormation User Guide, "Prevent updates to stack resources": a stack policy is
evaluated on every update; Update:Modify, Update:Replace and Update:Delete (Update:* for all)
on a resource the policy denies fail the update. moto stores SetStackPolicy's body and
enforces nothing.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ._base import _resource_event, CloudFormationBackend, Event, Stack, _say  # noqa: F401

# ---------------------------------------------------------------------------------------------
# Stack policies. moto stores SetStackPolicy's body and enforces nothing. AWS evaluates the
# policy on every update ("Prevent updates to stack resources" in the CloudFormation user guide):
# once a policy is set, an update action not explicitly allowed is denied and an explicit Deny
# wins; Resource / NotResource name `LogicalResourceId/<id>` (with * wildcards), Action /
# NotAction the update actions Update:Modify, Update:Replace, Update:Delete (Update:* for all),
# and a Condition may name ResourceType. A denied update fails that resource (UPDATE_FAILED
# "Action denied by stack policy: Statement [#n] does not allow [Update:Delete] for resource
# [LogicalResourceId/X];") and rolls the stack back; nothing is changed.
#
# Here a change set's UPDATE is checked before it is applied: a resource missing from the new
# template is Update:Delete, a changed one Update:Modify. Which property changes replace a
# resource is not modelled (moto has no table of them), and a custom resource's replacement is
# decided by its provider's answer, which CloudFormation sees only afterwards.
# ---------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _wildcard(patterns: list[str], text: str) -> bool:
    return any(re.fullmatch(".*".join(map(re.escape, p.split("*"))), text) for p in patterns)


def _statement_applies(statement: dict[str, Any], action: str, logical_id: str, resource_type: str) -> bool:
    if "Action" in statement:
        if not _wildcard(_as_list(statement["Action"]), action):
            return False
    elif _wildcard(_as_list(statement.get("NotAction")), action):
        return False
    resource = f"LogicalResourceId/{logical_id}"
    if "Resource" in statement:
        if not _wildcard(_as_list(statement["Resource"]), resource):
            return False
    elif _wildcard(_as_list(statement.get("NotResource")), resource):
        return False
    for operator, condition in (statement.get("Condition") or {}).items():
        types = _as_list(condition.get("ResourceType"))
        if operator == "StringEquals" and resource_type not in types:
            return False
        if operator == "StringLike" and not _wildcard(types, resource_type):
            return False
    return True


def _policy_verdict(policy: dict[str, Any], action: str, logical_id: str, resource_type: str) -> str | None:
    """None when allowed, else the reason CloudFormation gives."""
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for number, statement in enumerate(statements, 1):
        if not _statement_applies(statement, action, logical_id, resource_type):
            continue
        if statement.get("Effect") == "Deny":
            return (
                f"Action denied by stack policy: Statement [#{number}] does not allow [{action}] "
                f"for resource [LogicalResourceId/{logical_id}];"
            )
        allowed = True
    if allowed:
        return None
    # AWS documents that this is denied; the exact wording of this case is not documented.
    return f"Action denied by stack policy: no statement allows [{action}] for resource [LogicalResourceId/{logical_id}];"


def _policy_denial(stack: Stack, new_template: dict[str, Any]) -> tuple[str, str, str, str] | None:
    if not stack.policy:
        return None
    policy = json.loads(stack.policy)
    old = stack.template_dict.get("Resources", {})
    new = new_template.get("Resources", {})
    for logical_id, resource in old.items():
        if logical_id not in new:
            action = "Update:Delete"
        elif new[logical_id] != resource:
            action = "Update:Modify"
        else:
            continue
        resource_type = resource.get("Type", "")
        reason = _policy_verdict(policy, action, logical_id, resource_type)
        if reason is not None:
            physical = stack.resource_map._parsed_resources.get(logical_id)
            return logical_id, resource_type, str(getattr(physical, "physical_resource_id", "") or ""), reason
    return None


_execute_change_set_without_policy = CloudFormationBackend.execute_change_set


def _execute_change_set_with_policy(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = self.change_sets.get(change_set_name) or next(
        (cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None
    )
    if change_set is not None and change_set.change_set_type == "UPDATE":
        stack = self.stacks[change_set.stack_id]
        denial = _policy_denial(stack, change_set.template_dict)
        if denial is not None:
            logical_id, resource_type, physical_id, reason = denial
            _say("cloudformation", f"{stack.name}: {logical_id} UPDATE_FAILED: {reason}")
            stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
            _resource_event(stack, logical_id, resource_type, physical_id, "UPDATE_FAILED", reason)
            stack._add_stack_event(
                "UPDATE_ROLLBACK_IN_PROGRESS",
                resource_status_reason=f"The following resource(s) failed to update: [{logical_id}]. ",
            )
            stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
            stack.status = "UPDATE_ROLLBACK_COMPLETE"
            change_set.execution_status = "EXECUTE_FAILED"
            return
    _execute_change_set_without_policy(self, change_set_name, stack_name)


CloudFormationBackend.execute_change_set = _execute_change_set_with_policy
