"""CloudFormation operations take time (only with JITR_MOTO_CFN_SECONDS=S set; for benchmarks).

AWS CloudFormation User Guide, "Update CloudFormation stacks using change sets" and "Stack
status codes"; API Reference, "DescribeChangeSet", "ExecuteChangeSet", "DescribeStackEvents":
CloudFormation works asynchronously. CreateChangeSet answers at once and the change set reads
CREATE_PENDING / CREATE_IN_PROGRESS (execution status UNAVAILABLE, no changes yet) until it has
been computed; executing it before then fails with InvalidChangeSetStatus. CreateStack,
UpdateStack, ExecuteChangeSet and DeleteStack answer at once and the stack reads
CREATE_IN_PROGRESS / UPDATE_IN_PROGRESS / DELETE_IN_PROGRESS until the operation ends; its
events up to then are the operation's first (the stack's own *_IN_PROGRESS), the final ones
come when it ends; a stack being deleted is still described by name. Each takes from seconds to
minutes. moto does all the work inside the request, so a tool deploying many stacks at once
would be measured against a server that is never waiting, and moto (one Python process) would
be the figure.

With JITR_MOTO_CFN_SECONDS=S (a float, seconds; unset or 0: moto's immediate behaviour, and
nothing here is installed) moto still does the work at once, but each operation looks as if it
took S seconds from the request: DescribeChangeSet reads CREATE_IN_PROGRESS for S seconds after
CreateChangeSet, then its real status; DescribeStacks reads the operation's *_IN_PROGRESS status
and DescribeStackEvents stops at the operation's first event until S seconds after the request
(or until moto's work is done, when that takes longer), then the final status and events,
stamped with the time they appear. Per stack and per change set: a window is one immutable
object set in one assignment, and moto's server serves requests in threads (werkzeug,
threaded=True). Not modelled: refusing operations on a stack whose operation is still running,
and ListStacks (it reads moto's own status).
"""
from __future__ import annotations

import copy
import datetime
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from moto.cloudformation.exceptions import CloudFormationError, ValidationError

from ._base import CloudFormationBackend, Stack, utcnow

SECONDS = float(os.environ.get("JITR_MOTO_CFN_SECONDS") or 0)


@dataclass(frozen=True)
class _Window:
    deadline: float  # time.monotonic() at which the operation may be seen to have ended
    status: str  # what the stack reads meanwhile
    events: int  # events before the operation (the operation's first one is shown too)
    running: bool  # moto is still doing the work


def _open(stack: Any) -> _Window | None:
    window = getattr(stack, "_jitr_window", None)
    if window is None or (not window.running and time.monotonic() >= window.deadline):
        return None
    return window


def _shown_events(stack: Stack, window: _Window) -> list[Any]:
    events = list(stack.events)
    shown = events[: window.events]
    first = events[window.events: window.events + 1]
    if first and first[0].logical_resource_id == stack.name and first[0].resource_status == window.status:
        shown += first
    return shown


def _timed(stack: Stack | None, status: str, start: float, work: Callable[[], Any],
           created: Callable[[], Stack | None] = lambda: None) -> Any:
    """Runs moto's work for an operation on `stack` (None: the operation creates the stack
    `created` finds afterwards) and keeps its end hidden until S seconds after `start`."""
    deadline = start + SECONDS
    before = len(stack.events) if stack is not None else 0
    if stack is not None:
        stack._jitr_window = _Window(deadline, status, before, running=True)
    try:
        return work()
    finally:
        target = stack if stack is not None else created()
        if target is not None:
            # The final events happen at the deadline, as far as anyone can tell.
            at = utcnow() + datetime.timedelta(seconds=max(0.0, deadline - time.monotonic()))
            for event in list(target.events)[before + 1:]:
                event.timestamp = at
            target._jitr_window = _Window(deadline, status, before, running=False)


def _stack_by_name_or_id(backend: CloudFormationBackend, name_or_id: str) -> Stack | None:
    if name_or_id in backend.stacks:
        return backend.stacks[name_or_id]
    return next((s for s in backend.stacks.values() if s.name == name_or_id), None)


def _change_set(backend: CloudFormationBackend, name_or_id: str, stack_name: str | None) -> Any:
    if name_or_id in backend.change_sets:
        return backend.change_sets[name_or_id]
    return next(
        (cs for cs in backend.change_sets.values()
         if cs.change_set_name == name_or_id and stack_name in (None, cs.stack_name, cs.stack_id)),
        None,
    )


