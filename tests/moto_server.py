#!/usr/bin/env python3
"""moto server for jitr-infra's tests.

Starts moto's standard server (same arguments as `moto_server`, e.g.
`python tests/moto_server.py -H 127.0.0.1 -p PORT`) after a few changes to moto, all made in
this process before the server starts:

1. IoT certificate ids are the SHA-256 of the DER encoding, as on real AWS (moto's default
   hashes the PEM text). moto's `/moto-api/config` endpoint does not offer this for IoT.

2. Lambda functions really run. moto executes functions only through Docker, which the test
   machines do not have, and our functions are `provided.al2023` Rust binaries anyway: a zip
   holding one executable, `bootstrap`. So wherever moto would run a function (the Invoke API,
   RequestResponse and Event; CloudFormation custom resources; moto's other event sources),
   this server runs `bootstrap` itself, as a local process talking to a small Lambda Runtime
   API served from this process on loopback. Functions of other runtimes, and image
   functions, keep moto's own behaviour.

3. CloudFormation custom resources behave like CloudFormation's: stack operations wait for the
   provider's answer (so `Fn::GetAtt` on a custom resource resolves for the resources that
   depend on it), a FAILED answer fails the stack (rollback), the answered PhysicalResourceId
   is the resource's id, and Update and Delete requests are sent too. moto only sends Create,
   in a background thread, and never looks at FAILED answers.

4. Stacks created or updated through change sets report their Outputs (moto builds a
   stack's outputs only from the template it was created with, which for a change set's stack
   is empty).

5. `Ref` of an AWS::IoT::Policy is its name, as on AWS (moto returns its Python object, which
   then breaks whatever holds it: our activator's environment, GetFunctionConfiguration).

6. Registering a CA certificate that is already registered answers ResourceAlreadyExists, as
   on AWS (moto silently registers it again), and DescribeCACertificate reports the CA's
   certificateMode.

7. IoT DescribeCertificate carries `caCertificateId` and the certificate's own validity, as on
   AWS (moto omits the one and invents the other).

8. What `destroy` and stack protection rely on: CloudFormation creates AWS::IoT::TopicRule,
   reserved concurrency 0 throttles, a failed resource deletion leaves the stack DELETE_FAILED,
   termination protection and stack policies are enforced (their own section, at the end).

9. Deploy (its own section at the end): S3 honours `x-amz-expected-bucket-owner` (403 for
   another account's bucket), and Lambda has per-account concurrency limits, with
   GetAccountSettings, the unreserved minimum enforced on reservations, and a test hook to set
   an account's limit.

Everything here patches moto 5.2.x internals (pinned in scripts/requirements-test.txt); each
patch says what moto does and why we differ. `tests/moto_lambda_selfcheck.py` checks them.
"""
from __future__ import annotations

import argparse
import atexit
import base64
import hashlib
import http.server
import io
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from typing import Any
from urllib.parse import quote

from moto.core.config import default_user_config

default_user_config.setdefault("iot", {})["use_valid_cert"] = True

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


# ---------------------------------------------------------------------------------------------
# Lambda: the runtime API and the function processes.
#
# A sandbox is one function process (one "execution environment") plus the Runtime API it
# polls, served on its own loopback port so that no request has to say which process it comes
# from. A sandbox runs one invocation at a time (its lock), like Lambda's environments, and
# stays warm between invocations: the ca-provider and activator build their AWS clients once
# per process, as they would on Lambda. A sandbox belongs to one function configuration and
# code (its key); changing either retires it, and the next invocation starts a fresh one.
# ---------------------------------------------------------------------------------------------


class _Invocation:
    def __init__(self, payload: bytes):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.queued_at = time.monotonic()
        self.dispatched = False  # handed to the function by /next
        self.deadline = 0.0  # monotonic, once dispatched
        self.deadline_ms = 0  # the same, in epoch milliseconds for Lambda-Runtime-Deadline-Ms
        self.done = False
        self.error = False
        self.error_type = ""
        self.result = b""
        self.logs: list[str] = []


class _Result:
    def __init__(self, request_id: str, payload: bytes, error: bool, logs: list[str], ms: float):
        self.request_id = request_id
        self.payload = payload
        self.error = error
        self.logs = logs
        self.duration_ms = ms

    def log_tail(self) -> str:
        text = "".join(line + "\n" for line in self.logs).encode("utf-8", "replace")
        return base64.b64encode(text[-LOG_TAIL_BYTES:]).decode("ascii")

    def error_summary(self) -> str:
        try:
            body = json.loads(self.payload)
            return f"{body.get('errorType')}: {body.get('errorMessage')}"
        except (ValueError, AttributeError):
            return self.payload.decode("utf-8", "replace")


