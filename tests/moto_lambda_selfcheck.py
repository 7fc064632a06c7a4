#!/usr/bin/env python3
"""Self-check of tests/moto_server.py's Lambda and custom resource support.

Run with the venv's Python, from anywhere:  .venv/bin/python tests/moto_lambda_selfcheck.py

Starts tests/moto_server.py on a free loopback port and, with boto3, checks that:
  - a `provided.al2023` function from S3 (the real activator bundle) runs: a synchronous
    invoke of `{}` returns FunctionError Unhandled naming JITR_CA_CERTIFICATE_ID, and an Event
    invoke answers 202 at once and runs in the background;
  - the Runtime API protocol, environment, timeouts and crashes behave (a small Python
    bootstrap from a ZipFile);
  - a stack (CreateStack) with a custom resource served by the real CA provider bundle
    registers the CA in moto's IoT and reaches CREATE_COMPLETE, with its Outputs and a
    dependent resource reading `Fn::GetAtt` of the custom resource; the same through a change
    set; a failing custom resource rolls its stack back; Update and Delete reach the provider;
  - IoT's DescribeCertificate answers as AWS does: `caCertificateId` present, and `validity` the
    certificate's own notBefore/notAfter (for DescribeCACertificate too);
  - every other patch module of tests/moto_jitr holds (section 7; CloudWatch's RPC v2 CBOR
    front end in section 9; other accounts, AssumeRole's trust policy and functions acting in
    their own account in section 10; slow stacks, on a second server started with
    JITR_MOTO_CFN_SECONDS, in section 11), and every module in
    `moto_jitr.PATCHES` was checked by at least one section.
Exits non-zero on any failure. The bundles are the zips the jitr-infra binary embeds, as
`cargo run -q -- synth` writes them.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import zipfile

import boto3
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "eu-west-1"  # not moto's default, so that a function's region really is passed on
ROLE = "arn:aws:iam::123456789012:role/selfcheck"

failures: list[str] = []
# The moto_jitr patch modules the checks exercised (every one in PATCHES must be).
covered: set[str] = set()


def covers(*modules: str) -> None:
    covered.update(modules)


def check(what: str, ok: bool, detail: object = "") -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}" + ("" if ok else f"\n       {detail}"))
    if not ok:
        failures.append(what)
    return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundles() -> tuple[str, str]:
    """The Lambda zips the jitr-infra binary embeds, as its synth writes them."""
    out = tempfile.mkdtemp(prefix="jitr-selfcheck-synth-")
    result = subprocess.run(
        ["cargo", "run", "-q", "--locked", "--", "synth", "--json", "--out", out],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    files = {a["package"]: os.path.join(out, a["file"]) for a in json.loads(result.stdout)["assets"]}
    return files["jitr-activator"], files["jitr-ca-provider"]


def ca_pem(name: str) -> str:
    return ca_with_key(name)[0]


def ca_with_key(name: str, not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key, subject


def device_pem(ca_key, ca_subject, cn: str, not_before: datetime.datetime, not_after: datetime.datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# A bootstrap in Python speaking the Runtime API, for what the real functions cannot show.
FAKE_BOOTSTRAP = r'''#!/usr/bin/python3
import json, os, sys, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"
print("fake bootstrap starting", flush=True)
while True:
    with urllib.request.urlopen(api + "/invocation/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        headers = dict(r.headers)
        event = json.loads(r.read())
    print("handling", json.dumps(event), flush=True)
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "exit" in event:
        sys.exit(event["exit"])
    if "fail" in event:
        body = json.dumps({"errorType": "Fake", "errorMessage": event["fail"]}).encode()
        urllib.request.urlopen(urllib.request.Request(api + f"/invocation/{rid}/error", body, method="POST"))
        continue
    out = {"event": event, "pid": os.getpid(), "headers": headers, "env": dict(os.environ)}
    if "read" in event:  # the file an environment variable names
        out["read"] = open(os.environ[event["read"]]).read()
    urllib.request.urlopen(urllib.request.Request(api + f"/invocation/{rid}/response", json.dumps(out).encode(), method="POST"))
'''


def fake_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("bootstrap", FAKE_BOOTSTRAP)  # no mode bits on purpose: moto_server sets them
    return buffer.getvalue()


def invoke(lam, name: str, event: object, **kwargs) -> tuple[dict, object]:
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs)
    raw = resp["Payload"].read()
    try:
        return resp, json.loads(raw)
    except ValueError:
        return resp, raw


def wait_stack(cfn, name: str, timeout: float = 120) -> tuple[str, float]:
    start = time.monotonic()
    while True:
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if not status.endswith("IN_PROGRESS") and status != "CREATE_PENDING":
            return status, time.monotonic() - start
        if time.monotonic() - start > timeout:
            return status, time.monotonic() - start
        time.sleep(0.1)


def outputs(cfn, name: str) -> dict[str, str]:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def registered(iot, ca_id: str) -> bool:
    """Whether moto's IoT knows the CA (moto has no ListCACertificates)."""
    try:
        return bool(ca_id) and bool(iot.describe_ca_certificate(certificateId=ca_id))
    except iot.exceptions.ResourceNotFoundException:
        return False


def template(pem: str, mode: str = "SNI_ONLY") -> str:
    return json.dumps(
        {
            "Resources": {
                "CaRegistration": {
                    "Type": "Custom::JitrCaRegistration",
                    "Properties": {
                        "ServiceToken": {"Fn::Sub": "arn:aws:lambda:${AWS::Region}:${AWS::AccountId}:function:ca-provider"},
                        "ServiceTimeout": 300,
                        "CaCertificatePem": pem,
                        "CertificateMode": mode,
                    },
                },
                # Depends on the custom resource's attribute: resolved only if the stack
                # waited for the provider's answer.
                "Dependent": {
                    "Type": "AWS::SSM::Parameter",
                    "Properties": {
                        "Name": {"Fn::Sub": "/selfcheck/${AWS::StackName}"},
                        "Type": "String",
                        "Value": {"Fn::GetAtt": ["CaRegistration", "CaCertificateId"]},
                    },
                },
            },
            "Outputs": {
                "CaCertificateId": {"Value": {"Fn::GetAtt": ["CaRegistration", "CaCertificateId"]}},
                "CaCertificateArn": {"Value": {"Fn::GetAtt": ["CaRegistration", "CaCertificateArn"]}},
                "Physical": {"Value": {"Ref": "CaRegistration"}},
                "DependentName": {"Value": {"Ref": "Dependent"}},
            },
        }
    )


