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
- CreateTags/DeleteTags are authorised on each resource tagged (every EC2 resource type is an
  optional resource type of both in the Service Authorization Reference,
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html). CloudTrail
  logs bare ids (``resourcesSet.items[].resourceId``), so the id's prefix names the type (``i-`` →
  instance, ``ami-`` → image, whose ARN has no account) and the dataset's ARN format of that type is
  filled with it; an unknown prefix gives ``arn:…:ec2:REGION:ACCOUNT:*/ID`` marked partial, with a note.
- CreateSecurityGroup is authorised on the new security-group (required) and on the vpc it goes into
  (optional type, but named by the request), as the Service Authorization Reference lists them and
  AmazonEMRServicePolicy_v2 grants them (``security-group/*`` and ``vpc/*`` statements,
  ../shared/reference/emr/emr-mg__emr-iam-role.md). CloudTrail logs the new id in
  ``responseElements.groupId`` and the VPC in ``requestParameters.vpcId``; either missing (a refused
  call has no response; without vpcId the group goes into the default VPC) gives ``type/*`` marked
  partial, with a note. CreateVolume likewise takes the new volume's id from ``responseElements.volumeId``.
- Tag on create: a creating call with TagSpecifications is also authorised on ec2:CreateTags for each
  resource it creates and tags, with ``ec2:CreateAction`` = the creating action (EC2 User Guide,
  "Grant permission to tag Amazon EC2 resources during creation",
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html: "If tags are
  specified in the resource-creating action, Amazon performs additional authorization on the
  ec2:CreateTags action"). CloudTrail logs ``requestParameters.tagSpecificationSet.items[]`` with the
  ``resourceType`` and its ``tags``; the created ids come from the response (RunInstances: instance,
  network-interface, spot-instances-request, volume ids under ``instancesSet``). A tagged type whose ids
  the response lacks (RunInstances' volumes, usually) gives ``type/*`` marked partial, with a note.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import EventUses, Use
from rolesmith.actions.services._rules import ServiceRules

RULE_INSTANCE_PROFILE = "ec2-instance-profile-passrole"
RULE_TAG_ON_CREATE = "ec2-tag-on-create"


def _items(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("items", ())
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                yield item


# Top-level response field naming the resource a creating call made: CreateSecurityGroup
# ``{"groupId": …}`` (../shared/data/cloudtrail/panther/), CreateVolume ``{"volumeId": …}``
# (../shared/data/cloudtrail/awsdocs_examples/aws-kms-developer-guide.jsonl).
_CREATED_FIELD: Mapping[str, tuple[str, str]] = {
    "CreateSecurityGroup": ("security-group", "groupId"),
    "CreateVolume": ("volume", "volumeId"),
}


def _created(ctx: Ctx) -> dict[str, set[str]]:
    """Resource type → ids of the resources the call created, as its response names them."""
    resp = ctx.event.response or {}
    out: dict[str, set[str]] = {}

    def add(rtype: str, ident: Any) -> None:
        if isinstance(ident, str) and ident:
            out.setdefault(rtype, set()).add(ident)

    if ctx.event.name == "RunInstances":
        for inst in _items(resp.get("instancesSet")):
            add("instance", inst.get("instanceId"))
            add("spot-instances-request", inst.get("spotInstanceRequestId"))
            for nic in _items(inst.get("networkInterfaceSet")):
                add("network-interface", nic.get("networkInterfaceId"))
            for dev in _items(inst.get("blockDeviceMapping")):
                ebs = dev.get("ebs")
                if isinstance(ebs, Mapping):
                    add("volume", ebs.get("volumeId"))
    elif ctx.event.name in _CREATED_FIELD:
        rtype, field = _CREATED_FIELD[ctx.event.name]
        add(rtype, resp.get(field))
    return out


def _tagged_types(req: Mapping[str, Any]) -> list[str]:
    """Resource types the request tags on creation, in request order. A specification whose tag list is
    logged empty applies no tag, and CreateTags is "only evaluated if tags are applied"."""
    types: list[str] = []
    for spec in _items(req.get("tagSpecificationSet")):
        rtype = spec.get("resourceType")
        tags = spec.get("tags", spec.get("tagSet"))
        if isinstance(tags, Mapping):
            tags = tags.get("items")
        if isinstance(rtype, str) and rtype and tags != [] and rtype not in types:
            types.append(rtype)
    return types


def _tag_on_create(
    ctx: Ctx, action: str, created: Mapping[str, set[str]]
) -> tuple[tuple[Use, ...], tuple[str, ...]]:
    """ec2:CreateTags on what ``action`` created and tagged, with ec2:CreateAction = the action."""
    types = _tagged_types(ctx.event.request or {})
    if not types:
        return (), ()
    verb = action.split(":", 1)[1]
    cond = (("StringEquals", "ec2:CreateAction", verb),)
    uses: list[Use] = []
    notes: list[str] = []
    for rtype in types:
        var = _own_var(rtype)
        if var is None:  # a type the reference does not know: any type, as the User Guide's own example
            account = ctx.default_account() or "*"
            arn = f"arn:{ctx.event.partition or 'aws'}:ec2:{ctx.event.region or '*'}:{account}:*/*"
            uses.extend(ctx.use("ec2:CreateTags", arn=arn, conditions=cond, inferred_by=RULE_TAG_ON_CREATE,
                                partial=True))
            notes.append(f"ec2:CreateTags for {verb}'s tag specification of {rtype!r}: not an EC2 resource type"
                         " rolesmith knows; resource left as '*/*' (replace it with the type)")
            continue
        ids = sorted(created.get(rtype, ()))
        for ident in ids:
            uses.extend(ctx.use("ec2:CreateTags", values={var: ident}, rtype=rtype, conditions=cond,
                                inferred_by=RULE_TAG_ON_CREATE))
        if not ids:
            uses.extend(ctx.use("ec2:CreateTags", values={var: None}, rtype=rtype, conditions=cond,
                                inferred_by=RULE_TAG_ON_CREATE))
            notes.append(f"ec2:CreateTags for {verb}'s tags on its new {rtype}: the event does not name the"
                         f" {rtype} created; {rtype}/* until narrowed")
    return tuple(uses), tuple(notes)


def _run_instances(ctx: Ctx) -> EventUses:
    req, resp = ctx.event.request, ctx.event.response
    created = _created(ctx)
    images = {i.get("imageId") for i in _items(req.get("instancesSet"))} | {req.get("imageId")}
    instances = created.get("instance", set())
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
        "network-interface": ("NetworkInterfaceId", created.get("network-interface", set())),
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
        parts = ref.split(":", 5)
        if ref.startswith("arn:") and len(parts) == 6:
            account = parts[4] or None
            name = ref.rsplit("/", 1)[-1]
        role_name = None
        if ctx.event.invoked_by == "elasticmapreduce.amazonaws.com":
            # EMR only launches instance profiles whose role has the same name
            # (../shared/reference/emr/emr-mg__emr-iam-roles-custom.md).
            role_name = name
        else:
            notes = (
                f"instance profile {ref}: iam:PassRole needs its role's ARN, but the role name cannot be known"
                " from the event (CloudTrail logs only the instance profile, whose name need not be its"
                " role's); role/* until narrowed (aws iam get-instance-profile)",
            )
        inferred = ctx.use(
            "iam:PassRole",
            values={"RoleNameWithPath": role_name, "Account": account or ctx.default_account()},
            rtype="role", conditions=cond, inferred_by=RULE_INSTANCE_PROFILE,
        )
    tagging, tag_notes = _tag_on_create(ctx, "ec2:RunInstances", created)
    return EventUses(uses=tuple(uses), inferred=inferred + tagging, notes=notes + tag_notes)


def _create_security_group(ctx: Ctx) -> EventUses:
    req = ctx.event.request or {}
    created = _created(ctx)
    uses: list[Use] = []
    notes: list[str] = []
    groups = sorted(created.get("security-group", ()))
    for group in groups:
        uses.extend(ctx.use("ec2:CreateSecurityGroup", values={"SecurityGroupId": group}, rtype="security-group"))
    if not groups:
        uses.extend(ctx.use("ec2:CreateSecurityGroup", values={"SecurityGroupId": None}, rtype="security-group"))
        notes.append("ec2:CreateSecurityGroup: the new group's id (responseElements.groupId) is not in the"
                     " event; security-group/* until narrowed")
    vpc = req.get("vpcId")
    if isinstance(vpc, str) and vpc:
        uses.extend(ctx.use("ec2:CreateSecurityGroup", values={"VpcId": vpc}, rtype="vpc"))
    else:
        uses.extend(ctx.use("ec2:CreateSecurityGroup", values={"VpcId": None}, rtype="vpc"))
        notes.append("ec2:CreateSecurityGroup without vpcId: the group went into the region's default VPC,"
                     " whose id the event does not name; vpc/* until narrowed (aws ec2 describe-vpcs"
                     " --filters Name=is-default,Values=true)")
    tagging, tag_notes = _tag_on_create(ctx, "ec2:CreateSecurityGroup", created)
    return EventUses(uses=tuple(uses), inferred=tagging, notes=tuple(notes) + tag_notes)


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
    req = ctx.event.request or {}
    created = _created(ctx)
    tagging, tag_notes = _tag_on_create(ctx, info.name, created)
    required = [rt.name for rt in info.resource_types if rt.required]
    if not required or not any(t in _ID_FIELDS for t in required):
        if not tagging:
            return None
        return EventUses(uses=ctx.use(info.name), inferred=tagging, notes=tag_notes)
    uses: list[Use] = []
    for rtype in required:
        var, scalar, item_set = _ID_FIELDS.get(rtype, ("", "", ""))
        ids = _ids(req, scalar, item_set) if var else []
        ids = ids or sorted(created.get(rtype, ()))
        if ids:
            for ident in ids:
                uses.extend(ctx.use(info.name, values={var: ident}, rtype=rtype))
        else:
            uses.extend(ctx.use(info.name, rtype=rtype))
    return EventUses(uses=tuple(uses), inferred=tagging, notes=tag_notes)


# EC2 resource-id prefix → resource type of the Service Authorization Reference (EC2 User Guide,
# "Resource IDs": each id is the type's prefix, a hyphen and a hex string). Keys are the id without its
# last ``-hex`` part, so ``vpce-svc-0ab`` is not taken for ``vpce-``.
_ID_PREFIX_TYPES: Mapping[str, str] = {
    "i": "instance",
    "vol": "volume",
    "sg": "security-group",
    "sgr": "security-group-rule",
    "eni": "network-interface",
    "ami": "image",
    "snap": "snapshot",
    "subnet": "subnet",
    "vpc": "vpc",
    "igw": "internet-gateway",
    "eigw": "egress-only-internet-gateway",
    "rtb": "route-table",
    "lt": "launch-template",
    "nat": "natgateway",
    "acl": "network-acl",
    "eipalloc": "elastic-ip",
    "key": "key-pair",
    "dopt": "dhcp-options",
    "vpce": "vpc-endpoint",
    "vpce-svc": "vpc-endpoint-service",
    "pcx": "vpc-peering-connection",
    "tgw": "transit-gateway",
    "tgw-attach": "transit-gateway-attachment",
    "tgw-rtb": "transit-gateway-route-table",
    "cgw": "customer-gateway",
    "vgw": "vpn-gateway",
    "vpn": "vpn-connection",
    "pg": "placement-group",
    "h": "dedicated-host",
    "fleet": "fleet",
    "sir": "spot-instances-request",
    "sfr": "spot-fleet-request",
    "cr": "capacity-reservation",
    "pl": "prefix-list",
    "fl": "vpc-flow-log",
    "cvpn-endpoint": "client-vpn-endpoint",
    "cagw": "carrier-gateway",
    "lgw": "local-gateway",
    "tmf": "traffic-mirror-filter",
    "tms": "traffic-mirror-session",
    "tmt": "traffic-mirror-target",
    "afi": "fpga-image",
    "ipam": "ipam",
    "ipam-pool": "ipam-pool",
    "ipam-scope": "ipam-scope",
}


def resource_type_of_id(resource_id: str) -> str | None:
    """The EC2 resource type an id such as ``i-0abc`` or ``tgw-attach-0ab`` names, or None."""
    prefix, sep, _ = resource_id.rpartition("-")
    return _ID_PREFIX_TYPES.get(prefix) if sep else None


def _own_var(rtype: str) -> str | None:
    from rolesmith.actions import dataset
    from rolesmith.actions.builder import format_vars

    for fmt in dataset.arn_formats("ec2", rtype):
        own = [v for v in format_vars(fmt) if v not in ("Partition", "Region", "Account")]
        if len(own) == 1:
            return own[0]
    return None


def _tags(ctx: Ctx) -> EventUses | None:
    req = ctx.event.request or {}
    ids = sorted({
        str(item.get("resourceId")) for item in _items(req.get("resourcesSet"))
        if isinstance(item.get("resourceId"), str) and item.get("resourceId")
    })
    if not ids:
        return None  # generic: no resource named, so "*" with its note
    action = "ec2:DeleteTags" if ctx.event.name.startswith("DeleteTags") else "ec2:CreateTags"
    uses: list[Use] = []
    notes: list[str] = []
    account = ctx.default_account() or "*"
    for ident in ids:
        if ident.startswith("arn:"):
            uses.extend(ctx.use(action, arn=ident))
            continue
        rtype = resource_type_of_id(ident)
        var = _own_var(rtype) if rtype else None
        if rtype is None or var is None:
            arn = f"arn:{ctx.event.partition or 'aws'}:ec2:{ctx.event.region or '*'}:{account}:*/{ident}"
            uses.extend(ctx.use(action, arn=arn, partial=True))
            notes.append(f"{action} on {ident}: the id's prefix names no EC2 resource type rolesmith knows;"
                         " resource type left as '*' (replace it with the type)")
            continue
        uses.extend(ctx.use(action, values={var: ident}, rtype=rtype))
    return EventUses(uses=tuple(uses), notes=tuple(notes))


RULES = ServiceRules(
    handlers={"RunInstances": _run_instances, "CreateSecurityGroup": _create_security_group,
              "CreateTags": _tags, "DeleteTags": _tags},
    default=_default,
    emits=frozenset({"ec2:RunInstances", "ec2:CreateSecurityGroup", "iam:PassRole", "ec2:CreateTags",
                     "ec2:DeleteTags"}),
)
