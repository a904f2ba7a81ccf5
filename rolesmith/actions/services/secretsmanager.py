"""Secrets Manager: a secret named without its ARN suffix.

A secret's ARN ends in ``-`` and six random characters; policies that name a secret by name use
``secret:NAME-??????`` (Secrets Manager User Guide, "Permissions policy examples": "use ?????? as a
wildcard for the six random characters",
https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_examples.html).
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules


def _default(ctx: Ctx) -> EventUses | None:
    action = action_for_event_name("secretsmanager", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None or not info.resource_types:
        return None
    if ctx.arns_of_type("secretsmanager", "secret"):
        return None  # the generic path uses the ARN the event names
    ref = ctx.text("secretId", "SecretId", "name", "Name")
    if not ref or ref.startswith("arn:"):
        return None
    return EventUses(uses=ctx.use(info.name, values={"SecretId": f"{ref}-??????"}, rtype="Secret"))


RULES = ServiceRules(default=_default)