def _install() -> None:
    moto_create_change_set = CloudFormationBackend.create_change_set
    moto_execute_change_set = CloudFormationBackend.execute_change_set
    moto_create_stack = CloudFormationBackend.create_stack
    moto_update_stack = CloudFormationBackend.update_stack
    moto_delete_stack = CloudFormationBackend.delete_stack
    moto_describe_change_set = CloudFormationBackend.describe_change_set
    moto_describe_stacks = CloudFormationBackend.describe_stacks
    moto_describe_stack_events = CloudFormationBackend.describe_stack_events

    def create_change_set(self: CloudFormationBackend, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        change_set_id, stack_id = moto_create_change_set(self, *args, **kwargs)
        self.change_sets[change_set_id]._jitr_ready_at = start + SECONDS
        return change_set_id, stack_id

    def execute_change_set(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
        start = time.monotonic()
        change_set = _change_set(self, change_set_name, stack_name)
        if change_set is None:
            return moto_execute_change_set(self, change_set_name, stack_name)
        if start < getattr(change_set, "_jitr_ready_at", 0.0):
            raise CloudFormationError(
                "InvalidChangeSetStatus",
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current status of [CREATE_IN_PROGRESS]",
            )
        stack = self.stacks.get(change_set.stack_id)
        status = f"{change_set.change_set_type}_IN_PROGRESS"
        return _timed(stack, status, start, lambda: moto_execute_change_set(self, change_set_name, stack_name))

    def create_stack(self: CloudFormationBackend, name: str, *args: Any, **kwargs: Any) -> Stack:
        start = time.monotonic()
        return _timed(None, "CREATE_IN_PROGRESS", start, lambda: moto_create_stack(self, name, *args, **kwargs),
                      created=lambda: _stack_by_name_or_id(self, name))

    def update_stack(self: CloudFormationBackend, name: str, *args: Any, **kwargs: Any) -> Stack:
        start = time.monotonic()
        stack = _stack_by_name_or_id(self, name)
        return _timed(stack, "UPDATE_IN_PROGRESS", start, lambda: moto_update_stack(self, name, *args, **kwargs))

    def delete_stack(self: CloudFormationBackend, name_or_stack_id: str) -> None:
        start = time.monotonic()
        stack = _stack_by_name_or_id(self, name_or_stack_id)
        if stack is None:
            return moto_delete_stack(self, name_or_stack_id)
        return _timed(stack, "DELETE_IN_PROGRESS", start, lambda: moto_delete_stack(self, stack.stack_id))

    def describe_change_set(self: CloudFormationBackend, change_set_name: str) -> Any:
        change_set = moto_describe_change_set(self, change_set_name)
        if time.monotonic() >= getattr(change_set, "_jitr_ready_at", 0.0):
            return change_set
        shown = copy.copy(change_set)
        shown.status, shown.execution_status, shown.status_reason = "CREATE_IN_PROGRESS", "UNAVAILABLE", None
        shown.changes = []
        return shown

    def _being_deleted(self: CloudFormationBackend, name: str) -> Stack | None:
        return next((s for s in self.deleted_stacks.values() if s.name == name and _open(s) is not None), None)

    def describe_stacks(self: CloudFormationBackend, name_or_stack_id: str) -> list[Stack]:
        try:
            stacks = moto_describe_stacks(self, name_or_stack_id)
        except ValidationError:
            deleting = _being_deleted(self, name_or_stack_id) if name_or_stack_id else None
            if deleting is None:
                raise
            stacks = [deleting]
        shown = []
        for stack in stacks:
            window = _open(stack)
            if window is not None:
                stack = copy.copy(stack)
                stack.status = window.status
            shown.append(stack)
        return shown

    def describe_stack_events(self: CloudFormationBackend, stack_name: str) -> list[Any]:
        try:
            stack = self.get_stack(stack_name)
        except ValidationError:
            stack = _being_deleted(self, stack_name)
            if stack is None:
                raise
        window = _open(stack)
        return moto_describe_stack_events(self, stack.stack_id) if window is None else _shown_events(stack, window)

    CloudFormationBackend.create_change_set = create_change_set
    CloudFormationBackend.execute_change_set = execute_change_set
    CloudFormationBackend.create_stack = create_stack
    CloudFormationBackend.update_stack = update_stack
    CloudFormationBackend.delete_stack = delete_stack
    CloudFormationBackend.describe_change_set = describe_change_set
    CloudFormationBackend.describe_stacks = describe_stacks
    CloudFormationBackend.describe_stack_events = describe_stack_events


if SECONDS > 0:
    _install()