def start_server(extra_env: dict[str, str]):
    """tests/moto_server.py on a free port, ready: (process, endpoint, log path, log file)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = os.path.join(tempfile.gettempdir(), f"moto-selfcheck-{port}.log")
    log = open(log_path, "w")
    env = dict(os.environ, MOTO_PORT="1")  # a stale MOTO_PORT must not win over -p
    env.pop("JITR_MOTO_CFN_SECONDS", None)  # slow stacks only where asked for
    env.update(extra_env)
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests/moto_server.py"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    give_up = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1)
            return server, endpoint, log_path, log
        except OSError:
            if time.monotonic() > give_up or server.poll() is not None:
                raise SystemExit(f"moto did not start; see {log_path}")
            time.sleep(0.1)


def main() -> int:
    activator_zip, provider_zip = bundles()
    print(f"bundles: {os.path.basename(activator_zip)}, {os.path.basename(provider_zip)}")
    server, endpoint, log_path, log = start_server({})
    print(f"moto on {endpoint}, log {log_path}")
    try:
        run_checks(endpoint, activator_zip, provider_zip)
        check_slow_operations()
    except Exception:
        failures.append("exception")
        traceback.print_exc()
    finally:
        server.send_signal(signal.SIGTERM)  # what scripts/test does
        try:
            server.wait(15)
            check("the server exits on SIGTERM", True)
        except subprocess.TimeoutExpired:
            check("the server exits on SIGTERM", False, "still running after 15 s: killed")
            server.kill()
        log.close()
    text = open(log_path).read()
    pids = [int(p) for p in re.findall(r"started pid (\d+)", text)]
    time.sleep(0.5)
    left = [p for p in pids if os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read().lower()]
    check(f"no function process outlives the server ({len(pids)} started)", not left, f"still running: {left}")
    forwarded = re.findall(r"^\[ca-provider\] \{", text, re.M)
    check("function log lines are forwarded to moto's stderr, prefixed", bool(forwarded), "no [ca-provider] {... lines")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from moto_jitr import PATCHES

    unchecked = [m for m in PATCHES if m not in covered]
    check(f"every moto_jitr patch module was checked ({len(PATCHES)})", not unchecked, f"unchecked: {unchecked}")
    if failures:
        print(f"\n{len(failures)} FAILED: {failures}\nmoto's log: {log_path}")
        return 1
    print("\nall checks passed")
    os.remove(log_path)
    return 0


def run_checks(endpoint: str, activator_zip: str, provider_zip: str) -> None:
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    config = Config(retries={"max_attempts": 1}, read_timeout=120)
    client = lambda name: session.client(name, endpoint_url=endpoint, config=config)  # noqa: E731
    s3, lam, cfn, iot, ssm, logs = (client(n) for n in ("s3", "lambda", "cloudformation", "iot", "ssm", "logs"))
    iam = client("iam")
    iam.create_role(RoleName="selfcheck", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    s3.create_bucket(Bucket="assets", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="assets", Key="activator.zip", Body=open(activator_zip, "rb").read())

    print("1. the activator, from S3")
    covers("lambda_executor")
    lam.create_function(
        FunctionName="activator", Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
        Code={"S3Bucket": "assets", "S3Key": "activator.zip"}, Timeout=30, MemorySize=128,
    )
    t = time.monotonic()
    resp, body = invoke(lam, "activator", {}, LogType="Tail")
    cold = time.monotonic() - t
    check("sync invoke: FunctionError Unhandled", resp.get("FunctionError") == "Unhandled", resp)
    check(
        "sync invoke: errorMessage names JITR_CA_CERTIFICATE_ID",
        isinstance(body, dict) and "JITR_CA_CERTIFICATE_ID" in str(body.get("errorMessage")),
        body,
    )
    print(f"       {body}  ({cold * 1000:.0f} ms, cold)")
    tail = base64_decode(resp.get("LogResult", ""))
    check("sync invoke: LogType=Tail returns the function's log", "JITR_CA_CERTIFICATE_ID" in tail, repr(tail))

    def starts() -> int:
        try:
            events = logs.filter_log_events(logGroupName="/aws/lambda/activator")["events"]
        except lam.exceptions.ResourceNotFoundException:
            return 0
        return sum(e["message"].startswith("START RequestId") for e in events)

    before = starts()
    t = time.monotonic()
    resp = lam.invoke(FunctionName="activator", InvocationType="Event", Payload=b"{}")
    took = time.monotonic() - t
    check("async invoke: 202", resp["StatusCode"] == 202, resp)
    check("async invoke: answered at once", took < 1.0, f"{took:.2f} s")
    give_up = time.monotonic() + 20
    while starts() <= before and time.monotonic() < give_up:
        time.sleep(0.1)
    check("async invoke: ran in the background (CloudWatch Logs START line)", starts() > before, starts())

    print("2. the Runtime API, with a fake bootstrap from a ZipFile")
    lam.create_function(
        FunctionName="fake", Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
        Code={"ZipFile": fake_zip()}, Timeout=2, MemorySize=256,
        Environment={"Variables": {"MY_VAR": "x y", "AWS_ENDPOINT_URL": "http://wrong"}},
    )
    t0 = time.time() * 1000
    resp, body = invoke(lam, "fake", {"echo": 1})
    ok = check("echo: the payload comes back", isinstance(body, dict) and body.get("event") == {"echo": 1}, body)
    if ok:
        e, h = body["env"], {k.lower(): v for k, v in body["headers"].items()}
        expected = {
            "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            # The execution role's session, not the dummy key: section 10.
            "AWS_LAMBDA_FUNCTION_NAME": "fake", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fake", "MY_VAR": "x y",
        }
        wrong = {k: e.get(k) for k, v in expected.items() if e.get(k) != v}
        check("environment: function variables and Lambda's (AWS_ENDPOINT_URL is moto's)", not wrong, wrong)
        check("environment: AWS_LAMBDA_LOG_STREAM_NAME and AWS_LAMBDA_RUNTIME_API", bool(e.get("AWS_LAMBDA_LOG_STREAM_NAME")) and e.get("AWS_LAMBDA_RUNTIME_API", "").startswith("127.0.0.1:"), e)
        deadline = int(h.get("lambda-runtime-deadline-ms", 0))
        check("headers: Deadline-Ms is now + Timeout", 1500 < deadline - t0 < 4000, deadline - t0)
        check("headers: Invoked-Function-Arn", h.get("lambda-runtime-invoked-function-arn", "").endswith(":function:fake"), h)
        check("headers: Trace-Id", h.get("lambda-runtime-trace-id", "").startswith("Root=1-"), h)
        pid = body["pid"]
        _, again = invoke(lam, "fake", {"echo": 2})
        check("warm: the second invocation reuses the process", isinstance(again, dict) and again.get("pid") == pid, again)
    resp, body = invoke(lam, "fake", {"fail": "boom"})
    check("error: FunctionError Unhandled with the error body", resp.get("FunctionError") == "Unhandled" and body == {"errorType": "Fake", "errorMessage": "boom"}, (resp.get("FunctionError"), body))
    t = time.monotonic()
    resp, body = invoke(lam, "fake", {"sleep": 30})
    took = time.monotonic() - t
    check("timeout: Sandbox.Timedout after Timeout", resp.get("FunctionError") == "Unhandled" and isinstance(body, dict) and body.get("errorType") == "Sandbox.Timedout" and took < 5, (took, body))
    resp, body = invoke(lam, "fake", {"exit": 3})
    check("crash: Runtime.ExitError", isinstance(body, dict) and body.get("errorType") == "Runtime.ExitError" and "status 3" in body.get("errorMessage", ""), body)
    resp, body = invoke(lam, "fake", {"echo": 3})
    check("after a timeout and a crash: a fresh process answers", isinstance(body, dict) and body.get("event") == {"echo": 3}, body)
    lam.update_function_configuration(FunctionName="fake", Environment={"Variables": {"MY_VAR": "changed"}})
    _, body = invoke(lam, "fake", {"echo": 4})
    check("new configuration: a new process with it", isinstance(body, dict) and body["env"].get("MY_VAR") == "changed", body)

    print("3. custom resources, with the CA provider (from a ZipFile)")
    lam.create_function(
        FunctionName="ca-provider", Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
        Code={"ZipFile": open(provider_zip, "rb").read()}, Timeout=120, MemorySize=128,
    )
    pem = ca_pem("selfcheck CA one")
    t = time.monotonic()
    cfn.create_stack(StackName="ca-one", TemplateBody=template(pem))
    status, _ = wait_stack(cfn, "ca-one")
    took = time.monotonic() - t
    check("CreateStack: CREATE_COMPLETE", status == "CREATE_COMPLETE", (status, events(cfn, "ca-one")))
    print(f"       CreateStack to CREATE_COMPLETE: {took:.2f} s (provider cold start included)")
    out = outputs(cfn, "ca-one")
    ca_id = out.get("CaCertificateId", "")
    check("Outputs: CaCertificateId is a registered CA", registered(iot, ca_id), out)
    check("Ref: the physical id the provider answered", out.get("Physical") == ca_id, out)
    if ca_id:
        ca = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
        check("IoT: the CA is ACTIVE", ca.get("status") == "ACTIVE", ca)
    dependent = ssm.get_parameter(Name=out.get("DependentName", "?"))["Parameter"]["Value"] if out.get("DependentName") else None
    check("a resource depending on Fn::GetAtt of the custom resource got its value", dependent == ca_id, dependent)

    t = time.monotonic()
    cfn.create_stack(StackName="ca-one-warm", TemplateBody=template(ca_pem("selfcheck CA warm")))
    status, _ = wait_stack(cfn, "ca-one-warm")
    print(f"       CreateStack to CREATE_COMPLETE, warm provider: {time.monotonic() - t:.2f} s")
    check("CreateStack (warm): CREATE_COMPLETE", status == "CREATE_COMPLETE", status)
    cfn.delete_stack(StackName="ca-one-warm")

    pem2 = ca_pem("selfcheck CA two")
    cfn.update_stack(StackName="ca-one", TemplateBody=template(pem2))
    status, _ = wait_stack(cfn, "ca-one")
    check("UpdateStack (new CA): UPDATE_COMPLETE", status == "UPDATE_COMPLETE", (status, events(cfn, "ca-one")))
    new_id = outputs(cfn, "ca-one").get("CaCertificateId", "")
    check("Update: the provider registered the new CA", new_id != ca_id and registered(iot, new_id), (ca_id, new_id))
    check("Update: the replaced CA was deregistered (Delete sent)", not registered(iot, ca_id), ca_id)

    cfn.delete_stack(StackName="ca-one")
    check("DeleteStack: the provider deregistered the CA", not registered(iot, new_id), new_id)

    print("4. custom resources through a change set")
    pem3 = ca_pem("selfcheck CA three")
    t = time.monotonic()
    cs = cfn.create_change_set(StackName="ca-cs", ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=template(pem3))
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=cs["Id"], WaiterConfig={"Delay": 1})
    cfn.execute_change_set(ChangeSetName=cs["Id"])
    status, _ = wait_stack(cfn, "ca-cs")
    print(f"       change set to CREATE_COMPLETE: {time.monotonic() - t:.2f} s")
    check("change set: CREATE_COMPLETE", status == "CREATE_COMPLETE", status)
    out = outputs(cfn, "ca-cs")
    check("change set: Outputs present, CA registered", registered(iot, out.get("CaCertificateId", "")), out)
    cfn.delete_stack(StackName="ca-cs")
    check("change set stack deleted: CA deregistered", not registered(iot, out.get("CaCertificateId", "")), out)

    covers("custom_resources")
    print("5. a failing custom resource")
    cfn.create_stack(StackName="ca-bad", TemplateBody=template("not a certificate"))
    status, _ = wait_stack(cfn, "ca-bad")
    evts = events(cfn, "ca-bad")
    check("CreateStack: ROLLBACK_COMPLETE", status == "ROLLBACK_COMPLETE", (status, evts))
    reason = next((e.get("ResourceStatusReason", "") for e in evts if e["ResourceStatus"] == "CREATE_FAILED"), "")
    check("events: CREATE_FAILED with the provider's reason", "CaCertificatePem" in reason, evts)
    print(f"       reason: {reason}")

    print("6. IoT DescribeCertificate as AWS answers it")
    check_describe_certificate(iot)
    check_list_certificates_by_ca(iot, endpoint)
    print("7. the other patches, one each")
    check_patches(s3, lam, cfn, iot)
    print("8. CloudFormation alarms, a Number parameter in a function's environment")
    check_alarms(cfn, client("cloudwatch"))
    check_environment_strings(cfn, lam)
    check_layers(cfn, lam, s3)
    print("9. CloudWatch over Smithy RPC v2 CBOR; metrics from EMF log events")
    check_cloudwatch_cbor(endpoint, client("cloudwatch"))
    check_emf(logs, client("cloudwatch"))
    print("10. other accounts: AssumeRole's trust policy, functions in their own account")
    check_accounts(endpoint, provider_zip)


def check_emf(logs, cloudwatch) -> None:
    """An EMF log event becomes a metric datum per dimension set; other events do not."""
    covers("emf_metrics")
    logs.create_log_group(logGroupName="emf-selfcheck")
    logs.create_log_stream(logGroupName="emf-selfcheck", logStreamName="s")
    now = datetime.datetime.now(datetime.timezone.utc)
    emf = {"_aws": {"Timestamp": int(now.timestamp() * 1000), "CloudWatchMetrics": [
        {"Namespace": "EmfSelfcheck", "Dimensions": [["FunctionName"]], "Metrics": [{"Name": "Hits", "Unit": "Count"}]}]},
        "FunctionName": "f", "Hits": 2}
    logs.put_log_events(logGroupName="emf-selfcheck", logStreamName="s", logEvents=[
        {"timestamp": int(now.timestamp() * 1000), "message": json.dumps(emf)},
        {"timestamp": int(now.timestamp() * 1000), "message": json.dumps({"Hits": 5, "FunctionName": "f"})},
    ])
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m0", "MetricStat": {"Metric": {"Namespace": "EmfSelfcheck", "MetricName": "Hits",
                            "Dimensions": [{"Name": "FunctionName", "Value": "f"}]}, "Period": 60, "Stat": "Sum"}}],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=1),
    )["MetricDataResults"][0]
    check("EMF: the document's value is a metric datum, a plain JSON line is not", sum(result["Values"]) == 2.0, result)


def check_cloudwatch_cbor(endpoint: str, cloudwatch) -> None:
    """CloudWatch answers RPC v2 CBOR requests (what current AWS SDKs send) from the same
    state as the query protocol, timestamps tagged, errors as `__type`."""
    covers("cloudwatch_rpc_v2_cbor")
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from moto_jitr.cloudwatch_rpc_v2_cbor import decode, encode

    def call(operation: str, body: dict) -> tuple[int, dict, dict]:
        request = urllib.request.Request(
            f"{endpoint}/service/GraniteServiceVersion20100801/operation/{operation}",
            data=encode(body), method="POST",
            headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor",
                     "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/monitoring/aws4_request, SignedHeaders=host, Signature=0"},
        )
        try:
            with urllib.request.urlopen(request) as r:
                return r.status, dict(r.headers), decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), decode(e.read())

    now = datetime.datetime.now(datetime.timezone.utc)
    status, headers, _ = call("PutMetricData", {"Namespace": "Selfcheck", "MetricData": [
        {"MetricName": "Count", "Value": 4.0, "Timestamp": now}]})
    check("CBOR PutMetricData: 200, smithy-protocol answered", status == 200 and headers.get("smithy-protocol") == "rpc-v2-cbor", (status, headers))
    status, _, body = call("GetMetricData", {
        "MetricDataQueries": [{"Id": "m0", "MetricStat": {"Metric": {"Namespace": "Selfcheck", "MetricName": "Count"}, "Period": 60, "Stat": "Sum"}}],
        "StartTime": now - datetime.timedelta(minutes=5), "EndTime": now + datetime.timedelta(minutes=1)})
    result = (body.get("MetricDataResults") or [{}])[0]
    check("CBOR GetMetricData: the value, timestamps as datetimes (tag 1)",
          status == 200 and result.get("Values") == [4.0] and all(isinstance(t, datetime.datetime) for t in result.get("Timestamps", [None])), body)
    cloudwatch.put_metric_alarm(AlarmName="selfcheck-alarm", Namespace="Selfcheck", MetricName="Count", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    status, _, _ = call("SetAlarmState", {"AlarmName": "selfcheck-alarm", "StateValue": "ALARM", "StateReason": "selfcheck"})
    alarm = cloudwatch.describe_alarms(AlarmNames=["selfcheck-alarm"])["MetricAlarms"][0]
    check("CBOR SetAlarmState changes what the query protocol reads", status == 200 and alarm["StateValue"] == "ALARM", alarm)
    status, _, body = call("SetAlarmState", {"AlarmName": "no-such-alarm", "StateValue": "OK", "StateReason": "x"})
    check("CBOR errors: the status and __type", status == 404 and str(body.get("__type", "")).endswith("#ResourceNotFound"), (status, body))


def check_patches(s3, lam, cfn, iot) -> None:
    """One check for each patch module sections 1-6 do not exercise."""
    from botocore.exceptions import ClientError

    def error_code(call) -> str | None:
        try:
            call()
        except ClientError as e:
            return e.response["Error"]["Code"]
        return None

    covers("s3_expected_owner")
    check("S3: the owner's ExpectedBucketOwner is served", error_code(lambda: s3.head_bucket(Bucket="assets", ExpectedBucketOwner="123456789012")) is None)
    code = error_code(lambda: s3.head_bucket(Bucket="assets", ExpectedBucketOwner="111122223333"))
    check("S3: another ExpectedBucketOwner is refused with 403", code in ("403", "AccessDenied"), code)

    covers("lambda_account_concurrency")
    settings = lam.get_account_settings()
    check("Lambda: GetAccountSettings reports the account's limit", settings.get("AccountLimit", {}).get("ConcurrentExecutions") == 1000, settings)
    code = error_code(lambda: lam.put_function_concurrency(FunctionName="activator", ReservedConcurrentExecutions=950))
    check("Lambda: a reservation into the unreserved 100 is refused", code == "InvalidParameterValueException", code)

    covers("reserved_concurrency_throttle")
    lam.put_function_concurrency(FunctionName="activator", ReservedConcurrentExecutions=0)
    code = error_code(lambda: lam.invoke(FunctionName="activator", Payload=b"{}"))
    check("Lambda: reserved concurrency 0 throttles Invoke", code == "TooManyRequestsException", code)
    lam.delete_function_concurrency(FunctionName="activator")

    covers("iot_policy", "topic_rule", "stack_deletion", "stack_policy")
    policy_doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}

    def stack_template(action: str) -> str:
        policy = dict(policy_doc, Statement=[dict(policy_doc["Statement"][0], Action=action)])
        return json.dumps({
            "Resources": {
                "Policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "selfcheck-policy", "PolicyDocument": policy}},
                "Rule": {"Type": "AWS::IoT::TopicRule", "Properties": {"RuleName": "selfcheck_rule", "TopicRulePayload": {"Sql": "SELECT * FROM 'selfcheck'", "Actions": [], "RuleDisabled": False}}},
            },
            "Outputs": {"PolicyName": {"Value": {"Ref": "Policy"}}},
        })

    cfn.create_stack(StackName="patches", TemplateBody=stack_template("iot:Connect"))
    status, _ = wait_stack(cfn, "patches")
    check("CloudFormation: the IoT stack reaches CREATE_COMPLETE", status == "CREATE_COMPLETE", (status, events(cfn, "patches")))
    check("CloudFormation: Ref of AWS::IoT::Policy is its name", outputs(cfn, "patches").get("PolicyName") == "selfcheck-policy", outputs(cfn, "patches"))
    rule = error_code(lambda: iot.get_topic_rule(ruleName="selfcheck_rule"))
    check("CloudFormation: AWS::IoT::TopicRule exists in IoT", rule is None, rule)

    cfn.set_stack_policy(StackName="patches", StackPolicyBody=json.dumps({"Statement": [
        {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
        {"Effect": "Deny", "Action": "Update:*", "Principal": "*", "Resource": "LogicalResourceId/Policy"},
    ]}))
    cs = cfn.create_change_set(StackName="patches", ChangeSetName="denied", ChangeSetType="UPDATE", TemplateBody=stack_template("iot:Publish"))
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=cs["Id"], WaiterConfig={"Delay": 1})
    cfn.execute_change_set(ChangeSetName=cs["Id"])
    status, _ = wait_stack(cfn, "patches")
    check("CloudFormation: a stack policy denies the update", status == "UPDATE_ROLLBACK_COMPLETE", (status, events(cfn, "patches")))

    cfn.update_termination_protection(StackName="patches", EnableTerminationProtection=True)
    code = error_code(lambda: cfn.delete_stack(StackName="patches"))
    check("CloudFormation: termination protection refuses DeleteStack", code == "ValidationError", code)
    cfn.update_termination_protection(StackName="patches", EnableTerminationProtection=False)
    cfn.delete_stack(StackName="patches")


def check_alarms(cfn, cw) -> None:
    """AWS::CloudWatch::Alarm exists in CloudWatch after CreateStack (a metric alarm and a
    Metrics Insights one), is updated in place, replaced on a new name, and deleted."""
    covers("cloudwatch_alarm_cfn")

    def template(name: str, threshold: int) -> str:
        return json.dumps({
            "Resources": {
                "Metric": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
                    "AlarmName": name, "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                    "Dimensions": [{"Name": "QueueName", "Value": "q"}], "Statistic": "Maximum", "Period": 300,
                    "EvaluationPeriods": 1, "Threshold": threshold, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching", "AlarmActions": ["arn:aws:sns:eu-west-1:123456789012:t"],
                }},
                "Query": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
                    "AlarmName": "selfcheck-query", "EvaluationPeriods": 1, "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "Metrics": [{"Id": "q1", "Period": 300, "ReturnData": True,
                                 "Expression": "SELECT SUM(Failure) FROM SCHEMA(\"AWS/IoT\", ActionType, RuleName)"}],
                }},
            },
            "Outputs": {"Name": {"Value": {"Ref": "Metric"}}, "Arn": {"Value": {"Fn::GetAtt": ["Metric", "Arn"]}}},
        })

    def alarms() -> dict[str, dict]:
        return {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix="selfcheck-")["MetricAlarms"]}

    cfn.create_stack(StackName="alarms", TemplateBody=template("selfcheck-metric", 1))
    status, _ = wait_stack(cfn, "alarms")
    check("CloudFormation: the alarm stack reaches CREATE_COMPLETE", status == "CREATE_COMPLETE", (status, events(cfn, "alarms")))
    found = alarms()
    metric = found.get("selfcheck-metric", {})
    check("CloudWatch: the stack's metric alarm exists with its dimension and missing-data rule",
          metric.get("Dimensions") == [{"Name": "QueueName", "Value": "q"}] and metric.get("TreatMissingData") == "notBreaching", found)
    query = found.get("selfcheck-query", {})
    check("CloudWatch: the stack's Metrics Insights alarm exists with its query",
          "SCHEMA" in str(query.get("Metrics")), found)
    out = outputs(cfn, "alarms")
    check("CloudFormation: Ref of an alarm is its name, GetAtt Arn its ARN",
          out.get("Name") == "selfcheck-metric" and out.get("Arn", "").endswith(":alarm:selfcheck-metric"), out)
    cfn.update_stack(StackName="alarms", TemplateBody=template("selfcheck-metric", 5))
    wait_stack(cfn, "alarms")
    check("CloudFormation: an alarm's update reaches CloudWatch", alarms().get("selfcheck-metric", {}).get("Threshold") == 5.0, alarms())
    cfn.update_stack(StackName="alarms", TemplateBody=template("selfcheck-renamed", 5))
    wait_stack(cfn, "alarms")
    check("CloudFormation: a new AlarmName replaces the alarm", sorted(alarms()) == ["selfcheck-query", "selfcheck-renamed"], sorted(alarms()))
    cfn.delete_stack(StackName="alarms")
    check("CloudFormation: deleting the stack deletes its alarms", not alarms(), sorted(alarms()))


def check_environment_strings(cfn, lam) -> None:
    """The Ref of a Number parameter in a function's environment is a string."""
    covers("lambda_environment_strings")
    body = json.dumps({
        "Parameters": {"Units": {"Type": "Number"}},
        "Resources": {"Fn": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "selfcheck-env", "Runtime": "provided.al2023", "Handler": "bootstrap", "Role": ROLE,
            "Code": {"S3Bucket": "assets", "S3Key": "activator.zip"},
            "Environment": {"Variables": {"UNITS": {"Ref": "Units"}, "TEXT": "x"}},
        }}},
    })
    cfn.create_stack(StackName="env", TemplateBody=body, Parameters=[{"ParameterKey": "Units", "ParameterValue": "7"}])
    status, _ = wait_stack(cfn, "env")
    check("CloudFormation: the function stack reaches CREATE_COMPLETE", status == "CREATE_COMPLETE", (status, events(cfn, "env")))
    variables = lam.get_function_configuration(FunctionName="selfcheck-env")["Environment"]["Variables"]
    check("Lambda: a Number parameter's Ref in the environment is the string \"7\"", variables == {"UNITS": "7", "TEXT": "x"}, variables)
    cfn.delete_stack(StackName="env")


