"""Authorise one permission check against every policy layer, and word the denial as AWS does.

A ``Check`` is one (action, resource, context) a request needs; ``authorize`` gathers the policies in
force — identity, boundary, session, SCPs of the caller's account, RCPs and the resource's own
policy (bucket, key, trust, queue) — and asks ``rolesmith.evaluator.evaluate``. The denial message
follows the documented form "User: ARN is not authorized to perform: ACTION on resource: ARN
because no identity-based policy allows the ACTION action"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from rolesmith.evaluator import Decision, NamedPolicy, Policies, Request, evaluate
from rolesmith.sandbox.auth import Identity
from rolesmith.sandbox.world import World


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    action: str
    resource: str
    resource_account: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """A failed check: the decision and AWS's detailed message for it."""

    check: Check
    decision: Decision
    message: str


_TRUST_ACTIONS = frozenset({"sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity",
                            "sts:tagsession", "sts:setsourceidentity"})
_EXPLICIT = {
    "identity": "an identity-based policy", "resource": "a resource-based policy",
    "key-policy": "a resource-based policy", "trust-policy": "a resource-based policy",
    "scp": "a service control policy", "rcp": "a resource control policy",
    "boundary": "a permissions boundary", "session": "a session policy",
}
_IMPLICIT = {
    "identity": "identity-based policy", "resource": "resource-based policy", "key-policy": "resource-based policy",
    "trust-policy": "resource-based policy", "scp": "service control policy", "rcp": "resource control policy",
    "boundary": "permissions boundary", "session": "session policy",
}


def denial_message(caller_arn: str, check: Check, decision: Decision) -> str:
    head = f"User: {caller_arn} is not authorized to perform: {check.action} on resource: {check.resource}"
    layer = decision.layer or "identity"
    if decision.decision == "ExplicitlyDenied":
        return f"{head} with an explicit deny in {_EXPLICIT.get(layer, 'an identity-based policy')}"
    return f"{head} because no {_IMPLICIT.get(layer, 'identity-based policy')} allows the {check.action} action"


def arn_account(arn: str) -> str | None:
    """The account field of an ARN, or None (a malformed ARN from a request names no account)."""
    parts = arn.split(":", 5)
    return parts[4] or None if len(parts) == 6 else None


def _named(prefix: str, docs: Mapping[str, Any]) -> tuple[NamedPolicy, ...]:
    return tuple(NamedPolicy(name=f"{prefix}{n}", document=d) for n, d in docs.items())


def _levels(kind: str, levels: tuple[tuple[Mapping[str, Any], ...], ...]) -> tuple[tuple[NamedPolicy, ...], ...]:
    return tuple(tuple(NamedPolicy(name=f"{kind}-{i}-{j}", document=d) for j, d in enumerate(lvl))
                 for i, lvl in enumerate(levels))


def resource_of(world: World, check: Check) -> tuple[NamedPolicy | None, str | None, str | None]:
    """(resource policy, kind, owning account) of the resource a check names."""
    arn = check.resource
    if arn.startswith("arn:aws:s3:::"):
        bucket = world.bucket(arn[13:].split("/", 1)[0])
        if bucket is None:
            return None, "s3-bucket", check.resource_account
        pol = NamedPolicy(name=f"bucket-policy:{bucket.name}", document=bucket.policy) if bucket.policy else None
        return pol, "s3-bucket", bucket.account
    if arn.startswith("arn:aws:kms:"):
        doc = world.key_policy(arn)
        acct = arn_account(arn)
        if doc is None:
            if world.is_aws_managed(arn):
                return None, None, acct
            # A key the scenario does not know: its policy allows nothing.
            doc = {"Version": "2012-10-17", "Statement": []}
        return NamedPolicy(name=f"key-policy:{arn.rsplit('/', 1)[-1]}", document=doc), "kms-key", acct
    # The trust policy governs assuming the role and what comes with it: session tags and source
    # identity (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html).
    if arn.startswith("arn:aws:iam::") and ":role/" in arn and check.action.lower() in _TRUST_ACTIONS:
        spec = world.principal(arn)
        if spec is not None and spec.trust is not None:
            return NamedPolicy(name=f"trust-policy:{spec.name}", document=spec.trust), "role-trust", spec.account
        return NamedPolicy(name="trust-policy", document={"Version": "2012-10-17", "Statement": []}), "role-trust", arn_account(arn)
    if arn.startswith("arn:aws:sqs:"):
        with world.lock:
            doc = world.queues.get(arn)
        return (NamedPolicy(name=f"queue-policy:{arn.rsplit(':', 1)[-1]}", document=doc) if doc else None,
                "sqs-queue", arn_account(arn))
    return None, None, check.resource_account or arn_account(arn)


def base_context(ident: Identity, region: str, *, via: str | None = None) -> dict[str, Any]:
    """The global condition keys AWS adds to every request of this caller
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html)."""
    now = time.time()
    ctx: dict[str, Any] = {
        "aws:PrincipalArn": ident.arn,
        "aws:PrincipalAccount": ident.account,
        "aws:PrincipalType": "AssumedRole" if ident.session_name else "User",
        "aws:userid": ident.principal_id,
        "aws:SourceIp": "127.0.0.1",
        "aws:SecureTransport": "false",
        "aws:CurrentTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "aws:EpochTime": str(int(now)),
        "aws:RequestedRegion": region,
        "aws:ViaAWSService": "true" if via else "false",
    }
    if via:
        ctx["aws:CalledVia"] = [via]
        ctx["aws:CalledViaFirst"] = via
        ctx["aws:CalledViaLast"] = via
        del ctx["aws:SourceIp"]  # a service's own request carries no caller IP
    if not ident.session_name:
        ctx["aws:username"] = ident.spec.name
    if ident.source_identity:
        ctx["aws:SourceIdentity"] = ident.source_identity
    for k, v in ident.spec.tags.items():
        ctx[f"aws:PrincipalTag/{k}"] = v
    return ctx


def authorize(world: World, ident: Identity, check: Check) -> Refusal | None:
    """None when allowed; otherwise the refusal with its AWS message."""
    with world.lock:
        spec = world.principals.get(ident.arn, ident.spec)
        acct = world.scenario.account(ident.account)
    res_policy, kind, res_account = resource_of(world, check)
    res_acct_spec = world.scenario.account(res_account) if res_account else None
    policies = Policies(
        identity=_named("", spec.policies),
        boundary=NamedPolicy(name="boundary", document=spec.boundary) if spec.boundary else None,
        session=NamedPolicy(name="session-policy", document=ident.session_policy) if ident.session_policy else None,
        scps=_levels("scp", acct.scps) if acct else (),
        rcps=_levels("rcp", res_acct_spec.rcps) if res_acct_spec else (),
        resource=res_policy, resource_kind=kind,
        service_linked_role=spec.service_linked, management_account=bool(acct and acct.management))
    request = Request(principal=ident.arn, principal_account=ident.account, action=check.action,
                      resource=check.resource, resource_account=res_account or ident.account,
                      context=dict(check.context), session_arn=ident.session_arn)
    decision = evaluate(request, policies)
    if decision.decision == "Allowed":
        return None
    return Refusal(check=check, decision=decision, message=denial_message(ident.caller_arn, check, decision))


def authorize_all(world: World, ident: Identity, checks: list[Check]) -> Refusal | None:
    seen: set[tuple[str, str]] = set()
    for check in checks:
        k = (check.action.lower(), check.resource)
        if k in seen:
            continue
        seen.add(k)
        refusal = authorize(world, ident, check)
        if refusal is not None:
            return refusal
    return None
