"""A function runs with its execution role's temporary credentials, in its own account.

AWS Lambda Developer Guide, "Defining Lambda function permissions with an execution role" and
"Defined runtime environment variables": Lambda assumes the function's execution role (a role
of the function's own account, which trusts the service `lambda.amazonaws.com`) and hands the
function that session's temporary credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_SESSION_TOKEN; the session is `arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION_NAME`. What
the function does is therefore done in its own account.

lambda_executor gave every function moto's dummy key `testing`, which moto attributes to its
default account (123456789012): a CA provider running in a stack of another account would
have registered the CA in the default account. Here each function gets credentials moto's
STS issues for its execution role in the function's account and region (the session named
after the function), so moto attributes its calls to that account. The trust check of
sts_assume_role_trust does not apply: Lambda, a service, assumes the role, not a caller.
The credentials are made once per function and role and kept (moto does not expire them), so
that a warm function process is not retired for a changed environment.
"""
from __future__ import annotations

import re
import threading
from typing import Any

from moto.sts.models import sts_backends

from . import lambda_executor
from ._base import LambdaFunction

_credentials: dict[tuple[str, str, str, str], dict[str, str]] = {}
_lock = threading.Lock()


def execution_role_arn(fn: LambdaFunction) -> str:
    """The function's role, as a role of the function's own account (Lambda requires that)."""
    role = str(fn.role or "")
    match = re.match(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(.+)$", role)
    if match and match.group(2) == fn.account_id:
        return role
    name = match.group(3) if match else (role.rsplit("/", 1)[-1] or fn.function_name)
    return f"arn:aws:iam::{fn.account_id}:role/{name}"


def credentials(fn: LambdaFunction) -> dict[str, str]:
    """The environment variables holding the function's execution-role session."""
    role_arn = execution_role_arn(fn)
    key = (fn.account_id, fn.region, fn.function_name, role_arn)
    with _lock:
        found = _credentials.get(key)
        if found is None:
            backend: Any = sts_backends[fn.account_id]["aws"]
            session = backend.assume_role(
                region_name=fn.region, role_session_name=fn.function_name, role_arn=role_arn,
                policy=None, duration=43200, external_id=None,
            )
            found = _credentials[key] = {
                "AWS_ACCESS_KEY_ID": session.access_key_id,
                "AWS_SECRET_ACCESS_KEY": session.secret_access_key,
                "AWS_SESSION_TOKEN": session.session_token,
            }
        return dict(found)


_environment_with_dummy_keys = lambda_executor._environment


def _environment(fn: LambdaFunction) -> dict[str, str]:
    env = _environment_with_dummy_keys(fn)
    env.update(credentials(fn))
    return env


# lambda_executor looks `_environment` up in its module when it builds a sandbox.
lambda_executor._environment = _environment
