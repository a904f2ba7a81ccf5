"""IAM: entity paths, the ARNs IAM returns, and service-linked roles.

- IAM ARNs carry the entity's path (``role/service/app``): the Service Authorization Reference
  variables are ``${RoleNameWithPath}`` etc., so a request's ``path`` is joined to the name
  (IAM User Guide, "IAM identifiers", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html).
- Create* responses log the created entity (``responseElements.role.arn``): used as-is.
- CreateServiceLinkedRole acts on ``role/aws-service-role/<service>/…`` and is scoped with
  ``iam:AWSServiceName`` (IAM User Guide, "Service-linked role permissions",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/using-service-linked-roles.html#service-linked-role-permissions).
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules

# resource type → (request name parameter, response element, format variable)
_ENTITIES = {
    "role": ("roleName", "role", "RoleNameWithPath"),
    "user": ("userName", "user", "UserNameWithPath"),
    "group": ("groupName", "group", "GroupNameWithPath"),
    "instance-profile": ("instanceProfileName", "instanceProfile", "InstanceProfileNameWithPath"),
    "policy": ("policyName", "policy", "PolicyNameWithPath"),
}


def _service_linked(ctx: Ctx) -> EventUses:
    service = ctx.text("awsServiceName", "AWSServiceName")
    role = ctx.event.response.get("role") if ctx.event.response else None
    arn = role.get("arn") if isinstance(role, dict) else None
    cond = (("StringEquals", "iam:AWSServiceName", service),) if service else ()
    if isinstance(arn, str) and arn.startswith("arn:"):
        return EventUses(uses=ctx.use("iam:CreateServiceLinkedRole", arn=arn, conditions=cond))
    name = f"aws-service-role/{service}/*" if service else None
    return EventUses(
        uses=ctx.use("iam:CreateServiceLinkedRole", values={"RoleNameWithPath": name}, rtype="role", conditions=cond, partial=True)
    )


def _default(ctx: Ctx) -> EventUses | None:
    action = action_for_event_name("iam", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None:
        return None
    types = [rt.name for rt in info.resource_types if rt.required] or [rt.name for rt in info.resource_types][:1]
    if len(types) != 1 or types[0] not in _ENTITIES:
        return None
    rtype = types[0]
    name_param, response_key, var = _ENTITIES[rtype]
    created = ctx.event.response.get(response_key) if ctx.event.response else None
    arn = created.get("arn") if isinstance(created, dict) else None
    if isinstance(arn, str) and dataset.match_arn_type("iam", arn) == rtype:
        return EventUses(uses=ctx.use(info.name, arn=arn))
    path = ctx.text("path")
    name = ctx.text(name_param)
    principal = ctx.event.principal
    if rtype == "user" and not name and principal is not None and principal.kind == "user":
        # IAM API Reference (GetUser, ListAccessKeys, CreateAccessKey…): "If you do not specify a
        # user name, IAM determines the user name implicitly based on the AWS access key ID used
        # to sign the request" — the caller itself.
        return EventUses(uses=ctx.use(info.name, arn=principal.arn))
    if not path or not name or path == "/" or ctx.arns_of_type("iam", rtype):
        return None
    return EventUses(uses=ctx.use(info.name, values={var: f"{path.strip('/')}/{name}"}, rtype=rtype))


RULES = ServiceRules(
    handlers={"CreateServiceLinkedRole": _service_linked},
    default=_default,
    emits=frozenset({"iam:CreateServiceLinkedRole"}),
)
