"""Secrets Manager: secrets named by name, full ARN or partial ARN; BatchGetSecretValue.

- A secret's ARN ends in ``-`` and six random characters. A full ARN in ``secretId`` is the resource
  as it is. A name, or a partial ARN (one without the suffix, which ``SecretId`` accepts: "You can
  specify a partial ARN too—for example, if you don't include the final hyphen and six random
  characters", https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html),
  does not match the secret's real ARN, so it becomes ``secret:NAME-??????`` (Secrets Manager User
  Guide, "Permissions policy examples": "use ?????? as a wildcard for the six random characters",
  https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html).
- BatchGetSecretValue has no resource type, but "you must have secretsmanager:GetSecretValue for each
  secret. If you use filters, you must also have secretsmanager:ListSecrets"
  (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_BatchGetSecretValue.html).
  CloudTrail logs a GetSecretValue entry per secret too; the inferred uses cover trails that lack them.
"""

from __future__ import annotations

import re
from typing import Any

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules

RULE_BATCH = "secretsmanager-batch-get"

# The random suffix Secrets Manager appends to a secret's name in its ARN.
_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_SECRET_ARN = re.compile(r"^arn:[^:]+:secretsmanager:[^:]*:[^:]*:secret:(.+)$")


def secret_resource(ctx: Ctx, ref: str) -> tuple[str, bool]:
    """(ARN IAM matches, partial) for a ``SecretId`` given as name, partial ARN or full ARN."""
    match = _SECRET_ARN.match(ref)
    if match:
        return (ref if _SUFFIX.search(match.group(1)) else f"{ref}-??????"), False
    return ctx.fill(
        "arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${SecretId}", {"SecretId": f"{ref}-??????"}
    )


def _use(ctx: Ctx, action: str, ref: str, inferred_by: str | None = None) -> tuple[Use, ...]:
    arn, partial = secret_resource(ctx, ref)
    return ctx.use(action, arn=arn, partial=partial, inferred_by=inferred_by)


def _batch(ctx: Ctx) -> EventUses:
    uses = ctx.use("secretsmanager:BatchGetSecretValue")
    inferred: list[Use] = []
    ids: Any = ctx.param("secretIdList")
    for ref in ids if isinstance(ids, list) else ():
        if isinstance(ref, str) and ref:
            inferred.extend(_use(ctx, "secretsmanager:GetSecretValue", ref, RULE_BATCH))
    if ctx.param("filters") is not None:
        inferred.extend(ctx.use("secretsmanager:ListSecrets", inferred_by=RULE_BATCH))
    return EventUses(uses=uses, inferred=tuple(inferred))


def _default(ctx: Ctx) -> EventUses | None:
    action = action_for_event_name("secretsmanager", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None or not info.resource_types:
        return None
    named = ctx.arns_of_type("secretsmanager", "secret")
    if named:
        return EventUses(uses=tuple(u for arn in named for u in _use(ctx, info.name, arn)))
    ref = ctx.text("secretId", "SecretId", "name", "Name")
    if not ref:
        return None
    return EventUses(uses=_use(ctx, info.name, ref))


RULES = ServiceRules(
    handlers={"BatchGetSecretValue": _batch},
    default=_default,
    emits=frozenset({"secretsmanager:BatchGetSecretValue", "secretsmanager:GetSecretValue", "secretsmanager:ListSecrets"}),
)
