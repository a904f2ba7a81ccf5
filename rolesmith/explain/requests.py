"""Turn a denied CloudTrail event into the authorization ``Request`` AWS refused.

The action and resource come, best first, from AWS's own message (it names exactly what was
evaluated), from the mapping stage (``rolesmith.actions.uses_for``), then from the event itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from rolesmith.evaluator.model import Request
from rolesmith.explain.messages import ParsedMessage
from rolesmith.trail.model import Event

# AWS services whose calls on a caller's behalf reach KMS: (eventSource prefix, eventName) → KMS actions.
# S3: PutObject/CreateMultipartUpload need kms:GenerateDataKey, GetObject/HeadObject kms:Decrypt,
# multipart parts both (shared/reference/SSE_KMS_AND_SECURE_INBOX.md §1, s3-ug__UsingKMSEncryption.md,
# s3-ug__mpuoverview.md). Secrets Manager: reading a secret decrypts, writing one generates a data key
# (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
# Parameter Store SecureString: GetParameter(s) with decryption → kms:Decrypt, PutParameter → kms:Encrypt
# (https://docs.aws.amazon.com/kms/latest/developerguide/services-parameter-store.html).
KMS_VIA: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("s3", "PutObject"): ("kms:GenerateDataKey",),
    ("s3", "CreateMultipartUpload"): ("kms:GenerateDataKey",),
    # CopyObject: the request names only the destination key (GenerateDataKey); Decrypt is on the source
    # object's key, which only the KMS event S3 makes names (SSE_KMS_AND_SECURE_INBOX.md §1: inferred).
    ("s3", "CopyObject"): ("kms:GenerateDataKey",),
    ("s3", "UploadPart"): ("kms:Decrypt", "kms:GenerateDataKey"),
    ("s3", "UploadPartCopy"): ("kms:Decrypt", "kms:GenerateDataKey"),
    ("s3", "CompleteMultipartUpload"): ("kms:Decrypt", "kms:GenerateDataKey"),
    ("s3", "GetObject"): ("kms:Decrypt",),
    ("s3", "HeadObject"): ("kms:Decrypt",),
    ("secretsmanager", "GetSecretValue"): ("kms:Decrypt",),
    ("secretsmanager", "BatchGetSecretValue"): ("kms:Decrypt",),
    ("secretsmanager", "PutSecretValue"): ("kms:GenerateDataKey",),
    ("secretsmanager", "CreateSecret"): ("kms:GenerateDataKey",),
    ("secretsmanager", "UpdateSecret"): ("kms:GenerateDataKey",),
    ("ssm", "GetParameter"): ("kms:Decrypt",),
    ("ssm", "GetParameters"): ("kms:Decrypt",),
    ("ssm", "GetParametersByPath"): ("kms:Decrypt",),
    ("ssm", "PutParameter"): ("kms:Encrypt",),
}

_KEY_PARAMS = ("x-amz-server-side-encryption-aws-kms-key-id", "SSEKMSKeyId", "kmsKeyId", "KmsKeyId", "keyId")


def service_of(event: Event) -> str:
    try:
        from rolesmith.actions.dataset import service_for_source

        found = service_for_source(event.source)
    except ImportError:  # pragma: no cover - the dataset wrapper is part of the package
        found = None
    return found or event.source.split(".", 1)[0]


def canonical_action(action: str) -> str:
    """``sqs:createqueue`` (as some messages spell it) → ``sqs:CreateQueue``."""
    from rolesmith.actions.dataset import action_info

    info = action_info(action)
    return info.name if info else action


def arn_account(arn: str | None) -> str | None:
    if not arn or not arn.startswith("arn:"):
        return None
    parts = arn.split(":", 5)
    return parts[4] or None if len(parts) == 6 else None


def role_of_session(arn: str) -> str:
    """arn:aws:sts::1:assumed-role/R/s → arn:aws:iam::1:role/R (the path is not in the session ARN)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        name = parts[5][len("assumed-role/"):].split("/", 1)[0]
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{name}"
    return arn


def _uses(event: Event) -> Any:
    try:
        from rolesmith.actions import uses_for  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return uses_for(event)
    except Exception:  # noqa: BLE001 - mapping gaps must not stop an explanation; the request falls back
        return None


def s3_bucket_owner(event: Event, resource: str | None = None) -> str | None:
    """The account CloudTrail logs for the bucket of ``resource`` (a copy lists two buckets)."""
    bucket = resource.split(":::", 1)[-1].split("/", 1)[0] if resource and ":::" in resource else None
    for res in event.resources:
        if res.get("type") == "AWS::S3::Bucket" and res.get("accountId"):
            if bucket is None or str(res.get("ARN", "")).split(":::", 1)[-1] == bucket:
                return str(res["accountId"])
    return None


