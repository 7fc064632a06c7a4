"""This server's own address, and what every patch shares (not a patch itself).

Functions call AWS back at this server, and custom resource providers PUT their answer to a
ResponseURL pointing at it, so it must know its port before moto is imported. moto's `main`
only sets MOTO_PORT from `-p` when MOTO_PORT is not already set: a MOTO_PORT inherited from the
caller's environment would silently win, so `-p` is parsed here and always set. The moto
classes the patches change are imported here, after that.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading

# ---------------------------------------------------------------------------------------------
# Our own address.
#
# Functions call AWS back at this server, and custom resource providers PUT their answer to a
# ResponseURL pointing at it, so it must know its port before it starts. moto's `main` only
# sets MOTO_PORT from `-p` when MOTO_PORT is not already set: a MOTO_PORT inherited from the
# caller's environment would silently win, so we parse `-p` ourselves and always set it.
# ---------------------------------------------------------------------------------------------


def _own_address(argv: list[str]) -> tuple[str, int]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args, _ = parser.parse_known_args(argv)
    # Bound to every interface or to a name: loopback reaches it. Bound to one address: that one.
    host = args.host
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return host, args.port


_HOST, _PORT = _own_address(sys.argv[1:])
os.environ["MOTO_PORT"] = str(_PORT)
# What functions use as AWS_ENDPOINT_URL and CloudFormation's ResponseURLs point at. Plain HTTP:
# the tests never start moto with --ssl.
ENDPOINT = f"http://{_HOST}:{_PORT}"

from moto import settings  # noqa: E402  (after MOTO_PORT is set)

# moto builds the URLs it gives to functions (ResponseURL, MOTO_HOST) from moto_server_host(),
# which is "http://host.docker.internal", the address of the host as seen from a Docker
# container. Our functions run on this host.
settings.moto_server_host = lambda: f"http://{_HOST}"

from moto.awslambda import lambda_backends  # noqa: E402
from moto.awslambda.models import LambdaFunction  # noqa: E402
from moto.cloudformation import cloudformation_backends  # noqa: E402
from moto.cloudformation.custom_model import CustomModel  # noqa: E402
from moto.cloudformation.models import CloudFormationBackend, Event, Stack  # noqa: E402
from moto.cloudformation.parsing import OutputMap, ResourceMap  # noqa: E402
from moto.cloudformation.responses import CloudFormationResponse  # noqa: E402
from moto.core.utils import unix_time_millis, utcnow  # noqa: E402
from moto.iot.models import FakePolicy  # noqa: E402

# Where function code is unpacked and each function process's whole output is kept.
WORK_DIR = os.path.join(tempfile.gettempdir(), f"jitr-moto-lambda-{os.getuid()}")
# Lambda gives a function's init (the process start up to its first /next) 10 seconds on top
# of the invocation's own timeout.
INIT_TIMEOUT_S = 10.0
# Lambda returns at most the last 4 KB of an invocation's log (LogType=Tail).
LOG_TAIL_BYTES = 4096

_stderr_lock = threading.Lock()


def _say(prefix: str, line: str) -> None:
    """Writes one line to this server's stderr, which the test scripts keep as moto's log."""
    with _stderr_lock:
        sys.stderr.write(f"[{prefix}] {line}\n")
        sys.stderr.flush()


def _resource_event(stack: Stack, logical_id: str, resource_type: str, physical_id: str,
                    status: str, reason: str) -> None:
    """Appends a resource's event to the stack's events, as CloudFormation records a failed
    resource (moto records only the stack's own events on these paths)."""
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id=physical_id,
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )
