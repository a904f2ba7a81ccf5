"""From the usage graph to the policy set: identity, bucket, key and trust policies plus findings.

Sources for the rules (copies under ../shared/reference/):
* both sides of cross-account access are required — the resource policy and the caller's identity
  policy (kms-dg__key-policy-modifying-external-accounts.md: "Neither the key policy nor the IAM
  policy alone is sufficient"; s3-ug__example-walkthroughs-managing-access-example2.md);
* bucket-owner-full-control condition for cross-account uploads (s3-ug__ensure-object-ownership.md,
  s3-ug__example-bucket-policies.md);
* key policy: a key-administration statement (kms-dg__key-policy-default.md, "Allows key
  administrators…"), the caller as principal and S3 only through ``kms:ViaService``
  (kms-dg__conditions-kms.md, kms:ViaService / kms:CallerAccount); in a key policy ``Resource: "*"``
  means "this KMS key" (kms-dg__key-policy-default.md), the one place rolesmith writes ``*`` for an
  action that has a resource type.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

from rolesmith.actions.model import Condition
from rolesmith.actions.via import KMS_VIA_SERVICES
from rolesmith.errors import RolesmithError
from rolesmith.graph.model import EVIDENCE_CAP, GraphUse
from rolesmith.graph.usage import UsageGraph
from rolesmith.policies.generalize import generalize
from rolesmith.policies.model import (
    BuildOptions,
    Finding,
    IdentityPolicy,
    PolicySet,
    ResourcePolicy,
    TrustPolicy,
)
from rolesmith.policies.statements import document, merge, unique_sids

_KEY_ARN = re.compile(r"^arn:([^:]+):kms:([^:]*):(\d{12}):key/([^/*]+)$")
_ALIAS_ARN = re.compile(r"^arn:([^:]+):kms:([^:]*):(\d{12}):alias/(.+)$")
_POLICY_KINDS = frozenset({"role", "user"})
ACL_CONDITION: Condition = ("StringEquals", "s3:x-amz-acl", "bucket-owner-full-control")
# The documented key-administrators statement of the console's default key policy
# (kms-dg__key-policy-default.md): management without cryptographic use.
KEY_ADMIN_ACTIONS = (
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
)


# IAM and AWS STS quotas (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html):
# managed policy size 6,144 characters, whitespace not counted.
MANAGED_POLICY_LIMIT = 6144


def _policy_size(doc: Any) -> int:
    return len(re.sub(r"\s", "", json.dumps(doc, separators=(",", ":"))))


class UnknownPrincipal(RolesmithError):
    """``--principal`` names nobody in the trail."""

    exit_code = 2


class BadKeyAdmin(RolesmithError):
    """``--key-admin`` is not a principal a key policy can name as its administrator."""

    exit_code = 2


# What may administer a generated key: an account (id or root ARN), an IAM role or user. A wildcard
# or an empty name would hand the key to anyone or to nobody (key-policy-default: the statement
# that keeps the key manageable).
_KEY_ADMIN = re.compile(r"^(?:\d{12}|arn:aws[a-z-]*:iam::\d{12}:(?:root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+))$")


def _check_key_admins(admins: Sequence[str]) -> None:
    for admin in admins:
        if not isinstance(admin, str) or not _KEY_ADMIN.match(admin):
            raise BadKeyAdmin(
                f"--key-admin {admin!r}: not an account id or an IAM role, user or root ARN; a key's administrators"
                " must be named (a wildcard would let anyone administer it, an empty name no one); fix: e.g."
                " --key-admin arn:aws:iam::111122223333:role/KeyAdmins"
            )


def _has_resource_type(action: str) -> bool:
    from rolesmith.actions.dataset import has_resource_type

    return has_resource_type(action)


def _bucket_of(arn: str) -> str | None:
    if ":s3:::" not in arn:
        return None
    return arn.split(":::", 1)[1].split("/", 1)[0] or None


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


def _conditions(use: GraphUse) -> tuple[Condition, ...]:
    """The use's conditions, plus ``kms:ViaService`` for a KMS call a service made (if not already set).

    Only services in the KMS guide's ViaService table send that key (``via.KMS_VIA_SERVICES``): a
    condition on it for any other (CloudFormation, KMS itself, ``internal.amazonaws.com``) would
    refuse the very call the trail shows."""
    conds = tuple(use.conditions)
    via = use.via
    if (
        via
        and via.endswith(".amazonaws.com")
        and use.action.startswith("kms:")
        and not any(key == "kms:ViaService" for _, key, _ in conds)
    ):
        service = via[: -len(".amazonaws.com")]
        region = _region_of(use.resource)
        if region and service in KMS_VIA_SERVICES:
            conds += (("StringEquals", "kms:ViaService", f"{service}.{region}.amazonaws.com"),)
    return tuple(sorted(set(conds)))


class _Findings:
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], list[str]] = {}

    def add(self, code: str, message: str, events: Iterable[str] = ()) -> None:
        ids = self._items.setdefault((code, message), [])
        if len(ids) >= EVIDENCE_CAP:
            return
        for event in events:  # often a generator over many uses' evidence: stop at the cap
            if event not in ids:
                ids.append(event)
                if len(ids) >= EVIDENCE_CAP:
                    return

    def result(self) -> tuple[Finding, ...]:
        return tuple(Finding(code=c, message=m, events=tuple(e)) for (c, m), e in sorted(self._items.items()))


def _selected(graph: UsageGraph, options: BuildOptions) -> set[str] | None:
    if not options.principals:
        return None
    known = {arn for arn, _, _ in graph.principals()}
    for arn in options.principals:
        if arn not in known:
            seen = ", ".join(sorted(a for a, kind, _ in graph.principals() if kind in _POLICY_KINDS)) or "none"
            raise UnknownPrincipal(
                f"--principal {arn}: no events of this principal in the trail; fix: use one of: {seen}"
            )
    return set(options.principals)


def policies_from_graph(graph: UsageGraph, options: BuildOptions) -> PolicySet:
    """Minimal policies for what ``graph`` shows (the library twin of ``rolesmith build``)."""
    _check_key_admins(options.key_admins)
    selected = _selected(graph, options)
    findings = _Findings()
    kinds = {arn: (kind, account) for arn, kind, account in graph.principals()}
    links = graph.links()

    # 1. Which uses are granted, with their final conditions and generalised resources.
    granted: list[tuple[GraphUse, tuple[Condition, ...]]] = []
    for arn, (kind, _account) in sorted(kinds.items()):
        if selected is not None and arn not in selected:
            continue
        uses = graph.needs(arn, include_denied=options.include_denied)
        if not uses:
            continue
        if kind not in _POLICY_KINDS:
            if kind != "service":
                findings.add("NO_POLICY_FOR_PRINCIPAL",
                             f"{arn} ({kind}) made {sum(u.count for u in uses)} calls; IAM policies attach only to"
                             " roles and users, so none is written for it",
                             (e for u in uses for e in u.events))
            continue
        managed = _managed_elsewhere(arn)
        if managed:
            findings.add("NO_POLICY_FOR_PRINCIPAL",
                         f"{arn} made {sum(u.count for u in uses)} calls; {managed}, so no policy is written for it",
                         (e for u in uses for e in u.events))
            continue
        federated = graph.federated_sessions.get(arn)
        if federated:
            findings.add("FEDERATED_SESSION_POLICY",
                         f"{arn}: some calls were made by its GetFederationToken sessions; a session's permissions"
                         " are this user's policy intersected with the session policy passed to GetFederationToken,"
                         " so that session policy must allow them too", federated)
        for use in uses:
            if not _grantable(use, findings):
                continue
            granted.append((use, _conditions(use)))
            # The documented indirect pattern is KMS called by a service for the caller (S3, Secrets
            # Manager, SSM …); a service acting under its own service-linked role has no trigger to find.
            if use.via and use.action.startswith("kms:") and use.key not in links:
                findings.add("INDIRECT_USE_UNLINKED",
                             f"{use.action} on {use.resource} was made by {use.via} for {arn}, but the call that"
                             " triggered it is not in the trail (are data events logged?)", use.events)
            if use.provenance == "inferred":
                findings.add("INFERRED_PERMISSION",
                             f"{arn}: {use.action} on {use.resource} is implied by request parameters (rule"
                             f" {', '.join(use.inferred_by) or 'unknown'}); the trail has no event of it",
                             use.events)
    if not options.include_denied:
        for use in graph.denied_uses():
            if selected is None or use.principal in selected:
                findings.add("DENIED_CALLS",
                             f"{use.principal} was denied {use.action} on {use.resource} ({use.count}x); not granted"
                             " (use --include-denied to grant it, or rolesmith explain)", use.events)

    resource_of = _generalize(granted, options, findings, graph.created)

    identity = _identity_policies(granted, resource_of)
    for policy in identity:
        size = _policy_size(policy.policy)
        if size > MANAGED_POLICY_LIMIT:
            findings.add("POLICY_TOO_LARGE",
                         f"{policy.principal}: the identity policy has {size:,} non-whitespace characters, over the"
                         f" {MANAGED_POLICY_LIMIT:,} of a managed policy (a role's inline policies may total 10,240,"
                         " a user's 2,048); split it into several managed policies (IAM attaches up to 10 to a"
                         " role or user by default)" + ("" if options.generalize == "safe" else
                                                        ", or let --generalize safe widen generated ids"))
    resource_policies = [
        *_bucket_policies(granted, resource_of, kinds, options, findings),
        *_key_policies(granted, kinds, options, findings),
    ]
    trust = _trust_policies(graph, selected, kinds, findings)
    _cross_account_findings(granted, kinds, findings)
    _trail_findings(graph, findings)
    return PolicySet(
        identity_policies=tuple(identity),
        resource_policies=tuple(sorted(resource_policies, key=lambda p: (p.kind, p.resource))),
        trust_policies=tuple(trust),
        findings=findings.result(),
    )


def _managed_elsewhere(arn: str) -> str | None:
    """Why a role's permissions cannot be set by an identity policy rolesmith writes, or None.

    Service-linked roles (path ``/aws-service-role/``) carry permissions the service defines, which IAM
    refuses to change (UnmodifiableEntity); IAM Identity Center owns its ``/aws-reserved/sso.amazonaws.com/``
    roles (their permission set is the place to change); a name with ':' in it is no IAM role at all
    (the ``aws:ec2-infrastructure`` identity EC2 logs some calls under)."""
    if ":role/" not in arn:
        return None
    rest = arn.split(":role/", 1)[1]
    if rest.startswith("aws-service-role/"):
        return "it is a service-linked role, whose permissions the service defines and IAM does not let change"
    if rest.startswith("aws-reserved/sso.amazonaws.com/"):
        return "IAM Identity Center manages this role: change its permission set instead"
    if ":" in rest:
        return "that is not an IAM role name (roles have no ':')"
    return None


def _grantable(use: GraphUse, findings: _Findings) -> bool:
    if "*" in use.action or "?" in use.action:
        findings.add("WILDCARD_ACTION_DROPPED", f"{use.principal}: action {use.action} is a pattern, not an action;"
                     " rolesmith never grants action wildcards", use.events)
        return False
    if use.resource == "*":
        from rolesmith.actions.dataset import may_be_unscoped

        if not _has_resource_type(use.action):
            findings.add("RESOURCE_WILDCARD",
                         f"{use.action}: Resource \"*\" because the action has no resource type in the Service"
                         " Authorization Reference", use.events)
            return True
        if may_be_unscoped(use.action):
            # IAM evaluates a call that names none of the action's optional resource types against "*":
            # a policy scoped to an ARN would refuse the very call the trail shows.
            findings.add("RESOURCE_WILDCARD",
                         f"{use.action}: Resource \"*\" because the call named none of the action's optional"
                         " resource types, so IAM evaluates it against \"*\"", use.events)
            return True
        findings.add("UNSCOPED_USE_DROPPED",
                     f"{use.principal}: {use.action} acts on a resource type but the trail does not say which"
                     " resource; not granted (add it by hand with the ARN)", use.events)
        return False
    if use.action.startswith("kms:") and _ALIAS_ARN.match(use.resource) and ":alias/aws/" in use.resource:
        findings.add("AWS_MANAGED_KEY",
                     f"{use.principal}: {use.action} on the AWS managed key {use.resource} needs no statement; its"
                     " key policy allows every principal of the account through the service", use.events)
        return False
    if use.partial:
        findings.add("PARTIAL_ARN",
                     f"{use.principal}: {use.action} on {use.resource}: parts of the ARN were not in the event"
                     " and are '*'; replace them with the real values", use.events)
    return True


def _generalize(granted: list[tuple[GraphUse, tuple[Condition, ...]]], options: BuildOptions,
                findings: _Findings, created: set[str]) -> dict[tuple[Any, ...], str]:
    """(principal, action, resource, conditions) -> resource ARN as it goes into the policies."""
    out: dict[tuple[Any, ...], str] = {}
    groups: dict[tuple[Any, ...], list[GraphUse]] = {}
    for use, conds in granted:
        groups.setdefault((use.principal, use.action, conds), []).append(use)
    for (principal, action, conds), uses in groups.items():
        if options.generalize == "none":
            mapping = {u.resource: u.resource for u in uses}
        else:
            mapping, widenings = generalize((u.resource for u in uses), created)
            for w in widenings:
                original = frozenset(w.original)
                events = (e for u in uses if u.resource in original for e in u.events)
                shown = ", ".join(w.original[:3]) + (f" and {len(w.original) - 3} more" if len(w.original) > 3 else "")
                findings.add("GENERALIZED",
                             f"{principal}: {action} on {w.widened} instead of {shown}: {w.why}"
                             " (--generalize none keeps exact ARNs)", events)
        for use in uses:
            out[(principal, action, use.resource, conds)] = mapping[use.resource]
    return out


def _identity_policies(granted: list[tuple[GraphUse, tuple[Condition, ...]]],
                       resource_of: dict[tuple[Any, ...], str]) -> list[IdentityPolicy]:
    per_principal: dict[str, list[tuple[str, str, tuple[Condition, ...]]]] = {}
    for use, conds in granted:
        resource = resource_of[(use.principal, use.action, use.resource, conds)]
        per_principal.setdefault(use.principal, []).append((use.action, resource, conds))
    return [IdentityPolicy(principal=p, policy=document(merge(grants))) for p, grants in sorted(per_principal.items())]


def _bucket_policies(granted: list[tuple[GraphUse, tuple[Condition, ...]]], resource_of: dict[tuple[Any, ...], str],
                     kinds: dict[str, tuple[str, str | None]], options: BuildOptions,
                     findings: _Findings) -> list[ResourcePolicy]:
    buckets: dict[str, dict[str, list[tuple[str, str, tuple[Condition, ...]]]]] = {}
    owners: dict[str, str] = {}
    partitions: dict[str, str] = {}
    for use, conds in granted:
        if not use.action.startswith("s3:"):
            continue
        bucket = _bucket_of(use.resource)
        if bucket is None or "*" in bucket:
            continue
        owner = options.account_of.get(bucket) or use.resource_account
        caller_account = kinds.get(use.principal, ("", None))[1]
        if owner is None:
            findings.add("BUCKET_OWNER_UNKNOWN",
                         f"bucket {bucket}: the trail does not say which account owns it; assumed the caller's"
                         f" (pass --account-of {bucket}=ACCOUNT if another account owns it)", use.events)
            continue
        if caller_account is None or owner == caller_account:
            continue
        owners[bucket] = owner
        partitions[bucket] = use.resource.split(":", 2)[1]
        extra = conds
        if use.action in ("s3:PutObject", "s3:PutObjectAcl") and use.acl == ("bucket-owner-full-control",):
            extra = tuple(sorted(set(conds) | {ACL_CONDITION}))
        resource = resource_of[(use.principal, use.action, use.resource, conds)]
        buckets.setdefault(bucket, {}).setdefault(use.principal, []).append((use.action, resource, extra))
    out = []
    for bucket, per_principal in sorted(buckets.items()):
        statements: list[dict[str, Any]] = []
        for principal, grants in sorted(per_principal.items()):
            statements.extend(merge(grants, principal={"AWS": principal}))
        unique_sids(statements)
        out.append(ResourcePolicy(resource=f"arn:{partitions[bucket]}:s3:::{bucket}", kind="s3-bucket",
                                  policy=document(statements), account=owners[bucket]))
    return out


def _key_policies(granted: list[tuple[GraphUse, tuple[Condition, ...]]], kinds: dict[str, tuple[str, str | None]],
                  options: BuildOptions, findings: _Findings) -> list[ResourcePolicy]:
    keys: dict[str, dict[str, list[tuple[str, str, tuple[Condition, ...]]]]] = {}
    for use, conds in granted:
        if not use.action.startswith("kms:") or use.resource == "*":
            continue
        if _ALIAS_ARN.match(use.resource):
            findings.add("KEY_ALIAS",
                         f"{use.principal}: {use.action} through the alias {use.resource}; a key policy belongs to"
                         " the key, so none is written (reference the key by its key ARN)", use.events)
            continue
        if not _KEY_ARN.match(use.resource):
            continue
        if use.via:
            caller_account = kinds.get(use.principal, ("", None))[1]
            if caller_account and not any(k == "kms:CallerAccount" for _, k, _ in conds):
                conds = tuple(sorted(set(conds) | {("StringEquals", "kms:CallerAccount", caller_account)}))
        keys.setdefault(use.resource, {}).setdefault(use.principal, []).append((use.action, "*", conds))
    out = []
    for key_arn, per_principal in sorted(keys.items()):
        m = _KEY_ARN.match(key_arn)
        assert m is not None
        partition, account = m.group(1), m.group(3)
        admins = list(options.key_admins) or [f"arn:{partition}:iam::{account}:root"]
        statements: list[dict[str, Any]] = [{
            "Sid": "KeyAdministration",
            "Effect": "Allow",
            "Principal": {"AWS": admins[0] if len(admins) == 1 else sorted(admins)},
            "Action": list(KEY_ADMIN_ACTIONS),
            "Resource": "*",
        }]
        for principal, grants in sorted(per_principal.items()):
            for stmt in merge(grants, principal={"AWS": principal}):
                stmt["Sid"] = "KeyUse" + stmt["Sid"].removeprefix("Kms")
                statements.append(stmt)
        unique_sids(statements)
        findings.add("KEY_POLICY_RESOURCE",
                     f'{key_arn}: its key policy says "Resource": "*", which in a key policy means this key only'
                     " (a key policy applies to its own key; AWS KMS developer guide, key policies)", ())
        out.append(ResourcePolicy(resource=key_arn, kind="kms-key", policy=document(statements), account=account))
    return out


# Cross-account uses whose other half rolesmith writes: bucket policies (S3), key policies (KMS) and
# trust policies (sts:AssumeRole*, TagSession, SetSourceIdentity). Any other resource of another
# account (an SQS queue, an SNS topic, a Lambda function, a secret, an S3 on Outposts bucket …) needs
# its owner's resource policy as well (IAM User Guide, reference_policies_evaluation-logic-cross-account).
_OTHER_HALF_WRITTEN = ("s3:", "kms:", "sts:")


def _cross_account_findings(granted: list[tuple[GraphUse, tuple[Condition, ...]]],
                            kinds: dict[str, tuple[str, str | None]], findings: _Findings) -> None:
    per_resource: dict[tuple[str, str, str], list[GraphUse]] = {}
    for use, _conds in granted:
        owner, caller = use.resource_account, kinds.get(use.principal, ("", None))[1]
        if not owner or not caller or owner == caller or use.action.startswith(_OTHER_HALF_WRITTEN):
            continue
        per_resource.setdefault((use.principal, use.resource, owner), []).append(use)
    for (principal, resource, owner), uses in sorted(per_resource.items()):
        actions = ", ".join(sorted({u.action for u in uses}))
        findings.add("CROSS_ACCOUNT_POLICY_NOT_WRITTEN",
                     f"{principal} uses {resource} of account {owner} ({actions}): across accounts the owner's side"
                     " must allow it too (its resource policy, or a share such as AWS RAM); rolesmith writes only"
                     " bucket, key and trust policies",
                     (e for u in uses for e in u.events))


def _trust_policies(graph: UsageGraph, selected: set[str] | None, kinds: dict[str, tuple[str, str | None]],
                    findings: _Findings) -> list[TrustPolicy]:
    per_role: dict[str, list[Any]] = {}
    for assumption in graph.assumptions():
        if selected is not None and assumption.role not in selected:
            continue
        if _managed_elsewhere(assumption.role):  # AWS or Identity Center owns its trust policy too
            continue
        per_role.setdefault(assumption.role, []).append(assumption)
    out = []
    for role, assumptions in sorted(per_role.items()):
        groups: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        for a in assumptions:
            kind = {"service": "Service", "federated": "Federated"}.get(a.caller_kind, "AWS")
            groups.setdefault((kind, a.actions), set()).add(a.caller)
            if kind == "Federated":
                findings.add("TRUST_FEDERATED",
                             f"{role}: assumed by the federated identity {a.caller}; check the Federated principal"
                             " (identity provider) and add the provider's audience conditions", a.events)
        statements = []
        for (kind, actions), callers in sorted(groups.items()):
            names = sorted(callers)
            statements.append({
                "Sid": f"TrustedBy{kind}",
                "Effect": "Allow",
                "Principal": {kind: names[0] if len(names) == 1 else names},
                "Action": actions[0] if len(actions) == 1 else list(actions),
            })
        unique_sids(statements)
        out.append(TrustPolicy(role=role, policy=document(statements)))
    trusted = {a.role for a in graph.assumptions()}
    for arn, (kind, _) in sorted(kinds.items()):
        if kind == "role" and arn not in trusted and (selected is None or arn in selected) and graph.has_uses(arn):
            findings.add("NO_TRUST_EVIDENCE",
                         f"{arn}: acted in the trail but no AssumeRole of it is recorded; no trust policy written")
    return out


def _trail_findings(graph: UsageGraph, findings: _Findings) -> None:
    for label, count in sorted(graph.unmapped.items()):
        findings.add("UNMAPPED_EVENTS", f"{count} event(s) {label}: no IAM action known, not granted",
                     graph.unmapped_events.get(label, ()))
    if graph.unattributable:
        findings.add("UNATTRIBUTABLE_EVENTS",
                     f"{graph.unattributable} event(s) name no IAM principal (e.g. the resource account's copy of a"
                     " cross-account call); attributed to nobody", graph.unattributable_events)
