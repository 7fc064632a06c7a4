"""IoT ListCertificatesByCA pages, orders and resumes as on AWS.

AWS IoT API Reference, "ListCertificatesByCA": `GET /certificates-by-ca/{caCertificateId}` with
`pageSize` (1..250), `marker` (at most 1024 characters of `[A-Za-z0-9+/]+={0,2}`) and
`isAscendingOrder` ("If True, the results are returned in ascending order, based on the
creation date"); the answer carries `certificates` and `nextMarker` ("null if there are no
additional results"); a bad parameter is `InvalidRequestException` (HTTP 400). moto 5.2.1
ignores all three parameters and never returns `nextMarker` (its docstring: "Pagination is not
yet implemented"). Restored here: order by creation date (ties by certificate id), newest first
unless `isAscendingOrder=true` (AWS documents no default; the activator always sends it),
pages of `pageSize` (250 when unset: AWS documents no default), an opaque base64 marker that
resumes after the last certificate returned, and InvalidRequestException for a page size out
of range or a marker this server did not make.

Test hook (tests need certificates older than a sweep's grace period or horizon without
waiting for them): POST /moto-api/jitr/iot-certificate-creation-date
{"account", "region", "certificateId", "creationDate": epoch seconds}.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from typing import Any

from moto.core.responses import ActionResult
from moto.iot.exceptions import InvalidRequestException
from moto.iot.models import iot_backends
from moto.iot.responses import IoTResponse
from moto.moto_api._internal import urls as _moto_api_urls

MAX_PAGE_SIZE = 250
_MARKER_SHAPE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MARKER_PREFIX = "jitr-list-by-ca/1 "


def _raw(response: IoTResponse, name: str) -> str | None:
    values = response.querystring.get(name)
    return values[0] if values else None


def _page_size(response: IoTResponse) -> int:
    text = _raw(response, "pageSize")
    if text is None:
        return MAX_PAGE_SIZE
    try:
        size = int(text)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidRequestException(f"pageSize must be between 1 and {MAX_PAGE_SIZE}, got {text}")
    return size


def _key(cert: Any) -> tuple[str, str]:
    return (cert.creation_date.isoformat(), cert.certificate_id)


def _encode_marker(key: tuple[str, str]) -> str:
    return base64.b64encode((_MARKER_PREFIX + json.dumps(list(key))).encode()).decode()


def _decode_marker(marker: str) -> tuple[str, str]:
    invalid = InvalidRequestException("The marker is not valid")
    if len(marker) > 1024 or not _MARKER_SHAPE.fullmatch(marker):
        raise invalid
    try:
        text = base64.b64decode(marker, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not text.startswith(_MARKER_PREFIX):
        raise invalid
    try:
        created, cert_id = json.loads(text[len(_MARKER_PREFIX):])
    except (ValueError, TypeError):
        raise invalid from None
    return str(created), str(cert_id)


def _list_certificates_by_ca(self: IoTResponse) -> Any:
    ca_certificate_id = self._get_param("caCertificateId")
    page_size = _page_size(self)
    ascending = (_raw(self, "isAscendingOrder") or "false").lower() == "true"
    marker = _raw(self, "marker")
    certificates = sorted(self.iot_backend.list_certificates_by_ca(ca_certificate_id), key=_key, reverse=not ascending)
    if marker:
        after = _decode_marker(marker)
        certificates = [c for c in certificates if (_key(c) > after if ascending else _key(c) < after)]
    page = certificates[:page_size]
    body: dict[str, Any] = {"certificates": [c.to_dict() for c in page]}
    if len(certificates) > page_size:
        body["nextMarker"] = _encode_marker(_key(page[-1]))
    return ActionResult(body)


IoTResponse.list_certificates_by_ca = _list_certificates_by_ca


def _set_creation_date(request: Any, full_url: str, headers: Any) -> Any:
    size = int(headers.get("Content-Length") or 0)
    body = json.loads(request.environ["wsgi.input"].read(size) or b"{}")
    backend = iot_backends[str(body["account"])][str(body["region"])]
    cert = backend.certificates[str(body["certificateId"])]
    created = datetime.datetime.fromtimestamp(float(body["creationDate"]), datetime.timezone.utc)
    cert.creation_date = created.replace(tzinfo=None)  # moto's dates are naive UTC
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


_moto_api_urls.url_paths["{0}/moto-api/jitr/iot-certificate-creation-date"] = _set_creation_date
