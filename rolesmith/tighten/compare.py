"""Current grants versus use: per service, and the escalation / data-access grants that go away.

Wildcards are expanded against the action dataset, so ``s3:*`` counts as every S3 action and
``"Action": "*"`` as every action of every service.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from rolesmith.policies.model import Document
from rolesmith.tighten._dataset import all_actions, canonical, expand_actions, service_of
from rolesmith.tighten.model import CurrentRole, RiskyGrant, ServiceSummary, Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class Grant:
    """One Allow statement of a current policy, actions expanded."""

    policy: str
    index: int
    sid: str | None
    actions: frozenset[str]
    resources: tuple[str, ...]  # ("*",) for NotResource too: it grants all but a few
    condition: Mapping[str, Any] | None
    not_resource: bool = False


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _expand(patterns: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for p in patterns:
        out |= expand_actions(p)
    return frozenset(out)


def statement_actions(statement: Mapping[str, Any]) -> frozenset[str]:
    if "NotAction" in statement:
        return all_actions() - _expand(_as_list(statement["NotAction"]))
    return _expand(_as_list(statement.get("Action")))


def grants_of(name: str, document: Document) -> tuple[list[Grant], set[str]]:
    """The Allow statements of ``document`` and the actions its unconditional Deny-on-``*`` removes.

    An explicit deny wins over any allow
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
    conditional or resource-scoped denies are left to the evaluator.
    """
    grants: list[Grant] = []
    denied: set[str] = set()
    for index, st in enumerate(document.get("Statement", [])):
        actions = statement_actions(st)
        if st.get("Effect") == "Deny":
            if not st.get("Condition") and _as_list(st.get("Resource")) == ["*"]:
                denied |= actions
            continue
        if st.get("Effect") != "Allow" or not actions:
            continue
        not_resource = "NotResource" in st
        resources = ("*",) if not_resource else tuple(_as_list(st.get("Resource")))
        grants.append(
            Grant(
                policy=name,
                index=index,
                sid=st.get("Sid"),
                actions=actions,
                resources=resources,
                condition=st.get("Condition") or None,
                not_resource=not_resource,
            )
        )
    return grants, denied


@dataclass(frozen=True, kw_only=True, slots=True)
class Granted:
    grants: tuple[Grant, ...]
    actions: frozenset[str]  # effective: allowed by some grant, not denied outright, within the boundary

    def granting(self, action: str, resource: str | None = None) -> list[Grant]:
        return [
            g
            for g in self.grants
            if action in g.actions and (resource is None or any(resource_matches(r, resource) for r in g.resources))
        ]


def granted(current: CurrentRole) -> Granted:
    grants: list[Grant] = []
    denied: set[str] = set()
    for p in current.policies:
        g, d = grants_of(p.name, p.document)
        grants.extend(g)
        denied |= d
    actions = frozenset().union(*(g.actions for g in grants)) - denied if grants else frozenset()
    if current.boundary is not None:
        # A boundary caps identity allows: only what both allow is effective
        # (https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html).
        b_grants, b_denied = grants_of(current.boundary.name, current.boundary.document)
        cap = frozenset().union(*(g.actions for g in b_grants)) - b_denied if b_grants else frozenset()
        actions &= cap
    return Granted(grants=tuple(grants), actions=actions)


@functools.cache
def _arn_regex(pattern: str) -> re.Pattern[str]:
    # Resource ARNs match case-sensitively; * and ? are the only wildcards
    # (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html).
    parts = ("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def resource_matches(pattern: str, resource: str) -> bool:
    if pattern == "*":
        return True
    if "${" in pattern:  # policy variables: any value may substitute
        pattern = re.sub(r"\$\{[^}]*\}", "*", pattern)
    return _arn_regex(pattern).fullmatch(resource) is not None


_BROAD = re.compile(r"arn:[^:]*:[^:]*:[^:]*:[^:]*:(?:[A-Za-z-]+[/:])?[*/]*\*[*/]*")


def is_broad(resource: str) -> bool:
    """``*`` or an ARN naming every resource of a type (``arn:aws:s3:::*``, ``arn:aws:iam::*:role/*``)."""
    return resource == "*" or _BROAD.fullmatch(resource) is not None


@functools.lru_cache(maxsize=64)
def by_service(actions: frozenset[str]) -> dict[str, frozenset[str]]:
    """``actions`` grouped by service prefix; cached since ``*`` expands to every action of every service."""
    out: dict[str, set[str]] = defaultdict(set)
    for action in actions:
        out[action[: action.index(":")].lower()].add(action)
    return {svc: frozenset(acts) for svc, acts in out.items()}


def service_summaries(current: Granted, usage: Usage) -> tuple[ServiceSummary, ...]:
    by_svc = by_service(current.actions)
    used: dict[str, set[str]] = defaultdict(set)
    res_used: dict[str, set[str]] = defaultdict(set)
    evidence: dict[str, str] = {}
    rank = {"call": 3, "action": 2, "service": 1, "none": 0}
    for call in (*usage.calls, *usage.advisor):
        svc = service_of(call.action)
        level = call.granularity
        if rank[level] > rank[evidence.get(svc, "none")]:
            evidence[svc] = level
        if level == "service":
            continue
        used[svc].add(canonical(call.action))
        if call.resource != "*" or level == "call":
            res_used[svc].add(call.resource)
    res_granted: dict[str, set[str]] = defaultdict(set)
    for g in current.grants:
        for svc in by_service(g.actions):
            res_granted[svc].update(g.resources)
    out = []
    for svc in sorted(set(by_svc) | set(used) | set(evidence)):
        granted_here = by_svc.get(svc, frozenset())
        out.append(
            ServiceSummary(
                service=svc,
                granted=len(granted_here),
                used=tuple(sorted(used[svc] & granted_here)),
                used_not_granted=tuple(sorted(used[svc] - granted_here)),
                resources_granted=tuple(sorted(res_granted.get(svc, ()))) if granted_here else (),
                resources_used=tuple(sorted(res_used.get(svc, ()))),
                evidence=evidence.get(svc, "none"),  # type: ignore[arg-type]
            )
        )
    # Services the workload touched first: that is what a reviewer reads.
    return tuple(sorted(out, key=lambda s: (s.evidence == "none", s.service)))


# ---- risky grants ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Risk:
    pattern: str
    why: str
    broad_only: bool = False  # only a risk on every resource (``*``, ``arn:aws:iam::*:role/*``)
    requires: str | None = None  # only a risk together with this grant (RunInstances + PassRole)


# Privilege escalation paths: actions that let the holder obtain permissions it was not granted.
# PassRole: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html ("a user can
# pass a role ... that has more permissions than the user"); policy-editing and credential-creating
# IAM actions change what any principal (including this one) may do.
ESCALATION: tuple[Risk, ...] = (
    Risk(pattern="iam:PassRole", broad_only=True, why="passes any role to a service, which then acts with that role's permissions"),
    Risk(pattern="iam:CreatePolicyVersion", why="rewrites a managed policy, including one attached to itself"),
    Risk(pattern="iam:SetDefaultPolicyVersion", why="switches a managed policy to a more permissive version"),
    Risk(pattern="iam:Attach*", why="attaches any managed policy (AdministratorAccess) to a principal"),
    Risk(pattern="iam:Put*Policy", why="writes an inline policy granting anything"),
    Risk(pattern="iam:Put*PermissionsBoundary", why="replaces a permissions boundary"),
    Risk(pattern="iam:Delete*PermissionsBoundary", why="lifts a permissions boundary"),
    Risk(pattern="iam:Update*AssumeRolePolicy", why="lets any principal assume a role by rewriting its trust policy"),
    Risk(pattern="iam:CreateAccessKey", why="creates credentials for another user"),
    Risk(pattern="iam:CreateLoginProfile", why="sets a console password for another user"),
    Risk(pattern="iam:UpdateLoginProfile", why="resets another user's console password"),
    Risk(pattern="iam:AddUserToGroup", why="joins a group with more permissions"),
    Risk(pattern="iam:CreateRole", why="creates a role that can then be passed or assumed"),
    Risk(pattern="iam:CreateUser", why="creates a user that can then be given credentials"),
    Risk(pattern="iam:CreatePolicy", why="creates a managed policy to attach"),
    Risk(pattern="iam:Create*Provider", why="adds a federation trust anchor"),
    Risk(pattern="sts:AssumeRole", broad_only=True, why="assumes any role whose trust policy allows this account"),
    Risk(pattern="lambda:UpdateFunctionCode", why="runs its own code with the function's execution role"),
    Risk(pattern="lambda:CreateFunction", requires="iam:PassRole", why="runs its own code with a passed role"),
    Risk(pattern="lambda:UpdateFunctionConfiguration", requires="iam:PassRole", why="swaps a function's role or layers"),
    Risk(pattern="ec2:RunInstances", requires="iam:PassRole", why="launches an instance with a passed role's instance profile"),
    Risk(pattern="glue:CreateDevEndpoint", requires="iam:PassRole", why="gets a shell with a passed role"),
    Risk(pattern="glue:UpdateDevEndpoint", why="adds its SSH key to an endpoint running with another role"),
    Risk(pattern="cloudformation:CreateStack", requires="iam:PassRole", why="creates anything a passed role may create"),
    Risk(pattern="ssm:SendCommand", why="runs commands on instances with their instance roles"),
    Risk(pattern="ssm:StartSession", why="opens a shell on instances with their instance roles"),
    Risk(pattern="ec2-instance-connect:SendSSHPublicKey", why="logs into instances that run with other roles"),
)

# Reading data from every bucket, key, secret, parameter or table of the account.
DATA_ACCESS: tuple[Risk, ...] = (
    Risk(pattern="s3:GetObject", broad_only=True, why="reads every object in every bucket"),
    Risk(pattern="s3:GetObjectVersion", broad_only=True, why="reads every version of every object"),
    Risk(pattern="kms:Decrypt", broad_only=True, why="decrypts with every key whose key policy delegates to IAM"),
    Risk(pattern="secretsmanager:GetSecretValue", broad_only=True, why="reads every secret"),
    Risk(pattern="ssm:GetParameter*", broad_only=True, why="reads every parameter, SecureString included"),
    Risk(pattern="dynamodb:GetItem", broad_only=True, why="reads every table"),
    Risk(pattern="dynamodb:Scan", broad_only=True, why="reads every table in full"),
    Risk(pattern="dynamodb:Query", broad_only=True, why="reads every table"),
    Risk(pattern="dynamodb:BatchGetItem", broad_only=True, why="reads every table"),
    Risk(pattern="sqs:ReceiveMessage", broad_only=True, why="reads every queue"),
    Risk(pattern="kinesis:GetRecords", broad_only=True, why="reads every stream"),
    Risk(pattern="logs:GetLogEvents", broad_only=True, why="reads every log group"),
    Risk(pattern="rds-db:connect", broad_only=True, why="connects to every IAM-auth database"),
)


def risky_grants(current: Granted, replacement: Granted, risks: tuple[Risk, ...]) -> tuple[RiskyGrant, ...]:
    out: list[RiskyGrant] = []
    for risk in risks:
        if risk.requires and risk.requires not in current.actions:
            continue
        for action in sorted(expand_actions(risk.pattern) & current.actions):
            grants = current.granting(action)
            resources = tuple(sorted({r for g in grants for r in g.resources}))
            if risk.broad_only and not any(is_broad(r) for r in resources):
                continue
            now_grants = replacement.granting(action) if action in replacement.actions else []
            now = tuple(sorted({r for g in now_grants for r in g.resources}))
            if not now:
                status = "removed"
            elif risk.requires:
                # The risk is the pair: judged by what remains of the companion grant.
                companion = replacement.granting(risk.requires) if risk.requires in replacement.actions else []
                with_res = {r for g in companion for r in g.resources}
                status = "defused" if not with_res else ("kept" if any(is_broad(r) for r in with_res) else "narrowed")
            else:
                status = "kept" if any(is_broad(r) for r in now) else "narrowed"
            out.append(
                RiskyGrant(
                    action=action,
                    resources=resources,
                    policy=grants[0].policy,
                    why=risk.why,
                    conditional=all(g.condition for g in grants),
                    status=status,  # type: ignore[arg-type]
                    now=now,
                )
            )
    return tuple(out)


__all__ = [
    "DATA_ACCESS",
    "ESCALATION",
    "Grant",
    "Granted",
    "granted",
    "grants_of",
    "is_broad",
    "resource_matches",
    "risky_grants",
    "service_summaries",
    "statement_actions",
]
