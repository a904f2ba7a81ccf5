"""What AWS services do on a caller's behalf, decided before and recorded after each call.

- SSE-KMS: S3 asks KMS for a data key (``kms:GenerateDataKey``) on PutObject, CopyObject's
  destination and CreateMultipartUpload, and to decrypt (``kms:Decrypt``) on GetObject, CopyObject's
  source, UploadPart / UploadPartCopy / CompleteMultipartUpload — under the *caller's* identity with
  ``kms:ViaService = s3.REGION.amazonaws.com``; the bucket's default encryption counts as if the
  header had been sent (shared/reference/SSE_KMS_AND_SECURE_INBOX.md §1;
  s3_kms/s3-ug__UsingKMSEncryption.md). AWS-managed keys (``alias/aws/s3``) need no caller grant.
- CopyObject reads its source: ``s3:GetObject`` on it, plus the source's ownership rules.
- ``iam:PassRole`` on RunInstances (instance profile), RunJobFlow (service and instance roles) and
  CreateFunction, with ``iam:PassedToService`` (shared/data/managed-policies/AmazonEMRFullAccessPolicy_v2.json).
- Object ownership (s3_kms/s3-ug__about-object-ownership.md): with BucketOwnerEnforced the bucket
  owner owns every object and ACLs other than bucket-owner-full-control are refused
  (AccessControlListNotSupported); otherwise a cross-account upload stays the uploader's unless
  BucketOwnerPreferred + bucket-owner-full-control, and the bucket owner is refused reading it
  unless that ACL granted it full control.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from rolesmith.sandbox.auth import Identity
from rolesmith.trail.wire import Call
from rolesmith.sandbox.enforce import Check, arn_account
from rolesmith.sandbox.world import KeyState, ObjectInfo, World

BOFC = "bucket-owner-full-control"
_EC2_PREFIXES = {"i": "instance", "sg": "security-group", "vol": "volume", "subnet": "subnet", "eni": "network-interface",
                 "vpc": "vpc", "lt": "launch-template", "ami": "image", "snap": "snapshot"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Inner:
    """One call a service makes on the caller's behalf (recorded with ``invokedBy``)."""

    ident: Identity
    service: str
    operation: str
    params: Mapping[str, Any]
    invoked_by: str
    checks: tuple[Check, ...]
    context: Mapping[str, Any] = field(default_factory=dict)  # condition keys the service adds
    response: Mapping[str, Any] | None = None  # responseElements known in advance (generated ids)


@dataclass(kw_only=True, slots=True)
class Plan:
    checks: list[Check] = field(default_factory=list)  # extra permissions of the call itself
    replaces: frozenset[str] = frozenset()  # actions whose mapped checks ``checks`` supersede
    inner: list[Inner] = field(default_factory=list)
    ownership_refusal: bool = False  # S3 answers its bare "Access Denied"
    error: tuple[int, str, str] | None = None  # (status, code, message) refused before authorisation


def _passrole(role_arn: str, service: str) -> Check:
    return Check(action="iam:PassRole", resource=role_arn, resource_account=arn_account(role_arn),
                 context={"iam:PassedToService": service})


def _role_arn(world: World, ref: str | None, account: str, *, profile: bool = False) -> str | None:
    """A role name/ARN, or an instance-profile name/ARN (the role of the same name), → role ARN."""
    if not ref:
        return None
    if ref.startswith("arn:"):
        if ":role/" in ref:
            return ref
        account = arn_account(ref) or account
        ref = ref.rsplit("/", 1)[-1]
    spec = world.role_by_name(account, ref)
    return spec.arn if spec else f"arn:aws:iam::{account}:role/{ref}"


def _kms_inner(ident: Identity, op: str, key_arn: str, object_arn: str, region: str) -> Inner:
    via = f"s3.{region}.amazonaws.com"
    params: dict[str, Any] = {"KeyId": key_arn, "EncryptionContext": {"aws:s3:arn": object_arn}}
    if op == "GenerateDataKey":
        params["KeySpec"] = "AES_256"
    else:
        params["EncryptionAlgorithm"] = "SYMMETRIC_DEFAULT"
    ctx = {"kms:ViaService": via, "kms:CallerAccount": ident.account,
           "kms:EncryptionContext:aws:s3:arn": object_arn, "kms:EncryptionContextKeys": ["aws:s3:arn"]}
    check = Check(action=f"kms:{op}", resource=key_arn, resource_account=arn_account(key_arn), context=ctx)
    return Inner(ident=ident, service="kms", operation=op, params=params, invoked_by="s3.amazonaws.com",
                 checks=(check,), context=ctx)


