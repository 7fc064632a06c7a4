"""STS AssumeRole is refused unless the role exists and its trust policy lets the caller in.

AWS (IAM User Guide, "AWS JSON policy elements: Principal" and "Troubleshoot IAM roles"; STS API
Reference, "AssumeRole"): a role's trust policy (its AssumeRolePolicyDocument) says who may
assume it. A statement with Effect Allow, an Action matching `sts:AssumeRole` and a Principal
`{"AWS": ...}` naming the caller lets the caller in: the caller's account id or
`arn:aws:iam::ACCOUNT:root` (any identity of that account), the caller's own ARN (a user, or for
an assumed-role session the role's ARN or the session's ARN), or `*`. A matching Deny wins. Any
other caller, and a role that does not exist, gets HTTP 403 `AccessDenied`, "User: <caller arn>
is not authorized to perform: sts:AssumeRole on resource: <role arn>" (the same answer whether
the role exists or not, so that nobody can probe for roles). moto hands out credentials for any
role ARN, existing or not.

Not modelled: the caller's own identity policies (moto does not enforce IAM; every caller may
call sts:AssumeRole), and Conditions other than `StringEquals` on `sts:ExternalId`: a statement
with any other Condition never applies (an Allow does not let in, a Deny does not keep out).
Services (`{"Service": "lambda.amazonaws.com"}`) never call this API here: the Lambda executor
gives functions their execution role's credentials itself (lambda_executor).

Other accounts in tests. moto keeps every account's resources apart, and attributes a request
to the account of its access key: a key created by IAM CreateAccessKey in account B, or returned
by AssumeRole of a role in B, acts in B (GetCallerIdentity says B). A test bootstraps account B
with moto's `x-moto-account-id` request header, sent once on IAM CreateUser and CreateAccessKey:
from then on that access key is an ordinary IAM user's key of account B, and everything else
(CreateRole in B, the trust policy naming account A, AssumeRole from A) goes through the real
APIs (testkit::accounts does this for the Rust tests).
"""
from __future__ import annotations

import json
import re
from typing import Any
from xml.sax.saxutils import escape

from moto.iam.models import iam_backends
from moto.moto_api._internal import mock_random
from moto.sts.responses import TokenResponse

_ARN_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _caller_names(caller_arn: str, caller_account: str) -> set[str]:
    """Every Principal value that names this caller."""
    names = {"*", caller_account, f"arn:aws:iam::{caller_account}:root", caller_arn}
    session = re.match(r"^arn:aws[a-z-]*:sts::(\d{12}):assumed-role/([^/]+)/", caller_arn)
    if session:
        # A role session is named by its role's ARN (whatever the role's path, AWS matches the
        # role; the session ARN carries only its name).
        names.add(f"arn:aws:iam::{session.group(1)}:role/{session.group(2)}")
    return names


def _names_role(principal_value: str, names: set[str]) -> bool:
    if principal_value in names:
        return True
    # A role principal with a path: arn:aws:iam::ACCT:role/path/name matches the session of name.
    match = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:.+/)?([^/]+)$", principal_value)
    return bool(match) and f"arn:aws:iam::{match.group(1)}:role/{match.group(2)}" in names


def _statement_applies(statement: dict[str, Any], names: set[str], external_id: str | None) -> bool:
    actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
    if not any(a in ("sts:assumerole", "sts:*", "*") for a in actions):
        return False
    principal = statement.get("Principal")
    if principal == "*":
        named = True
    elif isinstance(principal, dict):
        named = any(_names_role(str(p), names) for p in _as_list(principal.get("AWS", [])))
    else:
        named = False
    if not named:
        return False
    condition = statement.get("Condition")
    if not condition:
        return True
    # Only StringEquals on sts:ExternalId is evaluated; any other condition: does not apply.
    string_equals = condition.get("StringEquals")
    if set(condition) != {"StringEquals"} or not isinstance(string_equals, dict) or set(string_equals) != {"sts:ExternalId"}:
        return False
    return external_id is not None and external_id in _as_list(string_equals["sts:ExternalId"])


def trusts(policy_document: str, caller_arn: str, caller_account: str, external_id: str | None) -> bool:
    """Whether a trust policy lets the caller assume the role (a matching Deny wins)."""
    try:
        policy = json.loads(policy_document)
    except (TypeError, ValueError):
        return False
    names = _caller_names(caller_arn, caller_account)
    allowed = False
    for statement in _as_list(policy.get("Statement", [])):
        if not isinstance(statement, dict) or not _statement_applies(statement, names, external_id):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _role(role_arn: str) -> Any | None:
    match = _ARN_ACCOUNT.match(role_arn or "")
    if not match or match.group(1) not in iam_backends:
        return None
    for partition_backend in iam_backends[match.group(1)].values():
        try:
            return partition_backend.get_role_by_arn(role_arn)
        except Exception:  # moto's NotFoundException
            continue
    return None


def _access_denied(caller_arn: str, role_arn: str) -> tuple[int, dict[str, Any], str]:
    message = f"User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        f"<Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{mock_random.uuid4()}</RequestId></ErrorResponse>"
    )
    return 403, {"status": 403, "Content-Type": "text/xml"}, body


_moto_assume_role = TokenResponse.assume_role


def _assume_role(self: TokenResponse) -> Any:
    role_arn = self._get_param("RoleArn")
    _, caller_arn, caller_account = self.backend.get_caller_identity(self.get_access_key(), self.region)
    role = _role(role_arn)
    if role is None or not trusts(role.assume_role_policy_document, caller_arn, caller_account,
                                  self._get_param("ExternalId")):
        return _access_denied(caller_arn, role_arn)
    return _moto_assume_role(self)


TokenResponse.assume_role = _assume_role