def _error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _RuntimeApi(http.server.BaseHTTPRequestHandler):
    """The Lambda Runtime API (2018-06-01) for one sandbox: `self.server.sandbox`."""

    # Keep-alive, as Lambda's: the runtime client reuses its connection for every call.
    protocol_version = "HTTP/1.1"
    PREFIX = "/2018-06-01/runtime"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        pass  # one line per poll would drown the functions' own logs

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        sandbox: _Sandbox = self.server.sandbox  # type: ignore[attr-defined]
        if self.path != f"{self.PREFIX}/invocation/next":
            return self._reply(404, _error_body("NotFound", self.path))
        invocation = sandbox.next_invocation(self.server)  # type: ignore[arg-type]
        if invocation is None:  # the sandbox is shutting down
            self.close_connection = True
            return self._reply(500, _error_body("Sandbox.Shutdown", "shutting down"))
        self._reply(200, invocation.payload, sandbox.invocation_headers(invocation))

    def do_POST(self) -> None:  # noqa: N802
        sandbox: _Sandbox = self.server.sandbox  # type: ignore[attr-defined]
        body = self._body()
        if self.path == f"{self.PREFIX}/init/error":
            sandbox.init_failed(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
            return self._reply(202, b'{"status":"OK"}')
        match = re.fullmatch(rf"{self.PREFIX}/invocation/([^/]+)/(response|error)", self.path)
        if not match:
            return self._reply(404, _error_body("NotFound", self.path))
        request_id, kind = match.groups()
        error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
        if not sandbox.complete(request_id, body, kind == "error", error_type):
            return self._reply(400, _error_body("InvalidRequestID", f"unknown {request_id}"))
        self._reply(202, b'{"status":"OK"}')


class _RuntimeServer(http.server.ThreadingHTTPServer):
    """One per function process: a /next poll left behind by a dead process (whose handler
    thread may still be waiting) can then never take an invocation meant for its successor."""

    daemon_threads = True

    def __init__(self, sandbox: _Sandbox):
        super().__init__(("127.0.0.1", 0), _RuntimeApi)
        self.sandbox = sandbox
        self.closed = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A killed function (timeout, retirement, shutdown) leaves its connection half-open;
        # writing to it fails. Nothing to report then.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Sandbox:
    _numbers = itertools.count(1)

    def __init__(self, fn: LambdaFunction, code_dir: str, environment: dict[str, str]):
        self.name = fn.function_name
        self.arn = fn.function_arn
        self.timeout = float(fn.timeout)
        self.code_dir = code_dir
        self.environment = environment
        self.logs_backend = fn.logs_backend
        self.log_group = fn.logs_group_name
        self.version = str(fn.version)
        self.lock = threading.Lock()  # one invocation at a time
        # Guards everything below. Reentrant (Condition's default), as shutdown() may run
        # inside it.
        self.cond = threading.Condition()
        self.pending: _Invocation | None = None
        self.process: subprocess.Popen | None = None
        self.server: _RuntimeServer | None = None
        self.exit_code: int | None = None
        self.init_error: tuple[bytes, str] | None = None
        self.busy = False
        self.closed = False  # shut down for good
        self.retired = False  # superseded: shut down once idle
        self.log_stream = ""
        self.log_file = ""
        self.pump_done = threading.Event()  # the current process's output is all read

    # -- life cycle -----------------------------------------------------------------------

    def _start(self) -> None:
        self._stop()
        server = _RuntimeServer(self)
        threading.Thread(target=server.serve_forever, name=f"runtime-api-{self.name}", daemon=True).start()
        number = next(self._numbers)
        self.log_stream = f"{utcnow():%Y/%m/%d}/[{self.version}]{secrets.token_hex(16)}"
        self.log_file = os.path.join(WORK_DIR, "logs", f"{self.name}-{os.getpid()}-{number}.log")
        os.makedirs(os.path.dirname(self.log_file), exist_ok=True)
        env = dict(self.environment)
        env["AWS_LAMBDA_LOG_STREAM_NAME"] = self.log_stream
        env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
        try:
            self.logs_backend.ensure_log_group(self.log_group)
            self.logs_backend.create_log_stream(self.log_group, self.log_stream)
        except Exception as e:  # logs are a courtesy: never fail an invocation over them
            _say(self.name, f"(cannot create CloudWatch log stream: {e})")
        # Its own session, so that a timeout kills whatever the function started, too. If this
        # server dies without cleaning up, the process exits by itself: its long poll on
        # /next (served by this process) fails, and the runtime client gives up.
        process = subprocess.Popen(
            [os.path.join(self.code_dir, "bootstrap")],
            cwd=self.code_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self.cond:
            self.server, self.process = server, process
            self.exit_code, self.init_error = None, None
            self.pump_done = threading.Event()
        _say(self.name, f"started pid {process.pid}; its output is also in {self.log_file}")
        threading.Thread(target=self._pump_output, args=(process, self.pump_done), daemon=True).start()
        threading.Thread(target=self._watch, args=(process,), daemon=True).start()

    def _pump_output(self, process: subprocess.Popen, done: threading.Event) -> None:
        """Copies the function's output to its log file, moto's stderr and the invocation."""
        with open(self.log_file, "a", encoding="utf-8") as log:
            for raw in process.stdout:  # type: ignore[union-attr]
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                _say(self.name, line)
                with self.cond:
                    if self.pending is not None and process is self.process:
                        self.pending.logs.append(line)
        done.set()

    def _watch(self, process: subprocess.Popen) -> None:
        code = process.wait()
        with self.cond:
            current = process is self.process
            if current:
                self.exit_code = code
                self.cond.notify_all()
        if current and not self.closed:
            _say(self.name, f"pid {process.pid} exited with status {code}")

    def _stop(self) -> None:
        """Kills the process (and its session) and closes its Runtime API."""
        with self.cond:
            process, server = self.process, self.server
            self.process, self.server = None, None
            if server is not None:
                server.closed = True
            self.cond.notify_all()  # releases a /next long poll
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        if server is not None:
            server.shutdown()
            server.server_close()

    def shutdown(self) -> None:
        with self.cond:
            self.closed = True
        self._stop()

    def retire(self) -> None:
        """Superseded by new code or configuration: goes now if idle, else after its
        invocation (decided under cond, so that exactly one side does it)."""
        with self.cond:
            self.retired = True
            if self.busy:
                return
            self.closed = True
        self._stop()

    # -- the Runtime API's side -----------------------------------------------------------

    def next_invocation(self, server: _RuntimeServer) -> _Invocation | None:
        with self.cond:
            while not server.closed and (self.pending is None or self.pending.dispatched):
                self.cond.wait()
            if server.closed:
                return None
            invocation = self.pending
            invocation.dispatched = True
            invocation.deadline = time.monotonic() + self.timeout
            invocation.deadline_ms = int(time.time() * 1000 + self.timeout * 1000)
            self.cond.notify_all()  # the invoker now measures the function's own timeout
            return invocation

    def invocation_headers(self, invocation: _Invocation) -> dict[str, str]:
        trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
        return {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.arn,
            "Lambda-Runtime-Trace-Id": trace,
        }

    def complete(self, request_id: str, body: bytes, error: bool, error_type: str | None) -> bool:
        with self.cond:
            invocation = self.pending
            if invocation is None or invocation.request_id != request_id or invocation.done:
                return False
            invocation.done = True
            invocation.result = body
            invocation.error = error
            invocation.error_type = error_type or ""
            self.cond.notify_all()
            return True

    def init_failed(self, body: bytes, error_type: str | None) -> None:
        with self.cond:
            self.init_error = (body, error_type or "Runtime.Unknown")
            self.cond.notify_all()

    # -- the invoker's side ---------------------------------------------------------------

    def invoke(self, payload: bytes) -> _Result:
        with self.lock:
            with self.cond:
                if self.closed:
                    raise _SandboxClosed()
                self.busy = True
            try:
                return self._invoke(payload)
            finally:
                with self.cond:
                    self.busy = False
                    retire = self.retired and not self.closed
                    if retire:
                        self.closed = True
                if retire:
                    self._stop()

    def _invoke(self, payload: bytes) -> _Result:
        if self.process is None or self.process.poll() is not None:
            self._start()
        invocation = _Invocation(payload)
        timed_out = False
        with self.cond:
            self.pending = invocation
            self.cond.notify_all()
            while not invocation.done and self.exit_code is None and self.init_error is None:
                if invocation.dispatched:
                    limit = invocation.deadline
                else:
                    limit = invocation.queued_at + INIT_TIMEOUT_S + self.timeout
                left = limit - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                self.cond.wait(left)
        self._settle_output()
        with self.cond:
            self.pending = None
        elapsed_ms = (time.monotonic() - invocation.queued_at) * 1000
        rid = invocation.request_id
        if invocation.done:
            body, error = invocation.result, invocation.error
        elif timed_out:
            self._stop()  # the next invocation starts a fresh process, as on Lambda
            body = _error_body("Sandbox.Timedout", f"RequestId: {rid} Error: Task timed out after {self.timeout:.2f} seconds")
            error = True
        elif self.init_error is not None:
            self._stop()
            body, error = self.init_error[0], True
        else:
            message = f"RequestId: {rid} Error: Runtime exited with error: exit status {self.exit_code}"
            body, error = _error_body("Runtime.ExitError", message), True
        result = _Result(rid, body, error, invocation.logs, elapsed_ms)
        outcome = f"error {result.error_summary()}" if error else "ok"
        _say(self.name, f"REPORT RequestId: {rid} Duration: {elapsed_ms:.1f} ms Result: {outcome}")
        self._save_logs(rid, invocation.logs, elapsed_ms)
        return result

    def _settle_output(self) -> None:
        """Lines the function wrote just before answering may still be in the pipe, not yet
        taken by _pump_output: give it a moment (50 ms at most) so that they count as this
        invocation's, in the LogType=Tail result and CloudWatch Logs."""
        process = self.process
        if process is None or process.stdout is None:
            return
        give_up = time.monotonic() + 0.05
        while time.monotonic() < give_up and not self.pump_done.is_set():
            try:
                readable, _, _ = select.select([process.stdout], [], [], 0)
            except (OSError, ValueError):
                return
            if not readable:
                break
            time.sleep(0.002)
        time.sleep(0.001)  # the pump may still be handling what it has read

    def _save_logs(self, request_id: str, lines: list[str], elapsed_ms: float) -> None:
        """Copies the invocation's log to moto's CloudWatch Logs, framed as Lambda frames it."""
        messages = [f"START RequestId: {request_id} Version: {self.version}", *lines]
        messages += [f"END RequestId: {request_id}", f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms"]
        now = unix_time_millis()
        try:
            self.logs_backend.put_log_events(
                self.log_group, self.log_stream, [{"timestamp": now, "message": m} for m in messages]
            )
        except Exception as e:
            # Typically the log group is gone: a stack deletion removed it while the function
            # was finishing (it answered CloudFormation first). Lambda would not recreate it
            # either within that invocation.
            _say(self.name, f"(log not copied to CloudWatch Logs: {e})")


class _SandboxClosed(Exception):
    """The sandbox was retired between its lookup and its use: look up its successor."""


_sandboxes: dict[tuple, _Sandbox] = {}
_sandboxes_lock = threading.Lock()


def _is_ours(fn: LambdaFunction) -> bool:
    """Whether we run this function ourselves: a zip of a custom runtime (`provided.*`)."""
    return (
        getattr(fn, "package_type", "Zip") == "Zip"
        and str(fn.run_time or "").startswith("provided")
        and bool(getattr(fn, "code_bytes", b""))
    )


def _unpack(code: bytes) -> str:
    """Unpacks a deployment package once per content, into a directory named by its hash."""
    digest = hashlib.sha256(code).hexdigest()
    target = os.path.join(WORK_DIR, "code", digest)
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{digest}.", dir=os.path.dirname(target))
        try:
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(staging)
        except zipfile.BadZipFile:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        bootstrap = os.path.join(staging, "bootstrap")
        if os.path.isfile(bootstrap):
            # Zips built on any OS may lose the mode bits; Lambda runs bootstrap regardless.
            os.chmod(bootstrap, 0o755)
        try:
            os.rename(staging, target)
        except OSError:  # another thread unpacked the same code meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _environment(fn: LambdaFunction) -> dict[str, str]:
    """The process environment: the function's variables, then Lambda's reserved ones."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/opt/bin", "LANG": "en_US.UTF-8", "TZ": ":UTC"}
    env.update({str(k): "" if v is None else str(v) for k, v in (fn.environment_vars or {}).items()})
    env.update(
        {
            "AWS_ENDPOINT_URL": ENDPOINT,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "_HANDLER": str(fn.handler or "bootstrap"),
        }
    )
    return env


def _sandbox_for(fn: LambdaFunction) -> _Sandbox | None:
    """The warm sandbox for this function's current code and configuration, or None when the
    package has no bootstrap."""
    try:
        code_dir = _unpack(fn.code_bytes)
    except zipfile.BadZipFile:
        return None
    if not os.path.isfile(os.path.join(code_dir, "bootstrap")):
        return None
    environment = _environment(fn)
    identity = (fn.account_id, fn.region, fn.function_arn)
    key = identity + (code_dir, json.dumps(environment, sort_keys=True), fn.timeout)
    with _sandboxes_lock:
        sandbox = _sandboxes.get(key)
        if sandbox is None or sandbox.closed:
            # New code or configuration: the old environments go, as on Lambda.
            for old_key, old in list(_sandboxes.items()):
                if old_key[:3] == identity:
                    del _sandboxes[old_key]
                    old.retire()
            sandbox = _sandboxes[key] = _Sandbox(fn, code_dir, environment)
        return sandbox


def run_function(fn: LambdaFunction, payload: bytes) -> _Result:
    """Runs one invocation of a function we run ourselves (see `_is_ours`), synchronously."""
    for _ in range(3):
        sandbox = _sandbox_for(fn)
        if sandbox is None:
            message = "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
            return _Result(str(uuid.uuid4()), _error_body("Runtime.InvalidEntrypoint", message), True, [], 0)
        try:
            return sandbox.invoke(payload)
        except _SandboxClosed:
            continue
    raise RuntimeError(f"no sandbox for {fn.function_name}")


def _shutdown_all() -> None:
    with _sandboxes_lock:
        for sandbox in _sandboxes.values():
            sandbox.shutdown()
        _sandboxes.clear()


# moto's server exits through sys.exit on SIGINT/SIGTERM, which runs this.
atexit.register(_shutdown_all)


def _header(headers: Any, name: str) -> str | None:
    """A request header, whatever mapping moto passes (werkzeug headers, or a dict of ours)."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Patch: LambdaFunction.invoke.
#
# Every way moto runs a function ends in this method: the Invoke API (through the backend),
# InvokeAsync, custom resources, S3/SNS/SQS/EventBridge/Secrets Manager triggers. moto's version
# runs the function synchronously in Docker (`_invoke_lambda`), even for Event invocations, and
# reports failures as "Handled". Ours runs bootstrap, answers Event invocations at once and runs
# them in the background, and reports runtime errors as "Unhandled", as Lambda does.
# ---------------------------------------------------------------------------------------------

_moto_invoke = LambdaFunction.invoke


def _invoke(self: LambdaFunction, body: Any, request_headers: Any, response_headers: Any) -> Any:
    if not _is_ours(self):
        return _moto_invoke(self, body, request_headers, response_headers)
    if isinstance(body, str):
        body = body.encode("utf-8")
    payload = body or b"{}"
    invocation_type = _header(request_headers, "X-Amz-Invocation-Type") or "RequestResponse"
    if invocation_type == "DryRun":
        return b""
    if invocation_type == "Event":
        # Lambda queues the event and answers 202 at once. No retries and no destinations
        # (EventInvokeConfig) here: a failed event is only logged.
        def run() -> None:
            try:
                result = run_function(self, payload)
                if result.error:
                    _say(self.function_name, f"Event invocation failed: {result.error_summary()}")
            except Exception as e:
                _say(self.function_name, f"Event invocation could not run: {e!r}")

        threading.Thread(target=run, name=f"event-{self.function_name}", daemon=True).start()
        return b""
    result = run_function(self, payload)
    if result.error:
        response_headers["x-amz-function-error"] = "Unhandled"
    response_headers["x-amz-log-result"] = result.log_tail()  # moto drops it unless LogType=Tail
    response_headers["x-amz-executed-version"] = str(self.version)
    return result.payload


LambdaFunction.invoke = _invoke


# ---------------------------------------------------------------------------------------------
# CloudFormation custom resources.
#
# moto's CustomModel invokes the ServiceToken function in a background thread on Create and
# marks the resource created when a SUCCESS answer arrives; the rest of the stack is created
# meanwhile, so a `Fn::GetAtt` on the custom resource resolves to None for the resources that
# depend on it (our activator's JITR_CA_CERTIFICATE_ID), a FAILED answer leaves the stack
# CREATE_IN_PROGRESS forever, and Update and Delete are never sent.
#
# Here a stack operation reaching a custom resource of a function we run invokes the provider
# and waits for its answer, as CloudFormation does. The answer arrives on another request
# thread (the provider PUTs it to the ResponseURL, this server); that thread only hands the
# answer to the waiting operation, which applies it. A FAILED answer (or a provider that
# returns or dies without answering) raises _CustomResourceFailed out of moto's resource loop,
# and the wrappers of the four stack operations below turn it into the stack status
# CloudFormation would report.
# ---------------------------------------------------------------------------------------------

# After the provider returned without answering, how long to still wait for its PUT.
ANSWER_GRACE_S = 2.0


class _CustomResourceFailed(BaseException):
    """A custom resource's provider answered FAILED, or never answered.

    A BaseException on purpose: moto's resource loops catch Exception and retry the resource
    up to five times (dependency errors), which would send the provider the same request
    again; this must stop the operation at once, as CloudFormation does.
    """

    def __init__(self, logical_id: str, resource_type: str, physical_id: str, reason: str):
        super().__init__(reason)
        self.logical_id = logical_id
        self.resource_type = resource_type
        self.physical_id = physical_id
        self.reason = reason


class _Waiter:
    """One outstanding custom resource request: its answer, or the provider's end."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.answer: dict[str, Any] | None = None
        self.finished: _Result | None = None

    def answered(self, answer: dict[str, Any]) -> None:
        with self.cond:
            self.answer = answer
            self.cond.notify_all()

    def provider_finished(self, result: _Result) -> None:
        with self.cond:
            self.finished = result
            self.cond.notify_all()

    def wait(self) -> dict[str, Any] | None:
        with self.cond:
            # Bounded: the provider's own timeout ends it, and then finished is set.
            self.cond.wait_for(lambda: self.answer is not None or self.finished is not None)
            if self.answer is None:
                self.cond.wait_for(lambda: self.answer is not None, ANSWER_GRACE_S)
            return self.answer


_waiters: dict[str, _Waiter] = {}  # by RequestId, while the operation waits
_sent: set[str] = set()  # every RequestId we sent, to recognize late answers

# How many of the wrapped stack operations below this thread is in. Outside them (moto
# resolving a resource lazily, say) a failure must be an ordinary exception, which moto turns
# into an error response, not a BaseException that would kill the request thread.
_in_operation = threading.local()


class _Operation:
    def __enter__(self) -> None:
        _in_operation.depth = getattr(_in_operation, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        _in_operation.depth -= 1


def _as_strings(value: Any) -> Any:
    """Custom resource properties as CloudFormation sends them: every scalar a string."""
    if isinstance(value, dict):
        return {k: _as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_strings(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value
_stack_operation_sequence = itertools.count()


def _response_url(region: str, stack_id: str) -> str:
    # The path moto routes to CloudFormationResponse.cfnresponse (see moto's
    # get_service_from_path); the query is only informative, the answer names its stack.
    return f"{ENDPOINT}/cloudformation_{region}/cfnresponse?stack={quote(stack_id, safe='')}"


def _request(
    fn: LambdaFunction,
    request_type: str,
    context: dict[str, Any],
    physical_id: str | None,
    properties: dict[str, Any],
    old_properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Sends one custom resource request to its provider and returns the SUCCESS answer."""
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": context["service_token"],
        "ResponseURL": _response_url(context["region"], context["stack_id"]),
        "StackId": context["stack_id"],
        "RequestId": request_id,
        "LogicalResourceId": context["logical_id"],
        "ResourceType": context["resource_type"],
        "ResourceProperties": _as_strings(properties),
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        event["OldResourceProperties"] = _as_strings(old_properties)
    waiter = _waiters[request_id] = _Waiter()
    _sent.add(request_id)

    def run() -> None:
        try:
            waiter.provider_finished(run_function(fn, json.dumps(event).encode()))
        except Exception as e:
            rid = str(uuid.uuid4())
            waiter.provider_finished(_Result(rid, _error_body("Moto.Error", repr(e)), True, [], 0))

    # The provider runs on its own thread so that its answer, not its return, ends the wait
    # (CloudFormation does not wait for the function either).
    threading.Thread(target=run, name=f"cfn-{context['logical_id']}", daemon=True).start()
    try:
        answer = waiter.wait()
    finally:
        _waiters.pop(request_id, None)
    failed_id = physical_id or context["logical_id"]

    def fail(reason: str) -> BaseException:
        if getattr(_in_operation, "depth", 0) == 0:
            return RuntimeError(f"custom resource {context['logical_id']}: {reason}")
        return _CustomResourceFailed(context["logical_id"], context["resource_type"], failed_id, reason)

    if answer is None:
        outcome = waiter.finished
        detail = f": {outcome.error_summary()}" if outcome is not None and outcome.error else ""
        raise fail(
            f"{request_type} request to {fn.function_name} ended without a response to the "
            f"ResponseURL{detail}. See the function's log in moto's stderr."
        )
    if answer.get("Status") != "SUCCESS":
        raise fail(str(answer.get("Reason") or "the provider answered FAILED without a Reason"))
    if not answer.get("PhysicalResourceId"):
        raise fail("Invalid PhysicalResourceId")
    return answer


def _context(cr: CustomModel) -> dict[str, Any]:
    """What Update and Delete need to know about a custom resource we created. AttributeError
    for the custom resources moto created itself (providers we do not run): moto then handles
    them its own way."""
    return cr._jitr_context  # type: ignore[attr-defined]


def _provider(context: dict[str, Any]) -> LambdaFunction | None:
    backend = lambda_backends[context["account_id"]][context["region"]]
    try:
        return backend.get_function(context["service_token"])
    except Exception:
        return None


_moto_custom_create = CustomModel.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _custom_create(
    cls: type[CustomModel],
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> CustomModel:
    properties = cloudformation_json["Properties"]
    service_token = properties["ServiceToken"]
    fn = lambda_backends[account_id][region_name].get_function(service_token)
    if not _is_ours(fn):
        return _moto_custom_create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    context = {
        "account_id": account_id,
        "region": region_name,
        "stack_id": kwargs["StackId"],
        "logical_id": kwargs["LogicalId"],
        "resource_type": kwargs["ResourceType"],
        "service_token": service_token,
        "properties": properties,
        "sequence": next(_stack_operation_sequence),
    }
    answer = _request(fn, "Create", context, None, properties)
    custom = CustomModel(region_name, str(uuid.uuid4()), context["logical_id"], answer["PhysicalResourceId"])
    custom.set_data(answer.get("Data") or {})
    custom._jitr_context = context  # type: ignore[attr-defined]
    stack = cloudformation_backends[account_id][region_name].get_stack(context["stack_id"])
    stack.add_custom_resource(custom)
    return custom


@classmethod  # type: ignore[misc]
def _custom_update(
    cls: type[CustomModel],
    original_resource: CustomModel,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> CustomModel:
    # moto has no update for custom resources: the resource would silently vanish from the
    # stack. Without a context of ours (not our provider), keep the old resource as it was.
    try:
        old = _context(original_resource)
    except AttributeError:
        return original_resource
    properties = cloudformation_json["Properties"]
    context = dict(old, properties=properties, service_token=properties["ServiceToken"])
    fn = _provider(context)
    if fn is None:
        raise RuntimeError(f"ServiceToken {context['service_token']} is not a function")
    old_id = original_resource.resource_name
    answer = _request(fn, "Update", context, old_id, properties, old["properties"])
    custom = CustomModel(region_name, str(uuid.uuid4()), context["logical_id"], answer["PhysicalResourceId"])
    custom.set_data(answer.get("Data") or {})
    custom._jitr_context = context  # type: ignore[attr-defined]
    stack = cloudformation_backends[account_id][region_name].get_stack(context["stack_id"])
    stack.add_custom_resource(custom)
    if answer["PhysicalResourceId"] != old_id:
        # A replacement: CloudFormation deletes the old one once the update succeeded.
        stack._jitr_cleanup = getattr(stack, "_jitr_cleanup", []) + [original_resource]
    return custom


def _custom_delete(self: CustomModel, account_id: str, region_name: str) -> None:
    context = _context(self)  # AttributeError: moto's own (no-op) delete path takes over
    fn = _provider(context)
    if fn is None:
        # The provider is gone already: CloudFormation would fail the deletion; a test
        # server has nothing better to do than to let the resource go.
        _say("cloudformation", f"{context['logical_id']}: provider gone, Delete not sent")
        return
    _request(fn, "Delete", context, self.resource_name, context["properties"])


CustomModel.create_from_cloudformation_json = _custom_create
CustomModel.update_from_cloudformation_json = _custom_update
CustomModel.delete = _custom_delete


# The answer to a ResponseURL: handed to the operation waiting for it. Answers to requests we
# did not send (custom resources moto runs its own way) keep moto's handling.
_moto_process_cfn_response = CloudFormationResponse.process_cfn_response


def _process_cfn_response(self: CloudFormationResponse) -> Any:
    try:
        raw = self.body.decode("utf-8") if isinstance(self.body, bytes) else (self.body or "")
        answer = json.loads(raw)
    except ValueError:
        answer = None
    request_id = answer.get("RequestId", "") if isinstance(answer, dict) else ""
    if request_id not in _sent:
        return _moto_process_cfn_response(self)
    waiter = _waiters.get(request_id)
    if waiter is None:  # S3 would take it all the same; the operation has moved on
        _say("cloudformation", f"late answer to request {request_id} ignored: {raw[:300]}")
    else:
        waiter.answered(answer)
    return 200, {"status": 200}, ""


CloudFormationResponse.process_cfn_response = _process_cfn_response


# Deletion order: moto deletes a stack's resources in set order, retrying failures, so a
# custom resource's provider function (or its role) may be gone before the Delete request is
# sent. CloudFormation deletes dependents first; the custom resources are the dependents of
# their providers, so ours go first, newest first.
_moto_resource_map_delete = ResourceMap.delete


def _resource_map_delete(self: ResourceMap) -> None:
    ours = []
    for logical_id, resource in list(self._parsed_resources.items()):
        if isinstance(resource, CustomModel) and hasattr(resource, "_jitr_context"):
            if self._resource_json_map.get(logical_id, {}).get("DeletionPolicy") != "Retain":
                ours.append((resource._jitr_context["sequence"], logical_id, resource))
    for _, logical_id, resource in sorted(ours, key=lambda item: item[0], reverse=True):
        resource.delete(self._account_id, self._region_name)
        self._parsed_resources.pop(logical_id, None)
    _moto_resource_map_delete(self)


ResourceMap.delete = _resource_map_delete


def _resource_event(stack: Stack, failure: _CustomResourceFailed, status: str) -> None:
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=failure.logical_id,
            physical_resource_id=failure.physical_id,
            resource_type=failure.resource_type,
            resource_status=status,
            resource_status_reason=failure.reason,
            resource_properties=None,
        )
    )


def _roll_back_creation(stack: Stack, failure: _CustomResourceFailed) -> None:
    """What CloudFormation does when a resource fails to create: delete what was created."""
    _say("cloudformation", f"{stack.name}: {failure.logical_id} CREATE_FAILED: {failure.reason}")
    _resource_event(stack, failure, "CREATE_FAILED")
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event(
        "ROLLBACK_IN_PROGRESS",
        resource_status_reason=f"The following resource(s) failed to create: [{failure.logical_id}]. "
        "Rollback requested by user.",
    )
    try:
        stack.resource_map.delete()
    except (Exception, _CustomResourceFailed) as e:
        stack.status = "ROLLBACK_FAILED"
        stack._add_stack_event("ROLLBACK_FAILED", resource_status_reason=str(e))
        return
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")
    # moto creates resources and outputs lazily, on first access: describing this stack
    # would otherwise create the rolled-back resources again. It has none, as on AWS.
    stack.resource_map._resource_json_map = {}
    stack.output_map = OutputMap(stack.resource_map, {}, stack.stack_id)


def _fail_update(stack: Stack, failure: _CustomResourceFailed) -> None:
    """A failed update. CloudFormation would also roll the updated resources back; moto's
    resources stay as they were updated, only the status says it."""
    _say("cloudformation", f"{stack.name}: {failure.logical_id} UPDATE_FAILED: {failure.reason}")
    _resource_event(stack, failure, "UPDATE_FAILED")
    stack._add_stack_event(
        "UPDATE_ROLLBACK_IN_PROGRESS",
        resource_status_reason=f"The following resource(s) failed to update: [{failure.logical_id}].",
    )
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    # Resources the update had yet to add would be created lazily on the next access: drop them.
    resources = stack.resource_map
    resources._resource_json_map = {
        k: v for k, v in resources._resource_json_map.items() if k in resources._parsed_resources
    }


def _clean_up_replaced(stack: Stack) -> None:
    """Deletes the custom resources an update replaced (new PhysicalResourceId)."""
    for replaced in getattr(stack, "_jitr_cleanup", []):
        try:
            replaced.delete(stack.account_id, stack.region_name)
        except (Exception, _CustomResourceFailed) as e:  # CloudFormation only warns, too
            _say("cloudformation", f"{stack.name}: deleting the replaced {replaced.logical_id}: {e}")
    stack._jitr_cleanup = []


_moto_create_resources = Stack.create_resources


def _create_resources(self: Stack) -> None:  # CreateStack (and nested stacks)
    try:
        with _Operation():
            _moto_create_resources(self)
    except _CustomResourceFailed as failure:
        _roll_back_creation(self, failure)


Stack.create_resources = _create_resources

_moto_stack_update = Stack.update


def _stack_update(self: Stack, *args: Any, **kwargs: Any) -> None:  # UpdateStack
    try:
        with _Operation():
            _moto_stack_update(self, *args, **kwargs)
    except _CustomResourceFailed as failure:
        _fail_update(self, failure)
        return
    _clean_up_replaced(self)


Stack.update = _stack_update

_moto_execute_change_set = CloudFormationBackend.execute_change_set


def _execute_change_set(self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = self.change_sets.get(change_set_name)
    if change_set is None:
        change_set = next((cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name), None)
    try:
        with _Operation():
            _moto_execute_change_set(self, change_set_name, stack_name)
    except _CustomResourceFailed as failure:
        stack = self.stacks[change_set.stack_id]
        change_set.execution_status = "EXECUTE_FAILED"
        if change_set.change_set_type == "CREATE":
            stack.template = change_set.template
            _roll_back_creation(stack, failure)
        else:
            _fail_update(stack, failure)
        return
    stack = self.stacks[change_set.stack_id]
    _clean_up_replaced(stack)
    # moto keeps the output map (and description) of the template the stack was created with:
    # for a change set's stack, the empty one. Rebuild them from the template just applied.
    stack._parse_template()
    stack.output_map = stack._create_output_map()
    stack.description = stack.template_dict.get("Description")
    for export in stack.exports:
        self.exports[export.name] = export


CloudFormationBackend.execute_change_set = _execute_change_set

_moto_delete_stack = CloudFormationBackend.delete_stack


def _delete_stack(self: CloudFormationBackend, name_or_stack_id: str) -> None:  # DeleteStack
    stack = self.stacks.get(name_or_stack_id)
    if stack is None:  # by name: moto recurses with the id
        return _moto_delete_stack(self, name_or_stack_id)
    try:
        with _Operation():
            _moto_delete_stack(self, name_or_stack_id)
    except _CustomResourceFailed as failure:
        # moto has already taken the stack out of its list; a failed deletion leaves it there.
        _say("cloudformation", f"{stack.name}: {failure.logical_id} DELETE_FAILED: {failure.reason}")
        self.stacks[stack.stack_id] = stack
        _resource_event(stack, failure, "DELETE_FAILED")
        stack.status = "DELETE_FAILED"
        stack._add_stack_event(
            "DELETE_FAILED",
            resource_status_reason=f"The following resource(s) failed to delete: [{failure.logical_id}].",
        )


CloudFormationBackend.delete_stack = _delete_stack


# ---------------------------------------------------------------------------------------------
# Ref of AWS::IoT::Policy. moto's `Ref` returns a resource's physical_resource_id, or the
# resource object itself when it has none, as moto's IoT policy has not.
# ---------------------------------------------------------------------------------------------

FakePolicy.physical_resource_id = property(lambda self: self.name)


# ---------------------------------------------------------------------------------------------
# Deleting an AWS::IoT::Policy. CloudFormation's handler deletes the policy's non-default
# versions first (an updated policy has several) and then calls DeletePolicy, which AWS
# refuses while certificates are attached (DeleteConflictException). moto's handler skips the
# first step, so a stack whose device policy was ever updated could never be deleted.
# ---------------------------------------------------------------------------------------------

_moto_delete_policy_cfn = FakePolicy.delete_from_cloudformation_json.__func__


def _delete_policy_cfn(cls, resource_name, cloudformation_json, account_id, region_name):
    from moto.iot.models import iot_backends

    backend = iot_backends[account_id][region_name]
    name = cloudformation_json.get("Properties", {}).get("PolicyName", resource_name)
    policy = backend.policies.get(name)
    if policy is not None:
        for version in list(policy.versions):
            if not version.is_default:
                backend.delete_policy_version(name, version.version_id)
    return _moto_delete_policy_cfn(cls, resource_name, cloudformation_json, account_id, region_name)


FakePolicy.delete_from_cloudformation_json = classmethod(_delete_policy_cfn)


# ---------------------------------------------------------------------------------------------
# CA registration: the same CA certificate registered twice.
#
# AWS IoT answers RegisterCACertificate for a certificate already registered in the account and
# region with ResourceAlreadyExistsException (HTTP 409) naming the registered CA in resourceId
# and resourceArn (RegisterCACertificate API reference, Errors; the same holds whatever
# certificateMode the second call asks for, which is why a mode change is never an in-place
# update). moto 5.2.1 registers it again, silently replacing the first registration, so
# a provider that adopts someone else's CA without noticing would pass every test.
# ---------------------------------------------------------------------------------------------

from moto.iot.exceptions import ResourceAlreadyExistsException as _IotAlreadyExists  # noqa: E402
from moto.iot.models import FakeCaCertificate, IoTBackend  # noqa: E402

_moto_register_ca_certificate = IoTBackend.register_ca_certificate


def _register_ca_certificate(self: IoTBackend, ca_certificate: str, *args: Any, **kwargs: Any) -> Any:
    # The id as moto computes it (the DER's SHA-256 here, see use_valid_cert above).
    candidate = FakeCaCertificate(ca_certificate, "INACTIVE", self.account_id, self.region_name, {})
    existing = self.ca_certificates.get(candidate.certificate_id)
    if existing is not None:
        raise _IotAlreadyExists(
            "The certificate is already provisioned or registered", existing.certificate_id, existing.arn
        )
    return _moto_register_ca_certificate(self, ca_certificate, *args, **kwargs)


IoTBackend.register_ca_certificate = _register_ca_certificate


# DescribeCACertificate reports the CA's certificateMode on AWS (CACertificateDescription in the
# API reference); moto 5.2.1 drops the mode RegisterCACertificate was given and never reports
# one, which would hide a mode mismatch from the provider's check.
from moto.iot.responses import IoTResponse  # noqa: E402

_moto_register_ca_response = IoTResponse.register_ca_certificate
_moto_ca_description = FakeCaCertificate.to_description_dict


def _register_ca_response(self: IoTResponse) -> Any:
    result = _moto_register_ca_response(self)  # raises when the CA is already registered
    pem = self._get_param("caCertificate")
    backend = self.iot_backend
    ca_id = FakeCaCertificate(pem, "INACTIVE", backend.account_id, backend.region_name, {}).certificate_id
    # AWS's default when the request names no mode.
    backend.ca_certificates[ca_id].certificate_mode = self._get_param("certificateMode") or "DEFAULT"
    return result


def _ca_description(self: FakeCaCertificate) -> dict[str, Any]:
    description = _moto_ca_description(self)
    description["certificateMode"] = getattr(self, "certificate_mode", "DEFAULT")
    return description


IoTResponse.register_ca_certificate = _register_ca_response
FakeCaCertificate.to_description_dict = _ca_description


# ---------------------------------------------------------------------------------------------
# IoT DescribeCertificate, as the activator reads it.
#
# AWS's CertificateDescription (AWS IoT API reference, "CertificateDescription") carries
# `caCertificateId`, the id of the CA the certificate was registered with, and `validity`,
# the certificate's own notBefore/notAfter. moto leaves `caCertificateId` out of
# DescribeCertificate (its description says "you might need keys below") and invents the
# validity: the registration time plus and minus one day, whatever the certificate says.
# Both restored here, for device and CA certificates alike (DescribeCACertificate uses the
# same description). tests/moto_lambda_selfcheck.py checks both.
# ---------------------------------------------------------------------------------------------

from cryptography import x509 as _x509  # noqa: E402
from moto.iot.models import FakeCertificate  # noqa: E402

_moto_certificate_init = FakeCertificate.__init__


def _certificate_init(self: FakeCertificate, certificate_pem: str, *args: Any, **kwargs: Any) -> None:
    _moto_certificate_init(self, certificate_pem, *args, **kwargs)
    try:
        cert = _x509.load_pem_x509_certificate(certificate_pem.encode("utf-8"))
    except ValueError:
        return  # moto takes PEMs it cannot parse unless use_valid_cert is on; AWS refuses them
    # moto's timestamps are naive UTC datetimes.
    self.validity_not_before = cert.not_valid_before_utc.replace(tzinfo=None)
    self.validity_not_after = cert.not_valid_after_utc.replace(tzinfo=None)


FakeCertificate.__init__ = _certificate_init

_moto_certificate_description = FakeCertificate.to_description_dict


def _certificate_description(self: FakeCertificate) -> dict[str, Any]:
    description = _moto_certificate_description(self)
    if self.ca_certificate_id:
        description["caCertificateId"] = self.ca_certificate_id
    return description


FakeCertificate.to_description_dict = _certificate_description


# =============================================================================================
# Destroy and stack protection (issue 7, items 13 and 18).
#
# What `jitr-infra destroy` and the protected `prod` stage rely on, where moto differs from AWS:
# the registration topic rule exists in CloudFormation, a function whose reserved concurrency is
# 0 is throttled, a failed resource deletion leaves the stack DELETE_FAILED, termination
# protection refuses DeleteStack, and a stack policy denies updates.
# =============================================================================================

from moto.awslambda.exceptions import LambdaClientError  # noqa: E402
from moto.cloudformation.exceptions import ValidationError  # noqa: E402
from moto.core.common_models import CloudFormationModel  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.iot.models import iot_backends  # noqa: E402


# ---------------------------------------------------------------------------------------------
# AWS::IoT::TopicRule. moto's CloudFormation skips the type (it logs "No Moto CloudFormation
# support"), so a stack's topic rule never exists in moto's IoT backend, although that backend has
# topic rules. Here CloudFormation creates, replaces (a new RuleName) or updates (ReplaceTopicRule)
# and deletes it in the IoT backend, as AWS does (AWS::IoT::TopicRule in the CloudFormation
# template reference: Ref is the rule name, Fn::GetAtt Arn its ARN; RuleName changes replace it).
# ---------------------------------------------------------------------------------------------


def _api_shape(value: Any) -> Any:
    """A TopicRulePayload's actions as the IoT API spells them: CloudFormation's property names
    are the API's member names with a capital first letter (Lambda.FunctionArn ->
    lambda.functionArn, CloudwatchLogs.LogGroupName -> cloudwatchLogs.logGroupName)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _api_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_shape(v) for v in value]
    return value


def _rule_arguments(properties: dict[str, Any]) -> dict[str, Any]:
    payload = properties.get("TopicRulePayload", {})
    return {
        "sql": payload.get("Sql", ""),
        "description": payload.get("Description", ""),
        "rule_disabled": bool(payload.get("RuleDisabled", False)),
        "actions": _api_shape(payload.get("Actions", [])),
        "error_action": _api_shape(payload.get("ErrorAction", {})),
        "aws_iot_sql_version": payload.get("AwsIotSqlVersion", "2016-03-23"),
    }


class _CfnTopicRule(CloudFormationModel):
    # moto's model metaclass files every model under the service its module names.
    __module__ = "moto.iot.jitr_topic_rule"

    def __init__(self, account_id: str, region_name: str, rule_name: str):
        self.account_id = account_id
        self.region_name = region_name
        self.rule_name = rule_name

    @property
    def physical_resource_id(self) -> str:
        return self.rule_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "RuleName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IoT::TopicRule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name != "Arn":
            raise UnformattedGetAttTemplateException()
        backend = iot_backends[self.account_id][self.region_name]
        return backend.rules[self.rule_name].arn

    def is_created(self) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _CfnTopicRule:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("RuleName", resource_name)
        iot_backends[account_id][region_name].create_topic_rule(name, **_rule_arguments(properties))
        return cls(account_id, region_name, name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls, original_resource: _CfnTopicRule, new_resource_name: str, cloudformation_json: Any,
        account_id: str, region_name: str,
    ) -> _CfnTopicRule:
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("RuleName", new_resource_name)
        backend = iot_backends[account_id][region_name]
        if name != original_resource.rule_name:  # a replacement: the new rule, then the old goes
            backend.create_topic_rule(name, **_rule_arguments(properties))
            original_resource.delete(account_id, region_name)
            return cls(account_id, region_name, name)
        backend.replace_topic_rule(name, **_rule_arguments(properties))
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str
    ) -> None:
        properties = cloudformation_json.get("Properties", {})
        cls(account_id, region_name, properties.get("RuleName", resource_name)).delete(account_id, region_name)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = iot_backends[account_id][region_name]
        if self.rule_name in backend.rules:  # already gone: CloudFormation skips it too
            backend.delete_topic_rule(self.rule_name)


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
        stack.events.append(
            Event(
                stack_id=stack.stack_id,
                stack_name=stack.name,
                logical_resource_id=logical_id,
                physical_resource_id=physical_id,
                resource_type=resource_type,
                resource_status="DELETE_FAILED",
                resource_status_reason=reason,
                resource_properties=None,
            )
        )
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
            stack.events.append(
                Event(
                    stack_id=stack.stack_id,
                    stack_name=stack.name,
                    logical_resource_id=logical_id,
                    physical_resource_id=physical_id,
                    resource_type=resource_type,
                    resource_status="UPDATE_FAILED",
                    resource_status_reason=reason,
                    resource_properties=None,
                )
            )
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


# ---------------------------------------------------------------------------------------------
# Lambda account concurrency. AWS keeps part of an account's concurrency limit unreserved: 100
# units, or the whole limit when it is lower (new accounts often have 10 or 50; Lambda
# Developer Guide, "Configuring reserved concurrency": "You can reserve up to the Unreserved
# account concurrency value minus 100"). A reservation that would cut into it is refused with
# InvalidParameterValueException, "Specified ReservedConcurrentExecutions for function
# decreases account's UnreservedConcurrentExecution below its minimum value of [N]." (N = 100,
# or the limit), by PutFunctionConcurrency and by CloudFormation's AWS::Lambda::Function
# handler, which then fails the resource. GetAccountSettings (Lambda API reference) reports
# AccountLimit.ConcurrentExecutions and UnreservedConcurrentExecutions.
#
# moto has no GetAccountSettings, enforces no limit unless one global environment variable is
# set (with a fixed minimum of 100), and ignores ReservedConcurrentExecutions on a
# CloudFormation update. Here every account and region has a limit (1000 unless a test sets
# another: POST /moto-api/jitr/lambda-concurrency-limit {"account", "region", "limit"}).
# ---------------------------------------------------------------------------------------------

from moto.awslambda import urls as _lambda_urls  # noqa: E402
from moto.awslambda.exceptions import InvalidParameterValueException  # noqa: E402
from moto.awslambda.models import LambdaBackend  # noqa: E402
from moto.awslambda.responses import LambdaResponse  # noqa: E402
from moto.moto_api._internal import urls as _moto_api_urls  # noqa: E402

LAMBDA_DEFAULT_CONCURRENCY_LIMIT = 1000
_concurrency_limits: dict[tuple[str, str], int] = {}  # (account, region) -> ConcurrentExecutions


def _concurrency_limit(account_id: str, region: str) -> int:
    return _concurrency_limits.get((account_id, region), LAMBDA_DEFAULT_CONCURRENCY_LIMIT)


def _reserved_by_others(backend: LambdaBackend, function_name: str | None) -> int:
    return sum(
        int(fn.reserved_concurrency)
        for fn in backend.list_functions()
        if fn.reserved_concurrency is not None and fn.function_name != function_name
    )


def _reservation_refusal(account_id: str, region: str, function_name: str | None, wanted: Any) -> str | None:
    """AWS's message when reserving `wanted` for the function would leave too little
    unreserved; None when it fits (or when nothing is reserved)."""
    if wanted is None:
        return None
    limit = _concurrency_limit(account_id, region)
    backend = lambda_backends[account_id][region]
    kept = min(100, limit)
    if limit - _reserved_by_others(backend, function_name) - int(wanted) >= kept:
        return None
    return (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        f"UnreservedConcurrentExecution below its minimum value of [{kept}]."
    )


def _put_function_concurrency(self: LambdaBackend, function_name: str, reserved_concurrency: str) -> str:
    fn = self.get_function(function_name)
    refusal = _reservation_refusal(self.account_id, self.region_name, fn.function_name, reserved_concurrency)
    if refusal:
        raise InvalidParameterValueException(refusal)
    fn.reserved_concurrency = int(reserved_concurrency)
    return fn.reserved_concurrency


LambdaBackend.put_function_concurrency = _put_function_concurrency


def _get_account_settings(self: LambdaResponse) -> Any:
    backend = self.backend
    functions = backend.list_functions()
    limit = _concurrency_limit(backend.account_id, backend.region_name)
    code_size = sum(int(getattr(fn, "code_size", 0) or 0) for fn in functions)
    body = {
        "AccountLimit": {
            "TotalCodeSize": 80530636800,
            "CodeSizeUnzipped": 262144000,
            "CodeSizeZipped": 52428800,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit - _reserved_by_others(backend, None),
        },
        "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def _account_settings_route(request: Any, full_url: str, headers: Any) -> Any:
    # Not LambdaResponse.dispatch: that finds the action by botocore's request URI, which has
    # the final slash the Rust SDK leaves out.
    response = LambdaResponse()
    response.setup_class(request, full_url, headers)
    return _get_account_settings(response)


# GET /2016-08-19/account-settings/, with or without the final slash (moto's routes become
# Flask rules, which match a trailing slash exactly).
_lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings$"] = _account_settings_route
_lambda_urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/$"] = _account_settings_route


def _set_concurrency_limit(request: Any, full_url: str, headers: Any) -> Any:
    size = int(headers.get("Content-Length") or 0)
    body = json.loads(request.environ["wsgi.input"].read(size) or b"{}")
    _concurrency_limits[(str(body["account"]), str(body["region"]))] = int(body["limit"])
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


_moto_api_urls.url_paths["{0}/moto-api/jitr/lambda-concurrency-limit"] = _set_concurrency_limit


def _reservation_failed(logical_id: str, physical_id: str, refusal: str) -> BaseException:
    """A failed AWS::Lambda::Function, worded as CloudFormation's resource handler words it."""
    reason = (
        f'Resource handler returned message: "{refusal} (Service: Lambda, Status Code: 400, '
        f'Request ID: {uuid.uuid4()})" (RequestToken: {uuid.uuid4()}, HandlerErrorCode: InvalidRequest)'
    )
    if getattr(_in_operation, "depth", 0):
        # The stack operation wrappers above turn this into CREATE_FAILED / UPDATE_FAILED.
        return _CustomResourceFailed(logical_id, "AWS::Lambda::Function", physical_id, reason)
    return ValueError(reason)


_moto_function_create_cfn = LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
_moto_function_update_cfn = LambdaFunction.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _function_create_cfn(
    cls: type[LambdaFunction],
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> LambdaFunction:
    wanted = cloudformation_json.get("Properties", {}).get("ReservedConcurrentExecutions")
    refusal = _reservation_refusal(account_id, region_name, None, wanted)
    if refusal:
        raise _reservation_failed(kwargs.get("LogicalId", resource_name), resource_name, refusal)
    return _moto_function_create_cfn(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)


@classmethod  # type: ignore[misc]
def _function_update_cfn(
    cls: type[LambdaFunction],
    original_resource: LambdaFunction,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> LambdaFunction:
    wanted = cloudformation_json.get("Properties", {}).get("ReservedConcurrentExecutions")
    refusal = _reservation_refusal(account_id, region_name, original_resource.function_name, wanted)
    if refusal:
        logical_id = getattr(original_resource, "logical_resource_id", original_resource.function_name)
        raise _reservation_failed(logical_id, original_resource.function_name, refusal)
    fn = _moto_function_update_cfn(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    )
    # CloudFormation puts or deletes the function's concurrency to match the template.
    fn.reserved_concurrency = None if wanted is None else int(wanted)
    return fn


LambdaFunction.create_from_cloudformation_json = _function_create_cfn
LambdaFunction.update_from_cloudformation_json = _function_update_cfn


from moto.server import main  # noqa: E402  (after the patches above)

if __name__ == "__main__":
    main(sys.argv[1:])