def s3_object_arn(event: Event) -> str | None:
    req = event.request
    bucket, key = req.get("bucketName"), req.get("key")
    if isinstance(bucket, str) and isinstance(key, str):
        return f"arn:{event.partition}:s3:::{bucket}/{key}"
    for res in event.resources:
        if res.get("type") == "AWS::S3::Object" and res.get("ARN"):
            return str(res["ARN"])
    return None


def _resource_from_event(event: Event, service: str) -> str | None:
    if service == "s3":
        obj = s3_object_arn(event)
        if obj:
            return obj
        bucket = event.request.get("bucketName")
        if isinstance(bucket, str):
            return f"arn:{event.partition}:s3:::{bucket}"
    if service == "sts":
        role = event.request.get("roleArn")
        if isinstance(role, str):
            return role
    for res in event.resources:
        if res.get("ARN"):
            return str(res["ARN"])
    return None


def _tags_from_request(event: Event) -> dict[str, Any]:
    """aws:RequestTag/… and aws:TagKeys as EC2 receives them (TagSpecification.N.Tag.N)."""
    ctx: dict[str, Any] = {}
    specs = event.request.get("tagSpecificationSet")
    items = specs.get("items") if isinstance(specs, Mapping) else None
    keys: list[str] = []
    for spec in items if isinstance(items, list) else ():
        tags = spec.get("tags") if isinstance(spec, Mapping) else None
        for tag in tags if isinstance(tags, list) else ():
            if isinstance(tag, Mapping) and isinstance(tag.get("key"), str):
                ctx[f"aws:RequestTag/{tag['key']}"] = str(tag.get("value", ""))
                keys.append(tag["key"])
    if keys:
        ctx["aws:TagKeys"] = sorted(set(keys))
    return ctx


def context_for(event: Event, principal: str, account: str | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"aws:PrincipalArn": principal}
    if account:
        ctx["aws:PrincipalAccount"] = account
    if event.region:
        ctx["aws:RequestedRegion"] = event.region
    if event.source_ip:
        try:
            ipaddress.ip_address(event.source_ip)
            ctx["aws:SourceIp"] = event.source_ip
        except ValueError:
            pass  # "s3.amazonaws.com", "AWS Internal": a service made the call, no caller IP
    if event.invoked_by:
        ctx["aws:ViaAWSService"] = "true"
        if event.source.startswith("kms."):
            # KMS sets kms:ViaService on calls a service makes for the caller (kms-dg__conditions-kms.md).
            ctx["kms:ViaService"] = f"{event.invoked_by.split('.', 1)[0]}.{event.region or 'us-east-1'}.amazonaws.com"
    acl = event.request.get("x-amz-acl")
    if isinstance(acl, str):
        ctx["s3:x-amz-acl"] = acl
    sse = event.request.get("x-amz-server-side-encryption")
    if isinstance(sse, str):
        ctx["s3:x-amz-server-side-encryption"] = sse
    ctx.update(_tags_from_request(event))
    return ctx


@dataclass(frozen=True, kw_only=True, slots=True)
class Built:
    request: Request | None
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    inferred_kms: tuple[Any, ...] = field(default=())
    alternatives: tuple[str, ...] = ()  # further resources the same call was authorised on
    # The call's other permissions (CopyObject: s3:PutObject on the destination besides s3:GetObject on
    # the source, plus PutObjectTagging/PutObjectAcl): AWS refuses the call when any one is refused.
    others: tuple[Request, ...] = ()


