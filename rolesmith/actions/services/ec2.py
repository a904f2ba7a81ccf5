"""EC2: RunInstances resources and the instance profile it passes.

- RunInstances needs ec2:RunInstances on the image, instance, network-interface, security-group and
  subnet (required resource types in the Service Authorization Reference), filled here from the
  nested request/response sets CloudTrail logs (``instancesSet.items[].imageId``, ``groupSet``,
  response ``instancesSet.items[].instanceId``).
- Launching with an instance profile needs iam:PassRole on the profile's *role* with
  iam:PassedToService ec2.amazonaws.com (IAM User Guide, "Using an IAM role to grant permissions to
  applications running on Amazon EC2 instances",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html). CloudTrail only
  logs the instance profile (name or ARN), and a profile's name need not be its role's name, so the
  use is emitted on ``role/*`` marked partial, with a note naming the profile — the graph or the user
  (``iam get-instance-profile``) can narrow it. (EMR is different: it requires equal names.)
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules

RULE_INSTANCE_PROFILE = "ec2-instance-profile-passrole"


def _items(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("items", ())
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                yield item


def _run_instances(ctx: Ctx) -> EventUses:
    req, resp = ctx.event.request, ctx.event.response
    images = {i.get("imageId") for i in _items(req.get("instancesSet"))} | {req.get("imageId")}
    instances = {i.get("instanceId") for i in _items(resp.get("instancesSet"))}
    groups = {g.get("groupId") for g in _items(req.get("groupSet"))}
    subnets = {req.get("subnetId")}
    for nic in _items(req.get("networkInterfaceSet")):
        subnets.add(nic.get("subnetId"))
        groups |= {g.get("groupId") for g in _items(nic.get("groupSet"))}
    for inst in _items(resp.get("instancesSet")):
        subnets.add(inst.get("subnetId"))
    found = {
        "image": ("ImageId", images),
        "instance": ("InstanceId", instances),
        "security-group": ("SecurityGroupId", groups),
        "subnet": ("SubnetId", subnets),
    }
    uses: list[Use] = []
    for rtype in ("image", "instance", "network-interface", "security-group", "subnet"):
        var, ids = found.get(rtype, ("", set()))
        clean = sorted(i for i in ids if isinstance(i, str) and i)
        if clean:
            for ident in clean:
                uses.extend(ctx.use("ec2:RunInstances", values={var: ident}, rtype=rtype))
        else:
            uses.extend(ctx.use("ec2:RunInstances", values={"_": None}, rtype=rtype))
    inferred: tuple[Use, ...] = ()
    notes: tuple[str, ...] = ()
    profile = req.get("iamInstanceProfile")
    if isinstance(profile, Mapping) and (profile.get("arn") or profile.get("name")):
        ref = str(profile.get("arn") or profile.get("name"))
        cond = (("StringEquals", "iam:PassedToService", "ec2.amazonaws.com"),)
        account = None
        name = ref
        if ref.startswith("arn:"):
            account = ref.split(":")[4] or None
            name = ref.rsplit("/", 1)[-1]
        role_name = None
        if ctx.event.invoked_by == "elasticmapreduce.amazonaws.com":
            # EMR only launches instance profiles whose role has the same name
            # (../shared/reference/emr/emr-mg__emr-iam-roles-custom.md).
            role_name = name
        else:
            notes = (f"instance profile {ref}: iam:PassRole needs its role's ARN, which the event does not name (role/* until narrowed)",)
        inferred = ctx.use(
            "iam:PassRole",
            values={"RoleNameWithPath": role_name, "Account": account or ctx.default_account()},
            rtype="role", conditions=cond, inferred_by=RULE_INSTANCE_PROFILE,
        )
    return EventUses(uses=tuple(uses), inferred=inferred, notes=notes)


# EC2 logs ids as scalars (``instanceId``) or item sets (``instancesSet.items[].instanceId``).
_ID_FIELDS = {
    "instance": ("InstanceId", "instanceId", "instancesSet"),
    "volume": ("VolumeId", "volumeId", "volumeSet"),
    "security-group": ("SecurityGroupId", "groupId", "groupSet"),
    "subnet": ("SubnetId", "subnetId", "subnetSet"),
    "vpc": ("VpcId", "vpcId", "vpcSet"),
    "image": ("ImageId", "imageId", "imagesSet"),
    "snapshot": ("SnapshotId", "snapshotId", "snapshotSet"),
    "network-interface": ("NetworkInterfaceId", "networkInterfaceId", "networkInterfaceIdSet"),
}


def _ids(req: Mapping[str, Any], scalar: str, item_set: str) -> list[str]:
    found = [req.get(scalar)]
    found.extend(item.get(scalar) for item in _items(req.get(item_set)))
    return sorted({i for i in found if isinstance(i, str) and i})


def _default(ctx: Ctx) -> EventUses | None:
    from rolesmith.actions import action_for_event_name
    from rolesmith.actions import dataset

    action = action_for_event_name("ec2", ctx.event.name)
    info = dataset.action_info(action) if action else None
    if info is None:
        return None
    required = [rt.name for rt in info.resource_types if rt.required]
    if not required or not any(t in _ID_FIELDS for t in required):
        return None
    req = ctx.event.request or {}
    uses: list[Use] = []
    for rtype in required:
        var, scalar, item_set = _ID_FIELDS.get(rtype, ("", "", ""))
        ids = _ids(req, scalar, item_set) if var else []
        if ids:
            for ident in ids:
                uses.extend(ctx.use(info.name, values={var: ident}, rtype=rtype))
        else:
            uses.extend(ctx.use(info.name, rtype=rtype))
    return EventUses(uses=tuple(uses))


RULES = ServiceRules(
    handlers={"RunInstances": _run_instances},
    default=_default,
    emits=frozenset({"ec2:RunInstances", "iam:PassRole"}),
)