def _copy_source(call: Call) -> tuple[str, str] | None:
    src = call.params.get("CopySource")
    if not isinstance(src, str):
        return None
    from urllib.parse import unquote

    src = unquote(src.split("?versionId=")[0]).lstrip("/")
    bucket, _, key = src.partition("/")
    return (bucket, key) if key else None


def _readable(world: World, ident: Identity, bucket: str, key: str) -> bool:
    """Object ownership: may ``ident``'s account read an object another account may own?"""
    state = world.bucket(bucket)
    if state is None:
        return True
    with world.lock:
        info = state.objects.get(key)
    if info is None or info.owner == ident.account:
        return True
    return ident.account == state.account and info.owner_full_control


def plan(world: World, ident: Identity, call: Call) -> Plan:
    out = Plan()
    p = call.params
    region = call.region
    if call.service == "s3":
        bucket_name = p.get("Bucket")
        key = p.get("Key")
        bucket = world.bucket(bucket_name) if bucket_name else None
        obj_arn = f"arn:aws:s3:::{bucket_name}/{key}"
        op = call.operation
        acl = p.get("ACL")
        if op in ("PutObject", "CopyObject", "CreateMultipartUpload", "PutObjectAcl") and bucket is not None \
                and bucket.object_ownership == "BucketOwnerEnforced" and acl and acl != BOFC:
            out.error = (400, "AccessControlListNotSupported", "The bucket does not allow ACLs")
            return out
        if op in ("GetObject", "HeadObject", "GetObjectAcl", "GetObjectAttributes") and bucket_name and key:
            if not _readable(world, ident, bucket_name, key):
                out.ownership_refusal = True
                return out
        if op in ("CopyObject", "UploadPartCopy"):
            src = _copy_source(call)
            if src is not None:
                out.checks.append(Check(action="s3:GetObject", resource=f"arn:aws:s3:::{src[0]}/{src[1]}",
                                        resource_account=_bucket_account(world, src[0])))
                if not _readable(world, ident, *src):
                    out.ownership_refusal = True
                    return out
                src_info = _object(world, *src)
                if src_info is not None and src_info.kms_key and not world.is_aws_managed(src_info.kms_key):
                    out.inner.append(_kms_inner(ident, "Decrypt", src_info.kms_key,
                                                f"arn:aws:s3:::{src[0]}/{src[1]}", region))
        if op in ("PutObject", "CopyObject", "CreateMultipartUpload") and bucket_name and key:
            kms_key = _write_key(world, call, bucket_name)
            if kms_key and not world.is_aws_managed(kms_key):
                out.inner.append(_kms_inner(ident, "GenerateDataKey", kms_key, obj_arn, region))
        if op == "GetObject" and bucket_name and key:
            info = _object(world, bucket_name, key)
            if info is not None and info.kms_key and not world.is_aws_managed(info.kms_key):
                out.inner.append(_kms_inner(ident, "Decrypt", info.kms_key, obj_arn, region))
        if op in ("UploadPart", "UploadPartCopy", "CompleteMultipartUpload"):
            with world.lock:
                kms_key = world.uploads.get(str(p.get("UploadId")), (None, False))[0]
            if kms_key and not world.is_aws_managed(kms_key):
                out.inner.append(_kms_inner(ident, "Decrypt", kms_key, obj_arn, region))
    elif call.service == "ec2" and call.operation == "RunInstances":
        prof = p.get("IamInstanceProfile") or {}
        role = _role_arn(world, prof.get("Arn") or prof.get("Name"), ident.account, profile=True)
        if role:
            out.checks.append(_passrole(role, "ec2.amazonaws.com"))
    elif call.service == "ec2" and call.operation in ("CreateTags", "DeleteTags"):
        # Authorised per tagged resource: the sandbox knows each id's type, a bare record does not.
        out.replaces = frozenset({f"ec2:{call.operation}"})
        for rid in p.get("Resources") or []:
            rtype = _EC2_PREFIXES.get(str(rid).split("-", 1)[0])
            if rtype:
                out.checks.append(Check(action=f"ec2:{call.operation}", resource_account=ident.account,
                                        resource=f"arn:aws:ec2:{region}:{ident.account}:{rtype}/{rid}"))
    elif call.service == "emr" and call.operation == "RunJobFlow":
        for ref, svc in ((p.get("ServiceRole"), "elasticmapreduce.amazonaws.com"),
                         (p.get("JobFlowRole"), "ec2.amazonaws.com"),
                         (p.get("AutoScalingRole"), "application-autoscaling.amazonaws.com")):
            role = _role_arn(world, ref, ident.account, profile=svc == "ec2.amazonaws.com")
            if role:
                out.checks.append(_passrole(role, svc))
    elif call.service == "lambda" and call.operation == "CreateFunction":
        role = _role_arn(world, p.get("Role"), ident.account)
        if role:
            out.checks.append(_passrole(role, "lambda.amazonaws.com"))
    return out


