"""EMR's own calls after RunJobFlow, made under the cluster's service role.

EMR assumes the service role (trust principal ``elasticmapreduce.amazonaws.com``) and, as that role,
creates the cluster's security groups, launches the instances (passing the instance-profile role to
EC2: ``iam:PassRole`` with ``iam:PassedToService = ec2.amazonaws.com``), tags them *afterwards* with
CreateTags, and creates its queue ``AWS-ElasticMapReduce-j-…``. CloudTrail shows these under the
service role's session with ``invokedBy``/``sourceIPAddress = elasticmapreduce.amazonaws.com``
(shared/reference/EMR_MINIMAL_PERMISSIONS.md). As in AWS, RunJobFlow itself has already returned the
cluster id: a refused call terminates the cluster with a validation error naming the service role,
which DescribeCluster then shows.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Mapping

from rolesmith.sandbox import effects
from rolesmith.sandbox.auth import Identity
from rolesmith.trail.wire import Call
from rolesmith.sandbox.effects import Inner

if TYPE_CHECKING:
    from rolesmith.sandbox.gateway import Gateway

EMR = "elasticmapreduce.amazonaws.com"


def _trusts_emr(trust: Mapping[str, Any] | None) -> bool:
    """Does the trust policy let the EMR service principal assume the role? (Service principals
    are matched literally; conditions on a service's own AssumeRole are not modelled.)"""
    for st in (trust or {}).get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        actions = st.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if not any(a.lower() in ("sts:assumerole", "sts:*", "*") for a in actions):
            continue
        svc = (st.get("Principal") or {}).get("Service", []) if isinstance(st.get("Principal"), Mapping) else []
        svc = [svc] if isinstance(svc, str) else svc
        if EMR in svc:
            return True
    return False


def _terminate(gw: Gateway, account: str, cluster_id: str, message: str) -> None:
    from moto.emr.models import emr_backends

    cluster = emr_backends[account][gw.world.region].clusters.get(cluster_id)
    if cluster is not None:
        cluster.state = "TERMINATED_WITH_ERRORS"
        cluster.last_state_change_reason = message


def simulate(gw: Gateway, caller: Identity, call: Call, cluster_id: str) -> None:
    from rolesmith.sandbox.gateway import synthetic

    p = call.params
    region = gw.world.region
    role_ref = str(p.get("ServiceRole") or "EMR_DefaultRole")
    role_name = role_ref.rsplit("/", 1)[-1]
    spec = gw.world.role_by_name(caller.account, role_name)
    role_arn = spec.arn if spec else f"arn:aws:iam::{caller.account}:role/{role_name}"
    if spec is None or not _trusts_emr(spec.trust):
        _terminate(gw, caller.account, cluster_id, f"Service role {role_arn} is invalid: {EMR} cannot assume it")
        return
    session = gw.creds.issue_session(spec, "ElasticMapReduceSession", invoked_by=EMR)
    gw.trail.add(_assume_role_record(session, region))
    inst = p.get("Instances") or {}
    groups_spec = inst.get("InstanceGroups") or []
    count = sum(int(g.get("InstanceCount") or 0) for g in groups_spec) or int(inst.get("InstanceCount") or 1)
    itype = str(inst.get("MasterInstanceType") or inst.get("SlaveInstanceType")
                or next((g.get("InstanceType") for g in groups_spec if g.get("InstanceType")), "m5.xlarge"))
    profile = p.get("JobFlowRole") or "EMR_EC2_DefaultRole"
    tags = [{"Key": t.get("Key"), "Value": t.get("Value", "")} for t in p.get("Tags") or []]
    tags += [{"Key": "aws:elasticmapreduce:job-flow-id", "Value": cluster_id},
             {"Key": "aws:elasticmapreduce:instance-group-role", "Value": "MASTER"}]
    groups = [f"sg-{secrets.token_hex(8)}", f"sg-{secrets.token_hex(8)}"]
    instances = [f"i-{secrets.token_hex(8)}" for _ in range(count)]
    steps: list[tuple[str, str, dict[str, Any]]] = []
    if not inst.get("EmrManagedMasterSecurityGroup"):
        steps += [("ec2", "CreateSecurityGroup", {"GroupName": "ElasticMapReduce-master",
                                                  "Description": "Master group for Elastic MapReduce"}),
                  ("ec2", "CreateSecurityGroup", {"GroupName": "ElasticMapReduce-slave",
                                                  "Description": "Slave group for Elastic MapReduce"})]
    run: dict[str, Any] = {"ImageId": "ami-emr", "InstanceType": itype, "MinCount": count, "MaxCount": count,
                           "IamInstanceProfile": {"Name": profile},
                           "SecurityGroupIds": [inst.get("EmrManagedMasterSecurityGroup") or groups[0]]}
    if inst.get("Ec2SubnetId"):
        run["SubnetId"] = inst["Ec2SubnetId"]
    steps += [("ec2", "RunInstances", run),
              ("ec2", "CreateTags", {"Resources": instances, "Tags": tags}),
              ("sqs", "CreateQueue", {"QueueName": f"AWS-ElasticMapReduce-{cluster_id}"})]
    responses = {"RunInstances": {"instancesSet": {"items": [{"instanceId": i} for i in instances]}},
                 "CreateSecurityGroup": {"groupId": groups[0]}}
    for service, op, params in steps:
        inner_call = synthetic(service, op, params, region)
        plan = effects.plan(gw.world, session, inner_call)
        inner = Inner(ident=session, service=service, operation=op, params=params, invoked_by=EMR,
                      checks=tuple(c for c in plan.checks), response=responses.get(op))
        refusal = gw.run_inner(inner)
        if refusal is not None:
            what = "EC2" if service == "ec2" else "SQS"
            _terminate(gw, caller.account, cluster_id,
                       f"Service role {role_arn} has insufficient {what} permissions: {refusal.message}")
            return


def _assume_role_record(session: Identity, region: str) -> dict[str, Any]:
    """The role account's record of EMR assuming the service role, as CloudTrail writes a service's
    AssumeRole: ``userIdentity`` of type ``AWSService``, the role in ``resources`` and the session's
    access key in ``responseElements`` (the token left out here), e.g. the ec2.amazonaws.com AssumeRole
    in shared/data/cloudtrail/otrf/. ``rolesmith record`` finds the service's calls through it."""
    from rolesmith.sandbox.cloudtrail import iso, make_record, resource_entries

    rec = make_record(ident=session, event_source="sts.amazonaws.com", event_name="AssumeRole", region=region,
                      request_parameters={"roleArn": session.arn, "roleSessionName": session.session_name},
                      user_agent=None, invoked_by=EMR)
    rec["userIdentity"] = {"type": "AWSService", "invokedBy": EMR}
    rec["responseElements"] = {
        "credentials": {"accessKeyId": session.access_key, "expiration": iso(session.expires)},
        "assumedRoleUser": {"assumedRoleId": session.principal_id, "arn": session.session_arn}}
    rec["resources"] = resource_entries([(session.arn, session.account)])
    rec["readOnly"] = False
    return rec
