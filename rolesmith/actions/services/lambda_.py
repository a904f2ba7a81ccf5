"""Lambda: Invoke → lambda:InvokeFunction, function references, PassRole of the execution role.

- CloudTrail logs the data event ``Invoke`` for the Invoke API, authorised by lambda:InvokeFunction
  (Lambda API Reference, Invoke; Lambda DG "Logging Lambda API calls using CloudTrail").
- Versioned event names (ListFunctions20150331, GetFunction20150331v2) are stripped generically.
- ``FunctionName`` may be a name, a name:qualifier, a partial ARN ``123456789012:function:name`` or an
  ARN (Lambda API Reference, Invoke "FunctionName").
- CreateFunction / UpdateFunctionConfiguration with a ``Role`` need iam:PassRole on it (Lambda DG,
  "Lambda execution role": "To create a function … you need iam:PassRole";
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html).
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules, pass_role

RULE_PASSROLE = "lambda-passrole"


def _function_arn(ctx: Ctx, ref: str) -> str | None:
    if ref.startswith("arn:"):
        return ref
    event = ctx.event
    if ":function:" in ref:  # partial ARN: ACCOUNT:function:NAME[:QUALIFIER]
        account, _, rest = ref.partition(":function:")
        return f"arn:{event.partition or 'aws'}:lambda:{event.region or '*'}:{account}:function:{rest}"
    return None


def _default(ctx: Ctx) -> EventUses | None:
    name = ctx.event.name
    action = "lambda:InvokeFunction" if name in ("Invoke", "InvokeWithResponseStream") else action_for_event_name("lambda", name)
    info = dataset.action_info(action) if action else None
    if info is None:
        return None
    ref = ctx.text("functionName", "FunctionName")
    if ref and "function" in [rt.name for rt in info.resource_types]:
        arn = _function_arn(ctx, ref)
        uses = ctx.use(info.name, arn=arn) if arn else ctx.use(info.name, values={"FunctionName": ref}, rtype="function")
    else:
        uses = ctx.use(info.name)
    inferred = ()
    if name.startswith(("CreateFunction", "UpdateFunctionConfiguration")):
        inferred = pass_role(ctx, ctx.text("role", "Role"), "lambda", RULE_PASSROLE)
    return EventUses(uses=uses, inferred=inferred)


RULES = ServiceRules(
    default=_default,
    emits=frozenset({"lambda:InvokeFunction", "iam:PassRole"}),
)
