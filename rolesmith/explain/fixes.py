"""Build the ``Fix``es an explanation proposes: policy statements to add, or the Deny to change.

Statements are minimal: the one action that was refused, on the one resource it was refused on, except
for names AWS services generate per run (``generated_name``), which only a prefix can cover.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from rolesmith.explain.model import Fix

VERSION = "2012-10-17"

# Names a service generates per run: a policy naming the exact one fails on the next run. Each entry:
# (pattern on the resource ARN, replacement, why). EMR names its debugging queues
# "AWS-ElasticMapReduce-<cluster id>" (shared/seeds 003, "Debugging IAM permissions with CloudTrail":
# the fix there is the queue-name prefix ``AWS-ElasticMapReduce-*``).
_GENERATED: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"^(arn:[^:]+:sqs:[^:]*:[^:]*:AWS-ElasticMapReduce-)j-[A-Z0-9]+$"),
        r"\1*",
        "EMR names the queue after the cluster id (j-…), new on every cluster: grant the prefix",
    ),
)


def generated_name(resource: str) -> tuple[str, str] | None:
    """(widened resource, why) when ``resource`` is a per-run generated name, else None."""
    for pattern, repl, why in _GENERATED:
        if pattern.match(resource):
            return pattern.sub(repl, resource), why
    return None


def _sid(prefix: str, actions: Iterable[str]) -> str:
    words = []
    for action in actions:
        service, _, name = action.partition(":")
        words.append(service[:1].upper() + service[1:] + name[:1].upper() + name[1:])
    return re.sub(r"[^A-Za-z0-9]", "", prefix + "".join(words))[:100]


def statement(
    *,
    actions: list[str],
    resources: list[str],
    principal: str | None = None,
    conditions: Mapping[str, Mapping[str, Any]] | None = None,
    sid_prefix: str = "Allow",
) -> dict[str, Any]:
    st: dict[str, Any] = {"Sid": _sid(sid_prefix, actions), "Effect": "Allow"}
    if principal is not None:
        st["Principal"] = {"AWS": principal}
    st["Action"] = actions[0] if len(actions) == 1 else sorted(actions)
    st["Resource"] = resources[0] if len(resources) == 1 else list(resources)
    if conditions:
        st["Condition"] = {op: dict(kv) for op, kv in conditions.items()}
    return st


def document(*statements: Mapping[str, Any]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": [dict(s) for s in statements]}


def principal_kind(arn: str) -> str:
    if ":role/" in arn:
        return "iam-role"
    if ":user/" in arn:
        return "iam-user"
    if arn.endswith(":root"):
        return "account"
    return "principal"


def resource_kind(arn: str, action: str | None = None) -> str:
    """Which resource policy governs ``arn``: the names match the evaluator's ``resource_kind``."""
    if action and action.lower() in ("sts:assumerole", "sts:assumerolewithwebidentity", "sts:assumerolewithsaml",
                                     "sts:tagsession", "sts:setsourceidentity"):
        return "role-trust"
    service = arn.split(":")[2] if arn.count(":") >= 5 else ""
    return {
        "s3": "s3-bucket",
        "kms": "kms-key",
        "sqs": "sqs-queue",
        "sns": "sns-topic",
        "secretsmanager": "secretsmanager-secret",
        "lambda": "lambda-function",
        "ecr": "ecr-repository",
        "logs": "logs-destination",
        "events": "event-bus",
        "glacier": "glacier-vault",
        "es": "opensearch-domain",
    }.get(service, f"{service}-resource" if service else "resource")


def policy_target(resource: str, kind: str) -> str:
    """The ARN the resource policy attaches to: an object's bucket, else the resource itself."""
    if kind == "s3-bucket":
        return "arn:aws:s3:::" + resource.split(":::", 1)[-1].split("/", 1)[0] if ":::" in resource else resource
    return resource


def add_identity(principal: str, actions: list[str], resources: list[str], summary: str,
                 conditions: Mapping[str, Mapping[str, Any]] | None = None,
                 extra: Iterable[Mapping[str, Any]] = ()) -> Fix:
    return Fix(
        op="add-statements",
        layer="identity",
        target=principal,
        target_kind=principal_kind(principal),
        summary=summary,
        document=document(statement(actions=actions, resources=resources, conditions=conditions), *extra),
    )


def add_resource(resource: str, principal: str, actions: list[str], summary: str, *,
                 layer: str = "resource", kind: str | None = None,
                 conditions: Mapping[str, Mapping[str, Any]] | None = None) -> Fix:
    kind = kind or resource_kind(resource, actions[0])
    return Fix(
        op="add-statements",
        layer=layer,
        target=policy_target(resource, kind),
        target_kind=kind,
        summary=summary,
        document=document(statement(actions=actions, resources=[resource], principal=principal, conditions=conditions)),
    )


def add_trust(role: str, principal: str, action: str, summary: str) -> Fix:
    # A trust policy has no Resource element: the role it is attached to is the resource.
    st = {"Sid": _sid("Allow", [action]), "Effect": "Allow", "Principal": {"AWS": principal}, "Action": action}
    return Fix(op="add-statements", layer="trust-policy", target=role, target_kind="role-trust", summary=summary,
               document=document(st))


def add_guardrail(layer: str, target: str | None, actions: list[str], resources: list[str], summary: str) -> Fix:
    """An allow for a filter layer (SCP, RCP, boundary, session, VPC endpoint policy)."""
    kind = {
        "scp": "scp",
        "rcp": "rcp",
        "boundary": "permissions-boundary",
        "session": "session-policy",
        "vpc-endpoint": "vpc-endpoint",
    }[layer]
    principal = "*" if layer in ("rcp", "vpc-endpoint") else None
    return Fix(op="add-statements", layer=layer, target=target, target_kind=kind, summary=summary,
               document=document(statement(actions=actions, resources=resources, principal=principal)))


def change_deny(layer: str, policy: str | None, statement_doc: Mapping[str, Any] | None, index: int | None,
                sid: str | None, target: str | None, target_kind: str, summary: str) -> Fix:
    return Fix(op="change-statement", layer=layer, target=target, target_kind=target_kind, summary=summary,
               policy=policy, statement=statement_doc, index=index, sid=sid)


def ownership_fixes(bucket: str, uploader: str | None) -> tuple[Fix, ...]:
    """Object Ownership "Bucket owner enforced" makes the bucket owner own every object, existing ones
    included, and turns ACLs off; with ACLs kept, uploads must carry ``bucket-owner-full-control``
    (s3-ug__about-object-ownership.md, "Object Ownership settings" table)."""
    fixes = [
        Fix(
            op="put-ownership-controls",
            layer="s3-ownership",
            target=bucket,
            target_kind="s3-bucket",
            summary="set Object Ownership to BucketOwnerEnforced: the bucket owner then owns every object, "
            "existing ones included, and the bucket policy governs them",
            document={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        )
    ]
    if uploader:
        fixes.append(
            Fix(
                op="use-canned-acl",
                layer="s3-ownership",
                target=uploader,
                target_kind=principal_kind(uploader),
                summary="or keep ACLs: upload with --acl bucket-owner-full-control (Object Ownership "
                "BucketOwnerPreferred makes the bucket owner own such objects)",
                document={"x-amz-acl": "bucket-owner-full-control"},
            )
        )
    return tuple(fixes)
