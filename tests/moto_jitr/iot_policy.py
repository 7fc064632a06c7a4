"""`Ref` of an AWS::IoT::Policy is its name, and deleting one deletes its old versions first.

AWS CloudFormation User Guide, "AWS::IoT::Policy", Return values: `Ref` returns the policy
name (moto returns its Python object, which then breaks whatever holds it). CloudFormation's
handler deletes a policy's non-default versions before DeletePolicy (AWS IoT API Reference,
"DeletePolicy": a policy with versions other than the default cannot be deleted).
"""
from __future__ import annotations


from ._base import FakePolicy  # noqa: F401

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
