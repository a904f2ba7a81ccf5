"""Resolving a KMS key reference (key id, key ARN, alias, alias ARN) to the ARN a policy needs."""

from __future__ import annotations

from dataclasses import dataclass

from rolesmith.actions.builder import Ctx


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyRef:
    arn: str | None  # None: an AWS managed key (no caller KMS statement needed)
    partial: bool = False
    note: str | None = None


def _key_arn_from_resources(ctx: Ctx) -> str | None:
    for arn, _ in ctx.resources():
        if arn.startswith("arn:") and ":kms:" in arn and ":key/" in arn:
            return arn
    return None


def resolve_key(ctx: Ctx, key_id: str | None, *, use_resources: bool = True, account: str | None = None) -> KeyRef:
    """A key reference → ``KeyRef``.

    AWS managed keys (``alias/aws/*``) are governed by their own key policy, which allows use
    through the owning service for every principal of the account (kms:CallerAccount +
    kms:ViaService: ../shared/reference/s3_kms/kms-dg__conditions-kms.md, the EBS example), so the
    caller needs no KMS statement: we return ``arn=None`` with a note. An alias is not a key: when
    no key ARN is known the alias ARN is kept and the use marked partial
    (../shared/reference/SSE_KMS_AND_SECURE_INBOX.md §2: cross-account use needs the key ARN).
    A bare key id or alias is looked up in ``account`` (S3 resolves them in the bucket owner's
    account, same reference), else the event's account.
    """
    event = ctx.event
    partition = event.partition or "aws"
    region = event.region or "*"
    key_id = (key_id or "").strip()
    if use_resources and (not key_id or not key_id.startswith("arn:") or ":alias/" in key_id):
        from_resources = _key_arn_from_resources(ctx)
        if from_resources and ":alias/aws/" not in key_id and not key_id.startswith("alias/aws/"):
            return KeyRef(arn=from_resources)
    if not key_id:
        return KeyRef(arn=None)
    if key_id.startswith("arn:"):
        if ":alias/aws/" in key_id:
            return KeyRef(arn=None, note=f"{key_id}: AWS managed key, its key policy already allows the caller")
        return KeyRef(arn=key_id, partial=":alias/" in key_id)
    if key_id.startswith("alias/aws/"):
        return KeyRef(arn=None, note=f"{key_id}: AWS managed key, its key policy already allows the caller")
    account = account or ctx.default_account() or "*"
    if key_id.startswith("alias/"):
        return KeyRef(arn=f"arn:{partition}:kms:{region}:{account}:{key_id}", partial=True)
    return KeyRef(arn=f"arn:{partition}:kms:{region}:{account}:key/{key_id}", partial=region == "*" or account == "*")