def _bucket_account(world: World, name: str) -> str | None:
    b = world.bucket(name)
    return b.account if b else None


def _object(world: World, bucket: str, key: str) -> ObjectInfo | None:
    state = world.bucket(bucket)
    if state is None:
        return None
    with world.lock:
        return state.objects.get(key)


def _write_key(world: World, call: Call, bucket_name: str) -> str | None:
    p = call.params
    bucket = world.bucket(bucket_name)
    owner = bucket.account if bucket else ""
    sse = p.get("ServerSideEncryption")
    if sse in ("aws:kms", "aws:kms:dsse"):
        return world.resolve_key(p.get("SSEKMSKeyId"), owner) or f"arn:aws:kms:{world.region}:{owner}:alias/aws/s3"
    if sse == "AES256" or bucket is None:
        return None
    return bucket.encryption if bucket.encryption and bucket.encryption.startswith("arn:") else None


def _owner_of_new_object(world: World, ident: Identity, bucket_name: str, acl: str | None) -> tuple[str, bool]:
    bucket = world.bucket(bucket_name)
    if bucket is None:
        return ident.account, acl == BOFC
    if bucket.object_ownership == "BucketOwnerEnforced":
        return bucket.account, True
    if bucket.object_ownership == "BucketOwnerPreferred" and acl == BOFC:
        return bucket.account, True
    return ident.account, acl == BOFC


_XML_TAG = re.compile(r"<(\w+)>([^<]*)</\1>")


def _xml_values(body: bytes) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _XML_TAG.finditer(body.decode("utf-8", "replace"))}


