"""SSM Parameter Store: parameter names carry a leading slash the ARN format drops.

Parameter ARN ``arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash}``
(Service Authorization Reference; Systems Manager User Guide, "Restricting access to Parameter Store
parameters using IAM policies",
https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html).
GetParameters names several parameters; GetParametersByPath is authorised on the path.
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules


def _param_uses(ctx: Ctx, action: str, name: str) -> tuple[Use, ...]:
    if name.startswith("arn:"):
        return ctx.use(action, arn=name)
    return ctx.use(action, values={"ParameterNameWithoutLeadingSlash": name.lstrip("/")}, rtype="parameter")


def _default(ctx: Ctx) -> EventUses | None:
    action = action_for_event_name("ssm", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None or "parameter" not in [rt.name for rt in info.resource_types]:
        return None
    names = ctx.param("names", "Names")
    if isinstance(names, list) and names:
        uses: list[Use] = []
        for n in names:
            if isinstance(n, str):
                uses.extend(_param_uses(ctx, info.name, n))
        return EventUses(uses=tuple(uses))
    name = ctx.text("name", "Name", "path", "Path")
    if name:
        return EventUses(uses=_param_uses(ctx, info.name, name))
    return None


RULES = ServiceRules(default=_default)
