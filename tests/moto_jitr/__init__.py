"""moto server for jitr-infra's tests.

Starts moto's standard server (same arguments as `moto_server`, e.g.
`python -m moto_jitr -H 127.0.0.1 -p PORT` from tests/, or `python tests/moto_server.py ...`)
after a few changes to moto, all made in this process before the server starts. One module
per change, applied in the order of PATCHES; each module's docstring says which AWS behaviour
it restores and where AWS documents it:

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
   certificateMode and autoRegistrationStatus.

7. IoT DescribeCertificate carries `caCertificateId` and the certificate's own validity, as on
   AWS (moto omits the one and invents the other).

8. What `destroy` and stack protection rely on: CloudFormation creates AWS::IoT::TopicRule,
   reserved concurrency 0 throttles, a failed resource deletion leaves the stack DELETE_FAILED,
   termination protection and stack policies are enforced (their own section, at the end).

9. Deploy (its own section at the end): S3 honours `x-amz-expected-bucket-owner` (403 for
   another account's bucket), and Lambda has per-account concurrency limits, with
   GetAccountSettings, the unreserved minimum enforced on reservations, and a test hook to set
   an account's limit.

10. Onboarding at scale (issue 10): CloudFormation creates AWS::CloudWatch::Alarm (moto has no
    model for it and skips it silently), through moto's cloudwatch backend, so the stack's
    alarms exist for `status`; a function's environment variables stay strings when one is the
    `Ref` of a Number parameter (moto stores the number, which the SDKs cannot parse).

11. CloudWatch answers the Smithy RPC v2 CBOR protocol (what current AWS SDKs send it), as AWS
    does; moto speaks only the query protocol to CloudWatch (`status` reads alarms and metrics).
    CloudWatch Logs extracts embedded-metric-format log events into metrics, as AWS does (moto
    stores them only): the activator's counts reach CloudWatch as on Lambda.
12. IoT ListCertificatesByCA pages (pageSize, marker, nextMarker) and orders by creation date,
    newest first unless isAscendingOrder, as on AWS (moto returns every certificate at once),
    with a test hook that backdates a certificate's creation date.
13. Lambda layers (issue 11): CloudFormation publishes, replaces (a new version) and deletes
    AWS::Lambda::LayerVersion, `Ref` is the version's ARN, functions get their `Layers`; a
    function's layers are extracted for its process, into a directory of its own standing in
    for Lambda's /opt (environment values under /opt/ point there).

Everything here patches moto 5.2.x internals (pinned in scripts/requirements-test.txt); each
patch says what moto does and why we differ. `tests/moto_lambda_selfcheck.py` checks every
module (scripts/test runs it).

Modules: 1 iot_certificate_ids; 2 lambda_executor; 3, 4 custom_resources; 5 iot_policy;
6 iot_ca_registration; 7 iot_certificate_description; 8 topic_rule,
reserved_concurrency_throttle, stack_deletion, stack_policy; 9 s3_expected_owner,
lambda_account_concurrency; 10 cloudwatch_alarm_cfn,
lambda_environment_strings; 11 cloudwatch_rpc_v2_cbor, emf_metrics; 12
iot_list_certificates_by_ca; 13 lambda_layers; 14 sts_assume_role_trust,
lambda_execution_role; 15 cfn_slow_operations. `_base` holds the server's address and the shared moto imports.
"""
from __future__ import annotations

import importlib

# The patches, in the order they are applied (later ones wrap what earlier ones installed).
PATCHES = (
    "iot_certificate_ids",
    "lambda_executor",
    "custom_resources",
    "iot_policy",
    "iot_ca_registration",
    "iot_certificate_description",
    "topic_rule",
    "reserved_concurrency_throttle",
    "stack_deletion",
    "stack_policy",
    "s3_expected_owner",
    "lambda_account_concurrency",
    "cloudwatch_alarm_cfn",
    "lambda_environment_strings",
    "cloudwatch_rpc_v2_cbor",
    "emf_metrics",
    "iot_list_certificates_by_ca",
    "lambda_layers",
    "sts_assume_role_trust",
    "lambda_execution_role",
    "cfn_slow_operations",
)


def apply() -> None:
    """Applies every patch to moto in this process (once; importing twice is a no-op)."""
    for name in PATCHES:
        importlib.import_module(f"{__name__}.{name}")
