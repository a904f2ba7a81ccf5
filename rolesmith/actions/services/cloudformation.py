"""CloudFormation: stacks created or updated with a service role pass that role.

"A user who wants to specify a service role must have iam:PassRole" (CloudFormation User Guide,
"AWS CloudFormation service role", https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-iam-servicerole.html).
The stack ARN comes from ``responseElements.stackId`` when logged, else ``stack/NAME/*`` (the id
is generated per stack).
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules, observed, pass_role

RULE_PASSROLE = "cloudformation-role-passrole"
_PASSING = frozenset({"CreateStack", "UpdateStack", "CreateChangeSet", "CreateStackSet", "UpdateStackSet"})


def _with_role(ctx: Ctx) -> EventUses:
    action = action_for_event_name("cloudformation", ctx.event.name)
    uses = observed(ctx, action) if action else ()
    role = ctx.text("roleARN", "RoleARN", "administrationRoleARN")
    return EventUses(uses=uses, inferred=pass_role(ctx, role, "cloudformation", RULE_PASSROLE))


RULES = ServiceRules(
    handlers={name: _with_role for name in _PASSING},
    emits=frozenset({"iam:PassRole"}),
)