def after(world: World, ident: Identity, call: Call, body: bytes, response: bytes) -> None:
    """Update the sandbox's own state after moto accepted a call."""
    p = call.params
    op = call.operation
    if call.service == "s3":
        name = p.get("Bucket")
        if op == "CreateBucket" and name:
            from rolesmith.sandbox.world import BucketState

            with world.lock:
                world.buckets.setdefault(name, BucketState(
                    name=name, account=ident.account, region=call.region,
                    object_ownership=str(p.get("ObjectOwnership") or "BucketOwnerEnforced")))
            return
        bucket = world.bucket(name) if name else None
        if bucket is None:
            return
        with world.lock:
            if op in ("PutObject", "CopyObject") and p.get("Key"):
                owner, bofc = _owner_of_new_object(world, ident, name, p.get("ACL"))
                bucket.objects[p["Key"]] = ObjectInfo(owner=owner, kms_key=_write_key(world, call, name),
                                                      owner_full_control=bofc)
            elif op == "CreateMultipartUpload":
                upload = _xml_values(response).get("UploadId")
                if upload:
                    world.uploads[upload] = (_write_key(world, call, name), p.get("ACL") == BOFC)
            elif op == "CompleteMultipartUpload" and p.get("Key"):
                kms_key, bofc_sent = world.uploads.pop(str(p.get("UploadId")), (None, False))
                owner, bofc = _owner_of_new_object(world, ident, name, BOFC if bofc_sent else None)
                bucket.objects[p["Key"]] = ObjectInfo(owner=owner, kms_key=kms_key, owner_full_control=bofc)
            elif op == "DeleteObject" and p.get("Key"):
                bucket.objects.pop(p["Key"], None)
            elif op == "PutBucketPolicy":
                try:
                    bucket.policy = json.loads(body)
                except ValueError:
                    pass
            elif op == "DeleteBucketPolicy":
                bucket.policy = None
            elif op == "PutBucketEncryption":
                vals = _xml_values(body)
                if vals.get("SSEAlgorithm", "").startswith("aws:kms"):
                    bucket.encryption = world.resolve_key(vals.get("KMSMasterKeyID"), bucket.account) \
                        or f"arn:aws:kms:{world.region}:{bucket.account}:alias/aws/s3"
                else:
                    bucket.encryption = vals.get("SSEAlgorithm")
            elif op == "DeleteBucketEncryption":
                bucket.encryption = None
            elif op == "PutBucketOwnershipControls":
                bucket.object_ownership = _xml_values(body).get("ObjectOwnership", bucket.object_ownership)
    elif call.service == "kms":
        try:
            resp = json.loads(response or b"{}")
        except ValueError:
            return
        with world.lock:
            if op == "CreateKey":
                arn = (resp.get("KeyMetadata") or {}).get("Arn")
                if arn:
                    doc = json.loads(p["Policy"]) if p.get("Policy") else {"Version": "2012-10-17", "Statement": [{
                        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ident.account}:root"},
                        "Action": "kms:*", "Resource": "*"}]}
                    world.keys[arn] = KeyState(arn=arn, account=arn_account(arn) or ident.account, policy=doc)
            elif op == "PutKeyPolicy":
                arn = world.resolve_key(p.get("KeyId"), ident.account)
                if arn in world.keys:
                    world.keys[arn].policy = json.loads(p.get("Policy") or "{}")
            elif op == "CreateAlias":
                arn = world.resolve_key(p.get("TargetKeyId"), ident.account)
                if arn:
                    world.aliases[(ident.account, str(p.get("AliasName")))] = arn
    elif call.service == "iam":
        with world.lock:
            _after_iam(world, ident, op, p)
    elif call.service == "sqs" and op in ("CreateQueue", "SetQueueAttributes"):
        policy = (p.get("Attributes") or {}).get("Policy")
        if op == "CreateQueue":
            arn = f"arn:aws:sqs:{call.region}:{ident.account}:{p.get('QueueName')}"
        else:
            url = str(p.get("QueueUrl", "")).rstrip("/").split("/")
            arn = f"arn:aws:sqs:{call.region}:{url[-2]}:{url[-1]}" if len(url) >= 2 else ""
        if arn:
            with world.lock:
                if policy:
                    world.queues[arn] = json.loads(policy)
                else:
                    world.queues.setdefault(arn, None)


def _after_iam(world: World, ident: Identity, op: str, p: Mapping[str, Any]) -> None:
    if op in ("PutRolePolicy", "PutUserPolicy"):
        kind = "role" if op == "PutRolePolicy" else "user"
        name = p.get("RoleName") or p.get("UserName")
        spec = next((s for s in world.principals.values()
                     if s.kind == kind and s.account == ident.account and s.name == name), None)
        if spec is not None:
            world.put_principal_policy(spec.arn, str(p.get("PolicyName")), json.loads(p.get("PolicyDocument") or "{}"))
    elif op in ("DeleteRolePolicy", "DeleteUserPolicy"):
        name = p.get("RoleName") or p.get("UserName")
        spec = next((s for s in world.principals.values() if s.account == ident.account and s.name == name), None)
        if spec is not None:
            world.delete_principal_policy(spec.arn, str(p.get("PolicyName")))
    elif op == "UpdateAssumeRolePolicy":
        spec = world.role_by_name(ident.account, str(p.get("RoleName")))
        if spec is not None:
            world.put_trust(spec.arn, json.loads(p.get("PolicyDocument") or "{}"))
