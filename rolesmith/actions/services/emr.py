"""EMR (IAM prefix ``elasticmapreduce``): the roles RunJobFlow passes.

The caller of RunJobFlow needs iam:PassRole on the service role (passed to
elasticmapreduce.amazonaws.com), the EC2 instance-profile role (passed to ec2.amazonaws.com) and the
auto-scaling role (application-autoscaling.amazonaws.com): AmazonEMRFullAccessPolicy_v2 statements
PassRoleForElasticMapReduce / PassRoleForEC2 / PassRoleForAutoScaling
(../shared/reference/EMR_MINIMAL_PERMISSIONS.md, "Caller"; emr-mg__emr-iam-roles-create-permissions.md).
EMR requires the instance profile and its role to have the same name (emr-mg__emr-iam-roles-custom.md:
"Amazon EMR does not support this configuration"), so ``jobFlowRole`` names the role exactly.
"""

from __future__ import annotations

from rolesmith.actions import action_for_event_name, dataset
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses
from rolesmith.actions.services._rules import ServiceRules, observed, pass_role

RULE_PASSROLE = "emr-runjobflow-passrole"


def _run_job_flow(ctx: Ctx) -> EventUses:
    uses = observed(ctx, "elasticmapreduce:RunJobFlow")
    inferred = (
        pass_role(ctx, ctx.text("serviceRole", "ServiceRole"), "elasticmapreduce", RULE_PASSROLE)
        + pass_role(ctx, ctx.text("jobFlowRole", "JobFlowRole"), "ec2", RULE_PASSROLE)
        + pass_role(ctx, ctx.text("autoScalingRole", "AutoScalingRole"), "application-autoscaling", RULE_PASSROLE)
    )
    return EventUses(uses=uses, inferred=inferred)


def _default(ctx: Ctx) -> EventUses | None:
    """Calls naming several clusters (``jobFlowIds``: TerminateJobFlows, SetTerminationProtection…)
    act on each cluster."""
    ids = ctx.param("jobFlowIds", "JobFlowIds")
    action = action_for_event_name("elasticmapreduce", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if not isinstance(ids, list) or info is None or "cluster" not in [rt.name for rt in info.resource_types]:
        return None
    uses = []
    for cluster in ids:
        if isinstance(cluster, str) and cluster:
            uses.extend(ctx.use(info.name, values={"ClusterId": cluster}, rtype="cluster"))
    return EventUses(uses=tuple(uses)) if uses else None


RULES = ServiceRules(
    handlers={"RunJobFlow": _run_job_flow},
    default=_default,
    emits=frozenset({"elasticmapreduce:RunJobFlow", "iam:PassRole"}),
)
