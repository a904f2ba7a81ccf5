"""S3: CloudTrail event names that are not action names, copies, versions, multipart and SSE-KMS.

Sources (cited per rule below):
- S3 API Reference, "Permissions" sections — shipped verbatim in botocore's
  ``botocore/data/s3/2006-03-01/service-2.json`` operation documentation
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html).
- CloudTrail event names and data-event fields (``bucketName``, ``key``):
  ../shared/reference/s3_kms/s3-ug__cloudtrail-logging-s3-info.md.
- SSE-KMS: ../shared/reference/SSE_KMS_AND_SECURE_INBOX.md §1, s3-ug__UsingKMSEncryption.md,
  s3-ug__mpuoverview.md line 129.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import unquote

from rolesmith.actions.builder import Ctx, literal
from rolesmith.actions.model import Condition, EventUses, Use
from rolesmith.actions.services._kms import resolve_key
from rolesmith.actions.services._rules import ServiceRules, pass_role

RULE_SSE_KMS_PUT = "s3-sse-kms-put"
RULE_SSE_KMS_PART = "s3-sse-kms-multipart"
RULE_SSE_KMS_GET = "s3-sse-kms-get"
RULE_REPLICATION_ROLE = "s3-replication-passrole"

# CloudTrail/API name → action (API Reference "Permissions" of each operation).
RENAMES: Mapping[str, tuple[str, ...]] = {
    "HeadBucket": ("s3:ListBucket",),
    "ListObjects": ("s3:ListBucket",),
    "ListObjectsV2": ("s3:ListBucket",),
    "ListObjectVersions": ("s3:ListBucketVersions",),
    "ListBuckets": ("s3:ListAllMyBuckets",),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads",),
    "ListParts": ("s3:ListMultipartUploadParts",),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration",),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "GetBucketPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "PutBucketPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "DeleteBucketPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "GetBucketCors": ("s3:GetBucketCORS",),
    "PutBucketCors": ("s3:PutBucketCORS",),
    "DeleteBucketCors": ("s3:PutBucketCORS",),
    "GetBucketNotification": ("s3:GetBucketNotification",),
    "GetBucketNotificationConfiguration": ("s3:GetBucketNotification",),
    "PutBucketNotification": ("s3:PutBucketNotification",),
    "PutBucketNotificationConfiguration": ("s3:PutBucketNotification",),
    "GetBucketReplication": ("s3:GetReplicationConfiguration",),
    "DeleteBucketReplication": ("s3:PutReplicationConfiguration",),
    "GetBucketLifecycle": ("s3:GetLifecycleConfiguration",),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration",),
    "PutBucketLifecycle": ("s3:PutLifecycleConfiguration",),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration",),
    "DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration",),
    "DeleteBucketTagging": ("s3:PutBucketTagging",),
    "DeleteBucketOwnershipControls": ("s3:PutBucketOwnershipControls",),
    "GetBucketAccelerateConfiguration": ("s3:GetAccelerateConfiguration",),
    "PutBucketAccelerateConfiguration": ("s3:PutAccelerateConfiguration",),
    "GetBucketAnalyticsConfiguration": ("s3:GetAnalyticsConfiguration",),
    "PutBucketAnalyticsConfiguration": ("s3:PutAnalyticsConfiguration",),
    "DeleteBucketAnalyticsConfiguration": ("s3:PutAnalyticsConfiguration",),
    "ListBucketAnalyticsConfigurations": ("s3:GetAnalyticsConfiguration",),
    "GetBucketInventoryConfiguration": ("s3:GetInventoryConfiguration",),
    "PutBucketInventoryConfiguration": ("s3:PutInventoryConfiguration",),
    "DeleteBucketInventoryConfiguration": ("s3:PutInventoryConfiguration",),
    "ListBucketInventoryConfigurations": ("s3:GetInventoryConfiguration",),
    "GetBucketMetricsConfiguration": ("s3:GetMetricsConfiguration",),
    "PutBucketMetricsConfiguration": ("s3:PutMetricsConfiguration",),
    "DeleteBucketMetricsConfiguration": ("s3:PutMetricsConfiguration",),
    "ListBucketMetricsConfigurations": ("s3:GetMetricsConfiguration",),
    "GetBucketIntelligentTieringConfiguration": ("s3:GetIntelligentTieringConfiguration",),
    "PutBucketIntelligentTieringConfiguration": ("s3:PutIntelligentTieringConfiguration",),
    "DeleteBucketIntelligentTieringConfiguration": ("s3:PutIntelligentTieringConfiguration",),
    "ListBucketIntelligentTieringConfigurations": ("s3:GetIntelligentTieringConfiguration",),
    "GetObjectLockConfiguration": ("s3:GetBucketObjectLockConfiguration",),
    "PutObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration",),
    "GetBucketWebsite": ("s3:GetBucketWebsite",),
    "PutBucketWebsite": ("s3:PutBucketWebsite",),
    "DeleteBucketWebsite": ("s3:DeleteBucketWebsite",),
    "SelectObjectContent": ("s3:GetObject",),
}

# Object operations whose action has a ``Version`` twin used when the request names a versionId
# (API Reference: GetObject, HeadObject, DeleteObject, Get/PutObjectAcl, Get/Put/DeleteObjectTagging).
_VERSIONED: Mapping[str, tuple[str, str]] = {
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "GetObjectAcl": ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
}

_ACL_HEADERS = (
    "x-amz-acl",
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)

_UNNAMED_KEY_NOTE = (
    "SSE-KMS object, but the event does not name the KMS key: the KMS event S3 makes on the caller's "
    "behalf (invokedBy s3.amazonaws.com) names it"
)

_MANAGED_S3_KEY_NOTE = (
    "SSE-KMS without a key id uses the AWS managed key aws/s3, whose key policy already allows the "
    "caller (s3-ug__UsingKMSEncryption.md): no caller KMS statement"
)


def _object(ctx: Ctx, action: str, bucket: str | None = None, key: str | None = None, **kw: Any) -> tuple[Use, ...]:
    if bucket is None:
        # Fast path: CloudTrail spells these exactly so (s3-ug__cloudtrail-logging-s3-info.md).
        bucket = ctx.event.request.get("bucketName") if ctx.event.request else None
        if type(bucket) is not str or not bucket:
            bucket = ctx.text("bucketName")
    if key is None:
        key = ctx.event.request.get("key") if ctx.event.request else None
        if type(key) is not str or not key:
            key = ctx.text("key")
    if bucket and key:
        arn = f"arn:{ctx.event.partition or 'aws'}:s3:::{literal(bucket)}/{literal(key)}"
        return ctx.use(action, arn=arn, **kw)
    if bucket is None and key is None:
        return ctx.use(action, rtype="object", **kw)  # resources[] may still name the object
    return ctx.use(action, values={"BucketName": bucket, "ObjectName": key}, rtype="object", **kw)


def _has_version(ctx: Ctx) -> bool:
    return bool(ctx.text("versionId"))


def _versioned(name: str):
    plain, version = _VERSIONED[name]

    def handler(ctx: Ctx) -> EventUses:
        uses = _object(ctx, version if _has_version(ctx) else plain)
        if name == "GetObject":
            inferred, notes = _sse_kms(ctx, ("kms:Decrypt",), RULE_SSE_KMS_GET, request_side=False)
            return EventUses(uses=uses, inferred=inferred, notes=notes)
        return EventUses(uses=uses)

    return handler


def _write_extras(ctx: Ctx, bucket: str | None = None, key: str | None = None) -> tuple[tuple[Use, ...], tuple[Condition, ...]]:
    """PutObjectTagging / PutObjectAcl when the write sets tags or an ACL (API Reference, PutObject
    "Permissions": "To successfully change the objects ACL of your PutObject request, you must have
    the s3:PutObjectAcl"; "To successfully set the tag-set … s3:PutObjectTagging"), and the
    ``s3:x-amz-acl`` condition a bucket policy can require (s3-ug__example-bucket-policies.md)."""
    extra: list[Use] = []
    conditions: tuple[Condition, ...] = ()
    req = ctx.event.request
    if req and req.get("x-amz-tagging"):
        extra.extend(_object(ctx, "s3:PutObjectTagging", bucket, key))
    if req and any(req.get(h) for h in _ACL_HEADERS):
        extra.extend(_object(ctx, "s3:PutObjectAcl", bucket, key))
        acl = req.get("x-amz-acl")
        if isinstance(acl, str) and acl:
            conditions = (("StringEquals", "s3:x-amz-acl", acl),)
    return tuple(extra), conditions


def _sse_kms(
    ctx: Ctx, actions: tuple[str, ...], rule: str, *, request_side: bool = True
) -> tuple[tuple[Use, ...], tuple[str, ...]]:
    """Implied KMS uses S3 makes on the caller's behalf for an SSE-KMS object (inferred)."""
    event = ctx.event
    sources = [event.response, event.additional]
    if request_side:
        sources.insert(0, event.request)
    algo = None
    key_id = None
    for src in sources:
        if not src:
            continue
        algo = algo or src.get("x-amz-server-side-encryption")
        key_id = key_id or src.get("x-amz-server-side-encryption-aws-kms-key-id")
        applied = src.get("SSEApplied")
        # SSEApplied: SSE_KMS, Default_SSE_KMS (bucket default), SSE_KMS_DSSE…
        if isinstance(applied, str) and "SSE_KMS" in applied.upper():
            algo = algo or "aws:kms"
    if not (isinstance(algo, str) and algo.startswith("aws:kms")):
        return (), ()
    bucket = ctx.text("bucketName")
    owner = ctx.account_for(f"arn:{event.partition or 'aws'}:s3:::{bucket}") if bucket else None
    key = resolve_key(ctx, key_id if isinstance(key_id, str) else None, account=owner)
    if key.arn is None:
        if key.note:
            return (), (key.note,)
        req = event.request
        header_only = request_side and bool(req) and str(req.get("x-amz-server-side-encryption", "")).startswith("aws:kms")
        # Only a request that asked for aws:kms without a key id is documented to use aws/s3; a
        # bucket-default CMK (SSEApplied only) is simply not named by this event.
        return (), (_MANAGED_S3_KEY_NOTE if header_only else _UNNAMED_KEY_NOTE,)
    from rolesmith.actions.via import kms_via_condition

    cond = kms_via_condition("s3", event.region)
    out: list[Use] = []
    for action in actions:
        out.extend(
            ctx.use(action, arn=key.arn, conditions=cond, inferred_by=rule, via="s3.amazonaws.com", partial=key.partial)
        )
    return tuple(out), ()


def _copy_source(ctx: Ctx) -> tuple[str | None, str | None, str | None, str | None]:
    """(bucket, key, versionId, access-point ARN) of ``x-amz-copy-source`` / ``CopySource``."""
    raw = ctx.param("x-amz-copy-source", "CopySource", "copySource")
    if isinstance(raw, Mapping):
        return raw.get("Bucket"), raw.get("Key"), raw.get("VersionId"), None
    if not isinstance(raw, str) or not raw:
        return None, None, None, None
    text, _, query = raw.partition("?")
    version = None
    for part in query.split("&"):
        if part.startswith("versionId="):
            version = unquote(part[len("versionId="):]) or None
    text = unquote(text).lstrip("/")
    if text.startswith("arn:"):
        return None, None, version, text
    bucket, _, key = text.partition("/")
    return bucket or None, key or None, version, None


def _source_read(ctx: Ctx) -> tuple[Use, ...]:
    bucket, key, version, ap_arn = _copy_source(ctx)
    action = "s3:GetObjectVersion" if version else "s3:GetObject"
    if ap_arn:
        return ctx.use(action, arn=ap_arn)
    return _object(ctx, action, bucket or None, key or None) if (bucket or key) else ctx.use(
        action, values={"BucketName": None, "ObjectName": None}, rtype="object"
    )


_COPY_SOURCE_NOTE = (
    "copy source encryption is not logged with the copy: kms:Decrypt on the source key comes from "
    "the KMS Decrypt event S3 makes (invokedBy s3.amazonaws.com), not from this event"
)


def _put_object(ctx: Ctx) -> EventUses:
    extra, conditions = _write_extras(ctx)
    uses = _object(ctx, "s3:PutObject", conditions=conditions) + extra
    inferred, notes = _sse_kms(ctx, ("kms:GenerateDataKey",), RULE_SSE_KMS_PUT)
    return EventUses(uses=uses, inferred=inferred, notes=notes)


def _copy_object(ctx: Ctx) -> EventUses:
    # API Reference, CopyObject "Permissions": s3:GetObject on the source, s3:PutObject on the
    # destination (s3:GetObjectVersion when copying a specific version).
    extra, conditions = _write_extras(ctx)
    uses = _source_read(ctx) + _object(ctx, "s3:PutObject", conditions=conditions) + extra
    inferred, notes = _sse_kms(ctx, ("kms:GenerateDataKey",), RULE_SSE_KMS_PUT)
    return EventUses(uses=uses, inferred=inferred, notes=notes + (_COPY_SOURCE_NOTE,))


def _create_multipart(ctx: Ctx) -> EventUses:
    extra, conditions = _write_extras(ctx)
    uses = _object(ctx, "s3:PutObject", conditions=conditions) + extra
    inferred, notes = _sse_kms(ctx, ("kms:GenerateDataKey",), RULE_SSE_KMS_PUT)
    return EventUses(uses=uses, inferred=inferred, notes=notes)


def _part(copy: bool):
    def handler(ctx: Ctx) -> EventUses:
        # s3-ug__mpuoverview.md line 129: multipart upload to an SSE-KMS key needs kms:Decrypt and
        # kms:GenerateDataKey (S3 decrypts the parts to assemble the object).
        uses = _object(ctx, "s3:PutObject")
        notes: tuple[str, ...] = ()
        if copy:
            uses = _source_read(ctx) + uses
            notes = (_COPY_SOURCE_NOTE,)
        inferred, kms_notes = _sse_kms(ctx, ("kms:Decrypt", "kms:GenerateDataKey"), RULE_SSE_KMS_PART)
        return EventUses(uses=uses, inferred=inferred, notes=kms_notes + notes)

    return handler


def _delete_objects(ctx: Ctx) -> EventUses:
    # API Reference, DeleteObjects: "you must always specify the s3:DeleteObject permission". The
    # keys travel in the body: CloudTrail does not log them, so without resources[] the use is
    # bucket/* and partial.
    uses = ctx.use("s3:DeleteObject", rtype="object")
    if not uses or all(u.partial for u in uses):
        bucket = ctx.text("bucketName")
        uses = ctx.use("s3:DeleteObject", values={"BucketName": bucket, "ObjectName": None}, rtype="object")
    return EventUses(uses=uses)


def _put_replication(ctx: Ctx) -> EventUses:
    # API Reference, PutBucketReplication: "you must have the iam:PassRole permission" for the role
    # named in the configuration, which S3 assumes to replicate.
    uses = ctx.use("s3:PutReplicationConfiguration", rtype="bucket")
    config = ctx.param("ReplicationConfiguration")
    role = config.get("Role") if isinstance(config, Mapping) else None
    inferred = pass_role(ctx, role if isinstance(role, str) else None, "s3", RULE_REPLICATION_ROLE)
    return EventUses(uses=uses, inferred=inferred)


HANDLERS = {name: _versioned(name) for name in _VERSIONED}
HANDLERS.update(
    {
        "PutObject": _put_object,
        "CopyObject": _copy_object,
        "CreateMultipartUpload": _create_multipart,
        "InitiateMultipartUpload": _create_multipart,
        "UploadPart": _part(copy=False),
        "UploadPartCopy": _part(copy=True),
        "CompleteMultipartUpload": _part(copy=False),
        "DeleteObjects": _delete_objects,
        "PutBucketReplication": _put_replication,
    }
)

RULES = ServiceRules(
    renames=RENAMES,
    handlers=HANDLERS,
    emits=frozenset(
        {a for pair in _VERSIONED.values() for a in pair}
        | {
            "s3:PutObject",
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:PutObjectTagging",
            "s3:PutObjectAcl",
            "s3:DeleteObject",
            "s3:PutReplicationConfiguration",
            "iam:PassRole",
            "kms:GenerateDataKey",
            "kms:Decrypt",
        }
    ),
)
