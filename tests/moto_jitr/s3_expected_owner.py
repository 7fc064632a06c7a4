"""S3 honours `x-amz-expected-bucket-owner`.

Amazon S3 User Guide, "Verifying bucket ownership with bucket owner condition": a request
whose ExpectedBucketOwner is not the bucket's owner fails with 403 Access Denied. moto
ignores the header and serves any account's bucket.
"""
from __future__ import annotations

import uuid
from typing import Any

from ._base import _say  # noqa: F401

# =============================================================================================
# Deploy: real AWS behaviours jitr-infra's deploy relies on, which moto lacks.
# =============================================================================================

# ---------------------------------------------------------------------------------------------
# S3 bucket owner condition. With `x-amz-expected-bucket-owner` on a request, S3 checks the
# bucket's owner first and answers 403 AccessDenied when it is another account ("Verifying
# bucket ownership with bucket owner condition", S3 User Guide; the ExpectedBucketOwner
# parameter of every bucket and object operation: "If the account ID that you provide does
# not match the actual owner of the bucket, the request fails with the HTTP status code 403
# Forbidden (access denied)"). A HEAD answer has no body. moto ignores the header and serves
# any account's bucket.
# ---------------------------------------------------------------------------------------------

from moto.s3.models import s3_backends  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402
from moto.s3.utils import bucket_name_from_url  # noqa: E402
from moto.s3bucket_path.utils import bucket_name_from_url as bucketpath_bucket_name_from_url  # noqa: E402

_ACCESS_DENIED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message><RequestId>{id}</RequestId><HostId>{id}</HostId></Error>"
)


def _owner_condition(answer: Any) -> Any:
    def checked(self: S3Response, request: Any, full_url: str, headers: Any) -> Any:
        expected = request.headers.get("x-amz-expected-bucket-owner")
        if expected:
            if self.subdomain_based_buckets(request):
                bucket = bucket_name_from_url(full_url)
            else:
                bucket = bucketpath_bucket_name_from_url(full_url)
            owner = s3_backends.bucket_accounts.get(bucket or "")
            if owner is not None and owner[1] != expected:
                _say("s3", f"{request.method} {bucket}: owner {owner[1]} is not the expected {expected}: 403")
                body = "" if request.method == "HEAD" else _ACCESS_DENIED_XML.format(id=uuid.uuid4().hex)
                return 403, {"Content-Type": "application/xml"}, body
        return answer(self, request, full_url, headers)

    return checked


S3Response.bucket_response = _owner_condition(S3Response.bucket_response)
S3Response.key_response = _owner_condition(S3Response.key_response)