def check_layers(cfn, lam, s3) -> None:
    """AWS::Lambda::LayerVersion through CloudFormation, and a function reading its layer."""
    covers("lambda_layers")

    def layer_zip(text: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("data/x.txt", text)
        return buffer.getvalue()

    s3.put_object(Bucket="assets", Key="layer-1.zip", Body=layer_zip("layer one"))
    s3.put_object(Bucket="assets", Key="layer-2.zip", Body=layer_zip("layer two"))
    s3.put_object(Bucket="assets", Key="fake.zip", Body=fake_zip())

    def body(key: str | None) -> str:
        function = {
            "FunctionName": "selfcheck-layered", "Runtime": "provided.al2023", "Handler": "bootstrap", "Role": ROLE,
            "Code": {"S3Bucket": "assets", "S3Key": "fake.zip"}, "Timeout": 5,
            "Environment": {"Variables": {"MY_FILE": "/opt/data/x.txt", "OTHER": "/optional"}},
        }
        resources = {"Fn": {"Type": "AWS::Lambda::Function", "Properties": function}}
        if key:
            resources["Layer"] = {"Type": "AWS::Lambda::LayerVersion", "Properties": {
                "LayerName": "selfcheck-layer", "CompatibleRuntimes": ["provided.al2023"],
                "CompatibleArchitectures": ["x86_64"], "Content": {"S3Bucket": "assets", "S3Key": key}}}
            function["Layers"] = [{"Ref": "Layer"}]
        template = {"Resources": dict(sorted(resources.items(), key=lambda kv: kv[0] != "Layer"))}
        if key:
            template["Outputs"] = {"LayerArn": {"Value": {"Ref": "Layer"}}}
        return json.dumps(template)

    def layers() -> list[str]:
        conf = lam.get_function(FunctionName="selfcheck-layered")["Configuration"]
        return [layer["Arn"] for layer in conf.get("Layers", [])]

    def versions() -> list[int]:
        return [v["Version"] for v in lam.list_layer_versions(LayerName="selfcheck-layer")["LayerVersions"]]

    cfn.create_stack(StackName="layers", TemplateBody=body("layer-1.zip"))
    status, _ = wait_stack(cfn, "layers")
    check("CloudFormation: a LayerVersion stack reaches CREATE_COMPLETE", status == "CREATE_COMPLETE", (status, events(cfn, "layers")))
    arn = outputs(cfn, "layers").get("LayerArn", "")
    check("CloudFormation: Ref of a LayerVersion is its ARN, under its LayerName", arn.endswith(":layer:selfcheck-layer:1"), arn)
    check("Lambda: the function's Layers hold the version", layers() == [arn], layers())
    content = lam.get_layer_version(LayerName="selfcheck-layer", VersionNumber=1)["Content"]
    try:
        fetched = urllib.request.urlopen(content["Location"], timeout=10).read()
    except (OSError, ValueError) as e:
        fetched = repr(e).encode()
    digest = base64.b64encode(hashlib.sha256(fetched).digest()).decode()
    try:
        text = zipfile.ZipFile(io.BytesIO(fetched)).read("data/x.txt").decode()
    except (zipfile.BadZipFile, KeyError):
        text = None
    check("Lambda: GetLayerVersion's Content.Location downloads the layer (CodeSha256 matches)",
          text == "layer one" and digest == content["CodeSha256"], (content, fetched[:80]))
    _, out = invoke(lam, "selfcheck-layered", {"read": "MY_FILE"})
    env = out.get("env", {}) if isinstance(out, dict) else {}
    check("executor: the layer's file is readable where the /opt/ variable points", isinstance(out, dict) and out.get("read") == "layer one", out)
    check("executor: /opt/ values point into a directory of the function's own, others unchanged",
          not env.get("MY_FILE", "/opt/").startswith("/opt/") and env.get("OTHER") == "/optional", env)
    cfn.update_stack(StackName="layers", TemplateBody=body("layer-2.zip"))
    status, _ = wait_stack(cfn, "layers")
    new_arn = outputs(cfn, "layers").get("LayerArn", "")
    check("CloudFormation: new content replaces the layer: version 2, the function follows, version 1 deleted",
          status == "UPDATE_COMPLETE" and new_arn.endswith(":layer:selfcheck-layer:2") and layers() == [new_arn] and versions() == [2],
          (status, new_arn, layers(), versions()))
    _, out = invoke(lam, "selfcheck-layered", {"read": "MY_FILE"})
    check("executor: the new version's file after the update", isinstance(out, dict) and out.get("read") == "layer two", out)
    cfn.update_stack(StackName="layers", TemplateBody=body(None))
    status, _ = wait_stack(cfn, "layers")
    check("CloudFormation: dropping Layers and the layer leaves the function without layers, no version left",
          status == "UPDATE_COMPLETE" and layers() == [] and versions() == [], (status, layers(), versions()))
    cfn.delete_stack(StackName="layers")


def check_list_certificates_by_ca(iot, endpoint: str) -> None:
    covers("iot_list_certificates_by_ca")
    pem, key, subject = ca_with_key("selfcheck list-by-CA CA")
    ca_id = iot.register_ca_certificate(
        caCertificate=pem, setAsActive=True, allowAutoRegistration=True, certificateMode="SNI_ONLY"
    )["certificateId"]
    now = datetime.datetime.now(datetime.timezone.utc)
    ids = []
    for i in range(5):
        device = device_pem(key, subject, f"selfcheck-list-{i}", now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
        ids.append(iot.register_certificate(certificatePem=device, caCertificatePem=pem, status="PENDING_ACTIVATION")["certificateId"])
    # Creation dates 5, 4, 3, 3, 1 hours ago: two tie, broken by id.
    hours = [5, 4, 3, 3, 1]
    for cert_id, h in zip(ids, hours):
        body = json.dumps({"account": "123456789012", "region": REGION, "certificateId": cert_id,
                           "creationDate": (now - datetime.timedelta(hours=h)).timestamp()}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/jitr/iot-certificate-creation-date", data=body, method="POST"))
    expected = sorted(ids, key=lambda i: (-hours[ids.index(i)], i))  # oldest first, ties by id

    def pages(ascending: bool) -> tuple[list[str], int]:
        got, marker, n = [], None, 0
        while True:
            kwargs = {"caCertificateId": ca_id, "pageSize": 2, "ascendingOrder": ascending}
            if marker:
                kwargs["marker"] = marker
            page = iot.list_certificates_by_ca(**kwargs)
            n += 1
            got += [c["certificateId"] for c in page["certificates"]]
            marker = page.get("nextMarker")
            if not marker:
                return got, n

    ascending, n = pages(True)
    check("ListCertificatesByCA: pages of pageSize, oldest first, ties by id", (ascending, n) == (expected, 3), (ascending, n, expected))
    descending, _ = pages(False)
    check("ListCertificatesByCA: newest first unless isAscendingOrder", descending == expected[::-1], descending)
    full = iot.list_certificates_by_ca(caCertificateId=ca_id, ascendingOrder=False)
    check("ListCertificatesByCA: no nextMarker on the last page", "nextMarker" not in full and len(full["certificates"]) == 5, full.get("nextMarker"))
    dated = {c["certificateId"]: c["creationDate"] for c in full["certificates"]}
    check("ListCertificatesByCA: creationDate as set", abs(dated[ids[0]].timestamp() - (now - datetime.timedelta(hours=5)).timestamp()) < 1, dated[ids[0]])

    def error_code(**kwargs) -> str | None:
        try:
            iot.list_certificates_by_ca(caCertificateId=ca_id, **kwargs)
        except iot.exceptions.ClientError as e:
            return e.response["Error"]["Code"]
        return None

    for bad in ({"marker": "bm90LWEtbWFya2Vy"}, {"marker": "not base64!"}, {"pageSize": 251}):
        code = error_code(**bad)
        check(f"ListCertificatesByCA {bad}: InvalidRequestException", code == "InvalidRequestException", code)


def check_describe_certificate(iot) -> None:
    # Dates far from now, so that moto's invented validity (now +/- 1 day) cannot pass.
    utc = datetime.timezone.utc
    ca_from, ca_to = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=utc), datetime.datetime(2040, 6, 7, 8, 9, 10, tzinfo=utc)
    dev_from, dev_to = datetime.datetime(2021, 2, 3, 4, 5, 6, tzinfo=utc), datetime.datetime(2039, 5, 6, 7, 8, 9, tzinfo=utc)
    pem, key, subject = ca_with_key("selfcheck describe CA", ca_from, ca_to)
    ca_id = iot.register_ca_certificate(
        caCertificate=pem, setAsActive=True, allowAutoRegistration=True, certificateMode="SNI_ONLY"
    )["certificateId"]
    covers("iot_ca_registration", "iot_certificate_ids", "iot_certificate_description")
    try:
        iot.register_ca_certificate(caCertificate=pem, setAsActive=True, allowAutoRegistration=True, certificateMode="SNI_ONLY")
        again = None
    except iot.exceptions.ResourceAlreadyExistsException:
        again = "ResourceAlreadyExists"
    check("RegisterCACertificate twice: ResourceAlreadyExists", again == "ResourceAlreadyExists", again)
    mode = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"].get("certificateMode")
    check("DescribeCACertificate: certificateMode as registered", mode == "SNI_ONLY", mode)
    auto = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"].get("autoRegistrationStatus")
    check("DescribeCACertificate: autoRegistrationStatus as registered", auto == "ENABLE", auto)
    iot.update_ca_certificate(certificateId=ca_id, newAutoRegistrationStatus="DISABLE")
    auto = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"].get("autoRegistrationStatus")
    check("UpdateCACertificate: newAutoRegistrationStatus DISABLE", auto == "DISABLE", auto)
    iot.update_ca_certificate(certificateId=ca_id, newAutoRegistrationStatus="ENABLE")
    device = device_pem(key, subject, "selfcheck-device", dev_from, dev_to)
    cert_id = iot.register_certificate(certificatePem=device, caCertificatePem=pem, status="PENDING_ACTIVATION")["certificateId"]
    der = x509.load_pem_x509_certificate(device.encode()).public_bytes(serialization.Encoding.DER)
    check("RegisterCertificate: the id is the SHA-256 of the DER", cert_id == hashlib.sha256(der).hexdigest(), cert_id)
    described = iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    check("DescribeCertificate: caCertificateId is the CA it was registered with", described.get("caCertificateId") == ca_id, described)
    validity = described.get("validity", {})
    check(
        "DescribeCertificate: validity is the certificate's own",
        (validity.get("notBefore"), validity.get("notAfter")) == (dev_from, dev_to),
        validity,
    )
    ca = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    ca_validity = ca.get("validity", {})
    check(
        "DescribeCACertificate: validity is the CA certificate's own",
        (ca_validity.get("notBefore"), ca_validity.get("notAfter")) == (ca_from, ca_to),
        ca_validity,
    )


OTHER_ACCOUNT = "111122223333"


def account_session(endpoint: str, account: str):
    """Credentials of an IAM user of `account`: moto's x-moto-account-id header, on the two IAM
    calls that make the user and its key only (see moto_jitr/sts_assume_role_trust)."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")

    def in_account(request, **_kwargs) -> None:
        request.headers["x-moto-account-id"] = account

    iam.meta.events.register("before-sign.iam.*", in_account)
    user = f"selfcheck-admin-{account}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                 region_name=REGION)


def trust_policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_error(sts, role_arn: str, **kwargs) -> tuple[int, dict] | None:
    try:
        sts.assume_role(RoleArn=role_arn, RoleSessionName="selfcheck", **kwargs)
    except sts.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]
    return None


def check_accounts(endpoint: str, provider_zip: str) -> None:
    covers("sts_assume_role_trust", "lambda_execution_role")
    b = account_session(endpoint, OTHER_ACCOUNT)
    client_b = lambda name: b.client(name, endpoint_url=endpoint)  # noqa: E731
    ident = client_b("sts").get_caller_identity()
    check("an IAM user's key of another account acts in it", ident["Account"] == OTHER_ACCOUNT, ident)
    iam_b = client_b("iam")
    allow = {"Effect": "Allow", "Action": "sts:AssumeRole"}
    roles = {
        "by-account": trust_policy(dict(allow, Principal={"AWS": "123456789012"})),
        "by-root": trust_policy(dict(allow, Principal={"AWS": "arn:aws:iam::123456789012:root"})),
        "stranger": trust_policy(dict(allow, Principal={"AWS": "444455556666"})),
        "service": trust_policy(dict(allow, Principal={"Service": "lambda.amazonaws.com"})),
        "denied": trust_policy(dict(allow, Principal={"AWS": "*"}),
                               {"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": {"AWS": "123456789012"}}),
        "external": trust_policy(dict(allow, Principal={"AWS": "123456789012"},
                                      Condition={"StringEquals": {"sts:ExternalId": "s3cret"}})),
        "by-role": trust_policy(dict(allow, Principal={"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:role/by-account"})),
    }
    arn = {name: iam_b.create_role(RoleName=name, AssumeRolePolicyDocument=doc)["Role"]["Arn"] for name, doc in roles.items()}
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    caller = sts.get_caller_identity()["Arn"]
    for name in ("by-account", "by-root"):
        creds = sts.assume_role(RoleArn=arn[name], RoleSessionName="selfcheck")["Credentials"]
        as_role = boto3.client("sts", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                               aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        ident = as_role.get_caller_identity()
        check(f"AssumeRole trusted ({name}): the session acts in the role's account",
              ident["Account"] == OTHER_ACCOUNT and ident["Arn"].endswith(f":assumed-role/{name}/selfcheck"), ident)
    missing = f"arn:aws:iam::{OTHER_ACCOUNT}:role/missing"
    expected = (403, {"Type": "Sender", "Code": "AccessDenied",
                      "Message": f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {missing}"})
    check("AssumeRole of a role that does not exist: 403 AccessDenied, AWS's message", assume_error(sts, missing) == expected,
          assume_error(sts, missing))
    for name in ("stranger", "service", "denied", "external"):
        error = assume_error(sts, arn[name])
        check(f"AssumeRole refused ({name}): 403 AccessDenied", error is not None and error[:1] == (403,)
              and error[1]["Code"] == "AccessDenied" and arn[name] in error[1]["Message"], error)
    check("AssumeRole with the trusted ExternalId", assume_error(sts, arn["external"], ExternalId="s3cret") is None)
    session = sts.assume_role(RoleArn=arn["by-account"], RoleSessionName="hop")["Credentials"]
    hop = boto3.client("sts", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=session["AccessKeyId"],
                       aws_secret_access_key=session["SecretAccessKey"], aws_session_token=session["SessionToken"])
    check("a role principal lets its sessions in, and nobody else", assume_error(hop, arn["by-role"]) is None
          and assume_error(sts, arn["by-role"]) is not None, (assume_error(hop, arn["by-role"]), assume_error(sts, arn["by-role"])))
    check_functions_in_account(b, endpoint, provider_zip)


def check_functions_in_account(b, endpoint: str, provider_zip: str) -> None:
    client_b = lambda name: b.client(name, endpoint_url=endpoint)  # noqa: E731
    lam, cfn, iot = client_b("lambda"), client_b("cloudformation"), client_b("iot")
    role = client_b("iam").create_role(RoleName="selfcheck-exec", AssumeRolePolicyDocument=trust_policy(
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}))["Role"]["Arn"]
    lam.create_function(FunctionName="fake-b", Runtime="provided.al2023", Handler="bootstrap", Role=role,
                        Code={"ZipFile": fake_zip()}, Timeout=5)
    _, out = invoke(lam, "fake-b", {"echo": 1})
    env = out.get("env", {}) if isinstance(out, dict) else {}
    check("executor: a function gets temporary credentials (with a session token), not the dummy key",
          env.get("AWS_ACCESS_KEY_ID") not in (None, "testing") and bool(env.get("AWS_SESSION_TOKEN")), env.get("AWS_ACCESS_KEY_ID"))
    ident = boto3.client("sts", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                         aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                         aws_session_token=env.get("AWS_SESSION_TOKEN")).get_caller_identity() if env else {}
    check("executor: the function acts as its execution role's session, named after it, in its account",
          ident.get("Arn") == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/selfcheck-exec/fake-b", ident)
    _, again = invoke(lam, "fake-b", {"echo": 2})
    check("executor: the same credentials keep the warm process", isinstance(again, dict) and again.get("pid") == out.get("pid"),
          (out.get("pid"), again.get("pid") if isinstance(again, dict) else again))
    lam.create_function(FunctionName="ca-provider", Runtime="provided.al2023", Handler="bootstrap", Role=role,
                        Code={"ZipFile": open(provider_zip, "rb").read()}, Timeout=120, MemorySize=128)
    cfn.create_stack(StackName="ca-in-b", TemplateBody=template(ca_pem("selfcheck CA of account B")))
    status, _ = wait_stack(cfn, "ca-in-b")
    ca_id = outputs(cfn, "ca-in-b").get("CaCertificateId", "")
    iot_a = boto3.client("iot", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    check("custom resource in another account: the provider registers the CA there, not in the default account",
          status == "CREATE_COMPLETE" and registered(iot, ca_id) and not registered(iot_a, ca_id), (status, ca_id, events(cfn, "ca-in-b")))
    cfn.delete_stack(StackName="ca-in-b")
    wait_stack_gone(cfn, "ca-in-b")
    check("custom resource in another account: Delete deregisters it there", not registered(iot, ca_id), ca_id)


def wait_stack_gone(cfn, name: str, timeout: float = 60) -> bool:
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            cfn.describe_stacks(StackName=name)
        except cfn.exceptions.ClientError:
            return True
        time.sleep(0.1)
    return False


SLOW_SECONDS = 2.0


def check_slow_operations() -> None:
    """A second server with JITR_MOTO_CFN_SECONDS: operations read IN_PROGRESS for that long."""
    print(f"11. slow stacks: JITR_MOTO_CFN_SECONDS={SLOW_SECONDS}")
    covers("cfn_slow_operations")
    server, endpoint, log_path, log = start_server({"JITR_MOTO_CFN_SECONDS": str(SLOW_SECONDS)})
    try:
        cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        check_slow_change_set(cfn)
        check_slow_stack_operations(cfn)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)
        log.close()


def slow_template(value: str) -> str:
    return json.dumps({"Resources": {"P": {"Type": "AWS::SSM::Parameter",
                                           "Properties": {"Name": "/selfcheck/slow", "Type": "String", "Value": value}}}})


def stack_status(cfn, name: str) -> str:
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]


def stack_events(cfn, name: str) -> list[tuple[str, str]]:
    return [(e["LogicalResourceId"], e["ResourceStatus"]) for e in cfn.describe_stack_events(StackName=name)["StackEvents"]]


def until_settled(read, busy: str) -> tuple[str, float]:
    start = time.monotonic()
    while True:
        value = read()
        if value != busy or time.monotonic() - start > 30:
            return value, time.monotonic() - start
        time.sleep(0.05)


def check_slow_change_set(cfn) -> None:
    start = time.monotonic()
    cs = cfn.create_change_set(StackName="slow", ChangeSetName="one", ChangeSetType="CREATE", TemplateBody=slow_template("1"))
    described = cfn.describe_change_set(ChangeSetName=cs["Id"])
    check("slow: a new change set reads CREATE_IN_PROGRESS, UNAVAILABLE, no changes yet",
          (described["Status"], described["ExecutionStatus"], described.get("Changes", [])) == ("CREATE_IN_PROGRESS", "UNAVAILABLE", []),
          described)
    try:
        cfn.execute_change_set(ChangeSetName=cs["Id"])
        code = None
    except cfn.exceptions.ClientError as e:
        code = e.response["Error"]["Code"]
    check("slow: executing it before it is ready: InvalidChangeSetStatus", code == "InvalidChangeSetStatus", code)
    status, _ = until_settled(lambda: cfn.describe_change_set(ChangeSetName=cs["Id"])["Status"], "CREATE_IN_PROGRESS")
    took = time.monotonic() - start
    check(f"slow: the change set is CREATE_COMPLETE after {SLOW_SECONDS} s ({took:.2f} s)",
          status == "CREATE_COMPLETE" and SLOW_SECONDS <= took < SLOW_SECONDS + 1.5, (status, took))
    start = time.monotonic()
    cfn.execute_change_set(ChangeSetName=cs["Id"])
    check("slow: ExecuteChangeSet: the stack reads CREATE_IN_PROGRESS", stack_status(cfn, "slow") == "CREATE_IN_PROGRESS")
    check("slow: its newest event is the stack's CREATE_IN_PROGRESS",
          stack_events(cfn, "slow")[0] == ("slow", "CREATE_IN_PROGRESS"), stack_events(cfn, "slow"))
    status, _ = until_settled(lambda: stack_status(cfn, "slow"), "CREATE_IN_PROGRESS")
    took = time.monotonic() - start
    check(f"slow: CREATE_COMPLETE after {SLOW_SECONDS} s ({took:.2f} s), with its final events",
          status == "CREATE_COMPLETE" and SLOW_SECONDS <= took < SLOW_SECONDS + 1.5
          and stack_events(cfn, "slow")[0] == ("slow", "CREATE_COMPLETE"), (status, took, stack_events(cfn, "slow")))


def check_slow_stack_operations(cfn) -> None:
    start = time.monotonic()
    cfn.update_stack(StackName="slow", TemplateBody=slow_template("2"))
    status, _ = until_settled(lambda: stack_status(cfn, "slow"), "UPDATE_IN_PROGRESS")
    took = time.monotonic() - start
    check(f"slow: UpdateStack reads UPDATE_IN_PROGRESS for {SLOW_SECONDS} s ({took:.2f} s)",
          status == "UPDATE_COMPLETE" and SLOW_SECONDS <= took < SLOW_SECONDS + 1.5, (status, took))
    start = time.monotonic()
    cfn.delete_stack(StackName="slow")
    during = stack_status(cfn, "slow")
    gone = wait_stack_gone(cfn, "slow")
    took = time.monotonic() - start
    check(f"slow: DeleteStack: described by name as DELETE_IN_PROGRESS, then gone after {SLOW_SECONDS} s ({took:.2f} s)",
          during == "DELETE_IN_PROGRESS" and gone and SLOW_SECONDS <= took < SLOW_SECONDS + 1.5, (during, gone, took))


def events(cfn, name: str) -> list[dict]:
    try:
        return [
            {k: e.get(k) for k in ("LogicalResourceId", "ResourceStatus", "ResourceStatusReason")}
            for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        ]
    except Exception as e:  # noqa: BLE001
        return [{"error": str(e)}]


def base64_decode(text: str) -> str:
    return base64.b64decode(text or b"").decode("utf-8", "replace")


if __name__ == "__main__":
    sys.exit(main())
