"""Scope ec2:RunInstances by where the instances go when a tag condition cannot hold.

EMR launches instances untagged and tags them afterwards with ec2:CreateTags (shared/seeds 003,
"Debugging IAM permissions with CloudTrail"; shared/reference/EMR_MINIMAL_PERMISSIONS.md), so an
``aws:RequestTag`` condition on RunInstances is never met. RunInstances is authorised on every resource
it touches (instance, volume, network interface, image, security group, subnet — the required resource
types in the Service Authorization Reference), so granting it on the security groups and subnet the
service launches into, and on new instances/volumes/interfaces, confines launches to those networks:
a launch into any other security group or subnet finds no allow for that resource.
"""

from __future__ import annotations

from typing import Any, Mapping

from rolesmith.evaluator.model import Request
from rolesmith.explain import fixes as fx
from rolesmith.explain.model import Fix
from rolesmith.trail.model import Event


def _items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        value = value.get("items")
    return [v for v in value or () if isinstance(v, Mapping)]


def scope_run_instances(event: Event, req: Request) -> Fix | None:
    r = event.request
    groups = [g.get("groupId") for g in _items(r.get("groupSet")) if g.get("groupId")]
    subnets = [r["subnetId"]] if isinstance(r.get("subnetId"), str) else []
    for nic in _items(r.get("networkInterfaceSet")):
        groups += [g.get("groupId") for g in _items(nic.get("groupSet")) if g.get("groupId")]
        if isinstance(nic.get("subnetId"), str):
            subnets.append(nic["subnetId"])
    if not groups and not subnets:
        return None
    images = [i.get("imageId") for i in _items(r.get("instancesSet")) if i.get("imageId")]
    partition, region, account = event.partition, event.region or "*", req.principal_account
    prefix = f"arn:{partition}:ec2:{region}:{account}"
    network = [f"{prefix}:security-group/{g}" for g in sorted(set(groups))]
    network += [f"{prefix}:subnet/{s}" for s in sorted(set(subnets))]
    created = [f"{prefix}:instance/*", f"{prefix}:volume/*", f"{prefix}:network-interface/*"]
    created += [f"arn:{partition}:ec2:{region}::image/{i}" for i in sorted(set(images))] or [
        f"arn:{partition}:ec2:{region}::image/*"]
    where = fx.statement(actions=["ec2:RunInstances"], resources=network, sid_prefix="InTheseNetworks")
    new = fx.statement(actions=["ec2:RunInstances"], resources=created, sid_prefix="NewResources")
    return Fix(
        op="add-statements",
        layer="identity",
        target=req.principal,
        target_kind=fx.principal_kind(req.principal),
        summary=f"allow {req.principal} ec2:RunInstances only into {', '.join(sorted(set(groups + subnets)))} "
        "(no tag condition)",
        document=fx.document(where, new),
    )
