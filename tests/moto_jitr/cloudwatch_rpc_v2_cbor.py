"""CloudWatch answers the Smithy RPC v2 CBOR protocol, as AWS does.

AWS CloudWatch accepts Smithy RPC v2 CBOR and AWS JSON 1.0 next to the query protocol, and the
AWS SDKs now use the most performant one (Amazon CloudWatch User Guide, "FAQs on CloudWatch
supported protocols"); the Rust SDK (aws-sdk-cloudwatch) sends RPC v2 CBOR only. The protocol
(Smithy specification, "Smithy RPC v2 CBOR protocol"): `POST /service/{service}/operation/
{operation}` with the header `smithy-protocol: rpc-v2-cbor` and a CBOR body, answered in CBOR,
errors as a CBOR map with `__type` and `message`. moto 5.2 speaks only the query protocol to
CloudWatch, and routes nothing at that path.

Here, a request at that path is decoded from CBOR, serialized to the query protocol with
botocore's own serializer and CloudWatch's service model, answered by moto's CloudWatch, and
the answer parsed back with botocore's query parser (so timestamps and numbers keep their
model types) and encoded in CBOR (timestamps as tag 1, RFC 8949 section 3.4.2, as the protocol
requires). Every CloudWatch operation moto implements is reachable this way.
"""
from __future__ import annotations

import datetime
import struct
from typing import Any
from urllib.parse import urlencode

import botocore.session
from botocore import parsers, serialize
from moto.cloudwatch import urls as cloudwatch_urls
from moto.cloudwatch.responses import CloudWatchResponse
from werkzeug.test import EnvironBuilder

# The service name in the protocol's path: CloudWatch's Smithy service shape.
SERVICE = "GraniteServiceVersion20100801"
PATH = "{0}/service/" + SERVICE + "/operation/(?P<operation>[A-Za-z]+)$"
_MODEL = botocore.session.get_session().get_service_model("cloudwatch")

# ---------------------------------------------------------------------------------------------
# CBOR (RFC 8949): the subset the protocol uses. Definite and indefinite lengths are read;
# writes are definite. Tag 1 (epoch seconds) is a timestamp.
# ---------------------------------------------------------------------------------------------

_BREAK = object()


def _head(buf: bytes, i: int) -> tuple[int, int, int | None, int]:
    """(major type, additional info, argument or None when indefinite, next index)."""
    ib = buf[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info < 24:
        return major, info, info, i
    if info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        return major, info, int.from_bytes(buf[i:i + n], "big"), i + n
    if info == 31:
        return major, info, None, i
    raise ValueError(f"CBOR: reserved additional information {info}")


def _float_or_simple(info: int, buf: bytes, i: int) -> tuple[Any, int]:
    if info == 20:
        return False, i
    if info == 21:
        return True, i
    if info in (22, 23):
        return None, i
    if info == 31:
        return _BREAK, i
    fmt = {25: ">e", 26: ">f", 27: ">d"}.get(info)
    if fmt is None:
        raise ValueError(f"CBOR: unsupported simple value {info}")
    n = struct.calcsize(fmt)
    return struct.unpack(fmt, buf[i - n:i])[0], i


def _decode(buf: bytes, i: int) -> tuple[Any, int]:
    major, info, arg, i = _head(buf, i)
    if major == 0:
        return arg, i
    if major == 1:
        return -1 - arg, i
    if major in (2, 3):
        if arg is None:
            chunks = []
            while buf[i] != 0xFF:
                chunk, i = _decode(buf, i)
                chunks.append(chunk)
            data = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
            i += 1
        else:
            data, i = bytes(buf[i:i + arg]), i + arg
        return (data.decode("utf-8") if major == 3 else data), i
    if major == 4:
        items: list[Any] = []
        while arg is None or len(items) < arg:
            if arg is None and buf[i] == 0xFF:
                return items, i + 1
            item, i = _decode(buf, i)
            items.append(item)
        return items, i
    if major == 5:
        out: dict[Any, Any] = {}
        while arg is None or len(out) < arg:
            if arg is None and buf[i] == 0xFF:
                return out, i + 1
            key, i = _decode(buf, i)
            out[key], i = _decode(buf, i)
        return out, i
    if major == 6:
        value, i = _decode(buf, i)
        if arg == 1:
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc), i
        return value, i
    return _float_or_simple(info, buf, i)


def decode(buf: bytes) -> Any:
    if not buf:
        return {}
    value, _ = _decode(buf, 0)
    return value


def _encode_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ValueError("CBOR: integer too large")


def encode(value: Any) -> bytes:
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return _encode_head(0, value) if value >= 0 else _encode_head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return b"\xc1" + encode(value.timestamp())
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _encode_head(3, len(data)) + data
    if isinstance(value, (bytes, bytearray)):
        return _encode_head(2, len(value)) + bytes(value)
    if isinstance(value, (list, tuple)):
        return _encode_head(4, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        return _encode_head(5, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    raise TypeError(f"CBOR: cannot encode {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# The protocol, in front of moto's query-protocol CloudWatch.
# ---------------------------------------------------------------------------------------------


def _answer(status: int, body: dict) -> tuple[int, dict, bytes]:
    headers = {"smithy-protocol": "rpc-v2-cbor", "content-type": "application/cbor"}
    return status, headers, encode(body)


def rpc_v2_cbor(request: Any, full_url: str, headers: Any) -> tuple[int, dict, bytes]:
    """Answers one RPC v2 CBOR request through moto's CloudWatch (query protocol)."""
    name = request.path.rstrip("/").rsplit("/", 1)[-1]
    try:
        operation = _MODEL.operation_model(name)
    except Exception:  # botocore's OperationNotFoundError
        return _answer(404, {"__type": "UnknownOperationException", "message": f"unknown operation {name}"})
    params = decode(request.get_data())
    query = serialize.create_serializer("query").serialize_to_request(params, operation)
    body = urlencode(query["body"], doseq=True)
    forwarded = {k: v for k, v in dict(headers).items() if k.lower() not in ("content-type", "content-length", "content-encoding")}
    forwarded["Content-Type"] = "application/x-www-form-urlencoded"
    inner = EnvironBuilder(method="POST", path="/", headers=forwarded, data=body).get_request()
    status, out_headers, out_body = CloudWatchResponse.dispatch(inner, full_url.split("/service/")[0] + "/", forwarded)
    raw = out_body.encode("utf-8") if isinstance(out_body, str) else (out_body or b"")
    parsed = parsers.create_parser("query").parse(
        {"status_code": int(status), "headers": dict(out_headers or {}), "body": raw},
        operation.output_shape,
    )
    parsed.pop("ResponseMetadata", None)
    if "Error" in parsed and int(status) >= 400:
        error = parsed["Error"]
        return _answer(int(status), {"__type": f"com.amazonaws.cloudwatch#{error.get('Code', '')}",
                                     "message": error.get("Message", "")})
    return _answer(200, parsed)


cloudwatch_urls.url_paths[PATH] = rpc_v2_cbor
