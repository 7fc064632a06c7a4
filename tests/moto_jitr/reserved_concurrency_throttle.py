"""Reserved concurrency 0 throttles every invocation.

AWS Lambda Developer Guide, "Configuring reserved concurrency": a reserved concurrency of 0
stops the function from being invoked; a synchronous Invoke fails with
TooManyRequestsException (Lambda API Reference, "Invoke") and an asynchronous event is kept
and retried. moto ignores the reservation.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ._base import LambdaFunction, _say, lambda_backends  # noqa: F401
from .lambda_executor import _header  # noqa: F401
from moto.awslambda.exceptions import LambdaClientError

# ---------------------------------------------------------------------------------------------
# Reserved concurrency 0 throttles every invocation (Lambda developer guide, "Configuring
# reserved concurrency": 0 stops the function from being invoked). A synchronous Invoke then
# fails with 429 TooManyRequestsException; an asynchronous event is accepted and Lambda keeps
# retrying it while it is throttled, for up to the maximum event age (6 hours by default;
# "Asynchronous invocation" in the same guide). moto runs the function regardless.
# ---------------------------------------------------------------------------------------------

# How often a throttled asynchronous event is tried again here (Lambda backs off up to 5 minutes).
THROTTLE_RETRY_S = 0.2
MAX_EVENT_AGE_S = 6 * 3600


class _Throttled(LambdaClientError):
    code = 429

    def __init__(self) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")


def _throttled(fn: LambdaFunction) -> bool:
    reserved = getattr(fn, "reserved_concurrency", None)
    return reserved is not None and str(reserved) == "0"


def _still_exists(fn: LambdaFunction) -> bool:
    try:
        return lambda_backends[fn.account_id][fn.region].get_function(fn.function_name) is fn
    except Exception:
        return False


_unthrottled_invoke = LambdaFunction.invoke


def _invoke_unless_throttled(self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> Any:
    if not _throttled(self):
        return _unthrottled_invoke(self, body, request_headers, response_headers)
    if (_header(request_headers, "X-Amz-Invocation-Type") or "RequestResponse") != "Event":
        raise _Throttled()

    def retry_while_throttled() -> None:
        give_up = time.monotonic() + MAX_EVENT_AGE_S
        while time.monotonic() < give_up and _still_exists(self):
            if not _throttled(self):
                _unthrottled_invoke(self, body, request_headers, {})
                return
            time.sleep(THROTTLE_RETRY_S)
        _say(self.function_name, "throttled event dropped (function deleted or event too old)")

    threading.Thread(target=retry_while_throttled, name=f"throttled-{self.function_name}", daemon=True).start()
    return b""


LambdaFunction.invoke = _invoke_unless_throttled
