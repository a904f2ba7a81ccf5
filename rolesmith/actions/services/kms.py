"""KMS: key references (alias, key id, ARN), ReEncrypt and AWS managed keys.

- ReEncrypt is authorised as two actions: kms:ReEncryptFrom on the source key and kms:ReEncryptTo on
  the destination key (KMS API Reference, ReEncrypt "Required permissions",
  https://docs.aws.amazon.com/kms/latest/APIReference/API_ReEncrypt.html; both are actions in the
  Service Authorization Reference, there is no kms:ReEncrypt action).
- CloudTrail KMS events name the key in ``resources[]`` (key ARN) and the request's ``keyId``
  (../shared/reference/s3_kms/kms-dg__ct-decrypt.md, kms-dg__ct-generatedatakey.md).
"""

from __future__ import annotations

from rolesmith.actions import dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._kms import resolve_key
from rolesmith.actions.services._rules import ServiceRules


def _key_uses(ctx: Ctx, action: str, key_id: str | None, *, use_resources: bool = True) -> EventUses:
    key = resolve_key(ctx, key_id, use_resources=use_resources)
    if key.arn is None:
        if key.note:
            return EventUses(notes=(key.note,))
        return EventUses(uses=ctx.use(action, values={"KeyId": None}, rtype="key"))
    return EventUses(uses=ctx.use(action, arn=key.arn, partial=key.partial))


def _default(ctx: Ctx) -> EventUses | None:
    from rolesmith.actions import action_for_event_name

    action = action_for_event_name("kms", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None or [rt.name for rt in info.resource_types] != ["key"]:
        return None  # alias operations, ListKeys, CreateKey…: the generic mapping is right
    return _key_uses(ctx, info.name, ctx.text("keyId", "KeyId"))


def _re_encrypt(ctx: Ctx) -> EventUses:
    dest_id = ctx.text("destinationKeyId", "DestinationKeyId")
    src_id = ctx.text("sourceKeyId", "SourceKeyId")
    dest = resolve_key(ctx, dest_id, use_resources=False)
    src_arn: str | None = None
    if src_id:
        src = resolve_key(ctx, src_id, use_resources=False)
        src_arn, src_partial, src_note = src.arn, src.partial, src.note
    else:
        # Symmetric ciphertext carries its key: CloudTrail then only names it in resources[].
        others = [a for a, _ in ctx.resources() if ":kms:" in a and ":key/" in a and a != dest.arn]
        src_arn, src_partial, src_note = (others[0] if others else None), False, None
    uses: list[Use] = []
    notes: list[str] = []
    if src_arn:
        uses.extend(ctx.use("kms:ReEncryptFrom", arn=src_arn, partial=src_partial))
    elif src_note:
        notes.append(src_note)
    else:
        uses.extend(ctx.use("kms:ReEncryptFrom", values={"KeyId": None}, rtype="key"))
    if dest.arn:
        uses.extend(ctx.use("kms:ReEncryptTo", arn=dest.arn, partial=dest.partial))
    elif dest.note:
        notes.append(dest.note)
    else:
        uses.extend(ctx.use("kms:ReEncryptTo", values={"KeyId": None}, rtype="key"))
    return EventUses(uses=tuple(uses), notes=tuple(notes))


def _alias_op(ctx: Ctx) -> EventUses:
    """CreateAlias/UpdateAlias/DeleteAlias need the alias and the key (both required resource
    types; KMS Developer Guide, "Controlling access to aliases",
    https://docs.aws.amazon.com/kms/latest/developerguide/alias-access.html). ``aliasName`` carries
    the ``alias/`` prefix that the ARN format adds itself."""
    from rolesmith.actions import action_for_event_name

    action = action_for_event_name("kms", ctx.event.name) or f"kms:{ctx.event.name}"
    uses: list[Use] = []
    aliases = ctx.arns_of_type("kms", "alias")
    if aliases:
        for arn in aliases:
            uses.extend(ctx.use(action, arn=arn))
    else:
        name = ctx.text("aliasName", "AliasName")
        name = name[len("alias/"):] if name and name.startswith("alias/") else name
        uses.extend(ctx.use(action, values={"Alias": name}, rtype="alias"))
    keys = [a for a in ctx.arns_of_type("kms", "key")]
    if keys:
        for arn in keys:
            uses.extend(ctx.use(action, arn=arn))
    else:
        key = resolve_key(ctx, ctx.text("targetKeyId", "TargetKeyId"), use_resources=False)
        if key.arn and ":alias/" not in key.arn:
            uses.extend(ctx.use(action, arn=key.arn, partial=key.partial))
        else:
            uses.extend(ctx.use(action, values={"KeyId": None}, rtype="key"))
    return EventUses(uses=tuple(uses))


RULES = ServiceRules(
    handlers={"ReEncrypt": _re_encrypt, "CreateAlias": _alias_op, "UpdateAlias": _alias_op, "DeleteAlias": _alias_op},
    default=_default,
    emits=frozenset({"kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"}),
)
