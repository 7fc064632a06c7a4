"""Lambda layers: CloudFormation publishes, replaces and deletes AWS::Lambda::LayerVersion as
AWS does, functions get their `Layers`, and a function's layers are extracted for its process
as Lambda extracts them into /opt.

AWS CloudFormation Template Reference, "AWS::Lambda::LayerVersion"
(https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-lambda-layerversion.html):
`Ref` returns the layer version's ARN; `LayerName` names the layer; every property, Content
included, requires replacement: an update publishes a new version and CloudFormation deletes the
old one. moto's `Ref` answers its Python object (it has no physical id), it ignores LayerName and
CompatibleArchitectures, and it has no update handler (the resource is left unset); its
AWS::Lambda::Function ignores `Layers` on create and keeps them when an update drops the
property. CloudFormation updates every resource that refers to a replaced one (its `Ref` has
a new value: AWS CloudFormation User Guide, "Update behaviors of stack resources"); moto
updates only resources whose own template text changed, so a function would keep the old
version: resources that `Ref` a replaced LayerVersion are updated after it here. A function keeps using a layer version after the version is deleted (AWS Lambda
Developer Guide, "Adding layers to functions":
https://docs.aws.amazon.com/lambda/latest/dg/adding-layers.html), so deleted versions stay
readable to the executor here.

GetLayerVersion's `Content.Location` is "a link to the layer archive in Amazon S3 that is valid
for 10 minutes" (AWS Lambda API Reference, "LayerVersionContentOutput":
https://docs.aws.amazon.com/lambda/latest/api/API_LayerVersionContentOutput.html); moto answers
"s3://", which nothing can download. Here it is a presigned GET URL (10 minutes) of the object
the layer was published from (moto keeps no copy of its own to link to), so a client fetches
a layer as it would from AWS.

AWS Lambda Developer Guide, "Packaging your layer content"
(https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html): Lambda extracts a
function's layers into /opt of its execution environment. Our functions run as local processes
(lambda_executor), where one /opt would be shared by every test and function: each function's
layers are extracted, in the order listed, into a directory of their own (named by their
content), and every environment value that starts with `/opt/` is rewritten to start with that
directory instead.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from typing import Any

from moto.awslambda.models import LambdaFunction, LayerVersion, lambda_backends
from moto.cloudformation.parsing import ResourceMap, get_references_from_template

from . import lambda_executor
from ._base import ENDPOINT, WORK_DIR

# Layer versions CloudFormation deleted, by ARN: functions that hold them still run with them.
_deleted: dict[str, LayerVersion] = {}

LayerVersion.physical_resource_id = property(lambda self: self.arn)


def _spec(resource_name: str, properties: dict[str, Any]) -> dict[str, Any]:
    spec = {"Content": properties["Content"], "LayerName": properties.get("LayerName", resource_name)}
    for prop in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
        if prop in properties:
            spec[prop] = properties[prop]
    return spec


def _delete(account_id: str, region_name: str, arn: str) -> None:
    backend = lambda_backends[account_id][region_name]
    version = backend.layers_versions_by_arn(arn)
    if version is not None:
        _deleted[arn] = version
        backend.delete_layer_version(version.name, str(version.version))


@classmethod  # type: ignore[misc]
def _create_layer(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    backend = lambda_backends[account_id][region_name]
    return backend.publish_layer_version(_spec(resource_name, cloudformation_json["Properties"]))


@classmethod  # type: ignore[misc]
def _update_layer(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    # Replacement: the new version first, then the old one goes (CloudFormation's cleanup).
    backend = lambda_backends[account_id][region_name]
    new = backend.publish_layer_version(_spec(new_resource_name, cloudformation_json["Properties"]))
    _delete(account_id, region_name, original_resource.arn)
    return new


@classmethod  # type: ignore[misc]
def _delete_layer(cls, resource_name, cloudformation_json, account_id, region_name):
    # moto passes the physical id: the version's ARN.
    _delete(account_id, region_name, resource_name)


LayerVersion.create_from_cloudformation_json = _create_layer
LayerVersion.update_from_cloudformation_json = _update_layer
LayerVersion.delete_from_cloudformation_json = _delete_layer

_moto_resource_diff = ResourceMap.build_resource_diff


def _resource_diff(self, other_template, parameters=None):
    """moto's diff, plus the resources that `Ref` a LayerVersion being replaced (after it)."""
    diff = _moto_resource_diff(self, other_template, parameters)
    new = other_template["Resources"]
    replaced = {n for n in diff["Modify"] if new[n].get("Type") == "AWS::Lambda::LayerVersion"}
    for name, resource in new.items():
        if name in self._resource_json_map and name not in diff["Modify"]:
            if replaced & set(get_references_from_template(resource)):
                diff["Modify"].append(name)
    return diff


ResourceMap.build_resource_diff = _resource_diff

_moto_layer_version = LayerVersion.get_layer_version


def _layer_version(self) -> dict[str, Any]:
    out = _moto_layer_version(self)
    bucket, key = self.content.get("S3Bucket"), self.content.get("S3Key")
    if bucket and key:
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=ENDPOINT, region_name=self.region,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        out["Content"]["Location"] = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
        )
    return out


LayerVersion.get_layer_version = _layer_version

_moto_create_function = LambdaFunction.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
_moto_update_function = LambdaFunction.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]


@classmethod  # type: ignore[misc]
def _create_function(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    fn = _moto_create_function(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    layers = cloudformation_json.get("Properties", {}).get("Layers")
    if layers:
        fn.layers = fn._get_layers_data(layers)
    return fn


@classmethod  # type: ignore[misc]
def _update_function(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    fn = _moto_update_function(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
    if "Layers" not in cloudformation_json.get("Properties", {}):
        fn.layers = []
    return fn


LambdaFunction.create_from_cloudformation_json = _create_function
LambdaFunction.update_from_cloudformation_json = _update_function


def _layer(fn: LambdaFunction, arn: str) -> LayerVersion:
    version = lambda_backends[fn.account_id][fn.region].layers_versions_by_arn(arn) or _deleted.get(arn)
    if version is None:
        raise RuntimeError(f"{fn.function_name}: layer version {arn} does not exist")
    return version


def opt_dir(fn: LambdaFunction) -> str | None:
    """The directory standing in for the function's /opt (its layers extracted), or None."""
    arns = [layer["Arn"] for layer in (getattr(fn, "layers", None) or [])]
    if not arns:
        return None
    codes = [_layer(fn, arn).code_bytes for arn in arns]
    digest = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in codes)).hexdigest()
    target = os.path.join(WORK_DIR, "opt", digest)
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{digest}.", dir=os.path.dirname(target))
        for code in codes:  # in order: a later layer's file replaces an earlier one's
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                archive.extractall(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another thread extracted the same layers meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return target


_executor_environment = lambda_executor._environment


def _environment(fn: LambdaFunction) -> dict[str, str]:
    env = _executor_environment(fn)
    opt = opt_dir(fn)
    if opt is not None:
        for name, value in env.items():
            if value.startswith("/opt/"):
                env[name] = opt + value[len("/opt"):]
    return env


lambda_executor._environment = _environment