def build_request(event: Event, parsed: ParsedMessage, decoded: Mapping[str, Any] | None = None) -> Built:
    service = service_of(event)
    missing: list[str] = []
    notes: list[str] = []
    principal = event.principal.arn if event.principal and event.principal.kind != "service" else None
    session_arn = event.principal.session_arn if event.principal else None
    if principal is None and parsed.principal:
        session_arn = parsed.principal if ":assumed-role/" in parsed.principal else session_arn
        principal = role_of_session(parsed.principal)
    account = (event.principal.account if event.principal else None) or arn_account(principal) or event.caller_account

    dctx = (decoded or {}).get("context") if decoded else None
    action = parsed.action or (dctx.get("action") if isinstance(dctx, Mapping) else None)
    resource = parsed.resource or (dctx.get("resource") if isinstance(dctx, Mapping) else None)
    uses = _uses(event)
    use = None
    if uses is not None and getattr(uses, "uses", ()):
        use = uses.uses[0]
        if action and action.lower() != use.action.lower():
            use = next((u for u in uses.uses if u.action.lower() == action.lower()), None)
    if action is None:
        action = use.action if use is not None else f"{service}:{event.name}"
    action = canonical_action(action)
    alternatives: list[str] = []
    if resource in (None, "*") and use is not None and use.resource not in ("", "*"):
        # One call can be authorised on several resources (RunInstances: instance, image, security group…):
        # try the caller's own resources first, shared ones (an AMI has no account) last.
        same = sorted({u.resource for u in uses.uses if u.action == use.action and u.resource not in ("", "*")},
                      key=lambda arn: (arn_account(arn) is None, arn))
        resource, alternatives = same[0], same[1:]
    if resource is None:
        resource = _resource_from_event(event, service)
    if resource is None:
        from rolesmith.actions.dataset import has_resource_type

        if has_resource_type(action):
            missing.append(f"the resource {action} was refused on: neither AWS's message nor the event names it")
            resource = "*"
        else:
            resource = "*"

    resource_account = arn_account(resource)
    if resource_account is None and use is not None and use.resource == resource:
        resource_account = use.resource_account
    if resource_account is None and service == "s3":
        resource_account = s3_bucket_owner(event, resource) or (use.resource_account if use is not None else None)
    if resource_account is None and use is not None:
        resource_account = use.resource_account

    if principal is None or account is None:
        missing.append(
            "who made the call: the record names no IAM principal"
            + (f" (userIdentity type {event.identity_type})" if event.identity_type else "")
        )
        return Built(request=None, missing=tuple(missing), notes=tuple(notes))
    context = context_for(event, principal, account)
    if isinstance(dctx, Mapping):
        conds = dctx.get("conditions")
        for item in (conds.get("items", ()) if isinstance(conds, Mapping) else ()):
            key = item.get("key") if isinstance(item, Mapping) else None
            vals = item.get("values", {}).get("items", ()) if isinstance(item, Mapping) else ()
            values = [v.get("value") for v in vals if isinstance(v, Mapping)]
            if isinstance(key, str) and values:
                context.setdefault(key, values[0] if len(values) == 1 else values)
    request = Request(
        principal=principal,
        principal_account=account,
        action=action,
        resource=resource,
        resource_account=resource_account if resource_account != account else None,
        context=context,
        session_arn=session_arn,
    )
    inferred = tuple(u for u in getattr(uses, "inferred", ()) if u.action.lower().startswith("kms:")) if uses else ()
    return Built(request=request, missing=tuple(missing), notes=tuple(notes), inferred_kms=inferred,
                 alternatives=tuple(alternatives), others=_other_uses(uses, request))


def _other_uses(uses: Any, request: Request) -> tuple[Request, ...]:
    """The call's observed uses besides ``request``, as requests of the same caller and context.

    Inferred non-KMS uses (PassRole) are checked too: the call fails when they are refused. Uses of the
    request's own action are its ``alternatives`` (several resources of one action), handled apart."""
    if uses is None:
        return ()
    out: list[Request] = []
    seen = {(request.action.lower(), request.resource)}
    candidates = tuple(getattr(uses, "uses", ())) + tuple(
        u for u in getattr(uses, "inferred", ()) if not u.action.lower().startswith("kms:"))
    for u in candidates:
        key = (u.action.lower(), u.resource)
        if key in seen or u.action.lower() == request.action.lower() or not u.resource:
            continue
        seen.add(key)
        account = u.resource_account or arn_account(u.resource)
        out.append(Request(principal=request.principal, principal_account=request.principal_account,
                           action=canonical_action(u.action), resource=u.resource,
                           resource_account=account if account and account != request.principal_account else None,
                           context=request.context, session_arn=request.session_arn))
    return tuple(out)


def kms_key_for(event: Event, parsed: ParsedMessage, inferred: Iterable[Any] = ()) -> str | None:
    """The KMS key behind an S3/Secrets Manager/SSM call: AWS's message, the mapping, or the request."""
    if parsed.action and parsed.action.lower().startswith("kms:") and parsed.resource and ":key/" in parsed.resource:
        return parsed.resource
    for use in inferred:
        if use.resource and use.resource != "*":
            return str(use.resource)
    for name in _KEY_PARAMS:
        value = event.request.get(name)
        if isinstance(value, str) and value.startswith("arn:") and ":kms:" in value:
            return value
    return None


def kms_actions_for(event: Event, service: str) -> tuple[str, ...]:
    return KMS_VIA.get((service, event.name), ())
