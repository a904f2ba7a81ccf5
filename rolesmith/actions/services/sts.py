"""STS: AssumeRole and its session tags / source identity; calls that need no permission.

- GetCallerIdentity, GetSessionToken: "No permissions are required" (STS API Reference; the same
  text is in botocore's sts service model).
- Session tags need sts:TagSession on the role (IAM User Guide, "Permissions required to add session
  tags", https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html#id_session-tags_permissions-required);
  a source identity needs sts:SetSourceIdentity (IAM User Guide, "Permissions required to set source
  identity", https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_monitor.html).
- GetFederationToken: sts:GetFederationToken on the ``federated-user`` resource named by the request's
  ``name`` (Service Authorization Reference for STS: resource type ``federated-user``,
  ``arn:${Partition}:sts::${Account}:federated-user/${FederatedUserName}``; IAM User Guide,
  id_credentials_temp_control-access_getfederationtoken).
"""

from __future__ import annotations

from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules


def _assume(action: str):
    def handler(ctx: Ctx) -> EventUses:
        role = ctx.text("roleArn", "RoleArn")
        kw = {"arn": role} if role and role.startswith("arn:") else {"rtype": "role"}
        uses: list[Use] = list(ctx.use(action, **kw))
        if ctx.param("tags", "Tags", "transitiveTagKeys", "TransitiveTagKeys"):
            uses.extend(ctx.use("sts:TagSession", **kw))
        if ctx.param("sourceIdentity", "SourceIdentity"):
            uses.extend(ctx.use("sts:SetSourceIdentity", **kw))
        return EventUses(uses=tuple(uses))

    return handler


def _federation_token(ctx: Ctx) -> EventUses:
    name = ctx.text("name", "Name")
    if not name:
        return EventUses(uses=ctx.use("sts:GetFederationToken", rtype="federated-user"))
    return EventUses(uses=ctx.use("sts:GetFederationToken", values={"FederatedUserName": name}, rtype="federated-user"))


RULES = ServiceRules(
    no_permission=frozenset({"GetCallerIdentity", "GetSessionToken"}),
    handlers={
        "AssumeRole": _assume("sts:AssumeRole"),
        "AssumeRoleWithSAML": _assume("sts:AssumeRoleWithSAML"),
        "AssumeRoleWithWebIdentity": _assume("sts:AssumeRoleWithWebIdentity"),
        "GetFederationToken": _federation_token,
    },
    emits=frozenset(
        {"sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity",
         "sts:GetFederationToken"}
    ),
)
