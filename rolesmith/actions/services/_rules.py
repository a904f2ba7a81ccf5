"""The shape of one service's documented exceptions, and helpers the service modules share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use

# A handler maps one event of its service; it returns None to fall back to the generic mapping.
Handler = Callable[[Ctx], "EventUses | None"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceRules:
    """Per-service knowledge, keyed by eventName.

    ``renames``: eventName → actions (resources built generically); ``no_permission``: calls that
    need no IAM permission; ``handlers``: eventName → function for the cases a rename cannot say;
    ``default``: handler for every other eventName of the service (returns None for "generic");
    ``emits``: every action string the handlers can produce (a test checks each exists).
    """

    renames: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    no_permission: frozenset[str] = frozenset()
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    default: Handler | None = None
    emits: frozenset[str] = frozenset()


def observed(ctx: Ctx, *actions: str) -> tuple[Use, ...]:
    out: list[Use] = []
    for action in actions:
        out.extend(ctx.use(action))
    return tuple(out)


def pass_role(ctx: Ctx, role: str | None, to_service: str, rule: str) -> tuple[Use, ...]:
    """``iam:PassRole`` on a role named by ARN or name, scoped with ``iam:PassedToService``.

    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html and
    ../shared/reference/EMR_MINIMAL_PERMISSIONS.md ("Securing iam:PassRole").
    """
    if not role:
        return ()
    cond = (("StringEquals", "iam:PassedToService", f"{to_service}.amazonaws.com"),)
    if role.startswith("arn:"):
        return ctx.use("iam:PassRole", arn=role, conditions=cond, inferred_by=rule)
    return ctx.use(
        "iam:PassRole", values={"RoleNameWithPath": role, "Account": ctx.default_account()},
        conditions=cond, inferred_by=rule,
    )
