"""Lambda functions really run: `provided.al2023` zips run their `bootstrap`.

AWS runs a custom runtime's `bootstrap` against the Lambda Runtime API (AWS Lambda Developer
Guide, "Using the Lambda runtime API for custom runtimes"), answers Event invocations with 202
at once, and reports a runtime error as `FunctionError: Unhandled` (Lambda API Reference,
"Invoke"). moto executes functions only through Docker, which the test machines do not have:
here, wherever moto would run a function (Invoke, custom resources, other event sources),
`bootstrap` runs as a local process against a Runtime API served on loopback. Functions of
other runtimes, and image functions, keep moto's behaviour.
"""
from __future__ import annotations

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

from ._base import ENDPOINT, INIT_TIMEOUT_S, LOG_TAIL_BYTES, LambdaFunction, WORK_DIR, _say, unix_time_millis, utcnow  # noqa: F401

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
