"""Acceptance on the real trails: every successful call in each ../shared/data/cloudtrail file is allowed by
the policies ``rolesmith build --skip-bad`` writes from that file, judged by the local evaluator.

This is tests/test_build.py's ``test_every_observed_call_is_allowed_by_the_built_policies`` (issue 2) run
on the public corpus (provenance: ../shared/data/SOURCES.md) instead of the hand-written fixtures. It
reuses that test's ``_policies_for`` (which policy documents are in force for a request) and follows its
``_observed_requests`` (which context a request carries), with the additions the real trails need, each
commented where it is made. Refusals that are rolesmith's own bugs are listed in KNOWN_BUGS and checked
by a strict xfail each, so they stay visible and a fix shows up as an XPASS.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rolesmith.actions import uses_for
from rolesmith.actions.via import KMS_VIA_SERVICES
from rolesmith.evaluator import NamedPolicy, Policies, Request, evaluate
from rolesmith.policies import BuildOptions, PolicySet, build_policies
from rolesmith.trail import read_trail
from rolesmith.trail.model import Event
from tests.test_build import _policies_for

ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cloudtrail"
FILES = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()) if ROOT.is_dir() else []

# Which events count as "successful", i.e. authorisation passed. README (`rolesmith build`): "Denied calls
# are reported, not granted"; every other event is granted, including ones that failed after IAM had
# authorised them (NoSuchBucketPolicy, Client.InvalidRouteTableID.NotFound, ValidationException,
# EntityAlreadyExists, and EC2's Client.DryRunOperation, "Request would have succeeded"). Those are checked
# too. Not checked: the denials (Event.denied) and the codes below, where the request never reached, or
# was refused at, the authorisation evaluated here, so the trail shows nothing a policy must allow.
NOT_AUTHORISED = frozenset({
    "ThrottlingException",  # throttled: no evidence that authorisation ran
    "ExpiredToken", "RequestExpired", "CloudTrailInvalidClientTokenIdException",  # authentication failed
    "VpceAccessDenied",  # refused by a VPC endpoint policy (Event.denied lists it too)
    "Blocked", "SomeErrorCode",  # placeholders in Panther's hand-edited test events: meaning unknown
})

# Uses the build reports as deliberately not granted (README, findings codes) are skipped: the policies are
# *meant* not to allow them. They are recognised from the findings of the very build under test, so a use
# dropped *without* its finding still fails.
# * UNSCOPED_USE_DROPPED: an action with a resource type whose resource the trail does not name (the use
#   is (principal, action, "*")).
# * WILDCARD_ACTION_DROPPED: the event names an action pattern.
# * AWS_MANAGED_KEY: KMS use of an alias/aws/* key needs no caller statement.
# * NO_POLICY_FOR_PRINCIPAL (root, federated, account principals) and UNATTRIBUTABLE_EVENTS: excluded up
#   front, only role and user principals get identity policies. UNMAPPED_EVENTS: uses_for returns no use
#   to check for them. DENIED_CALLS: excluded by _successful.
_DROPPED = {
    "UNSCOPED_USE_DROPPED": re.compile(r"^(?P<principal>\S+): (?P<action>\S+) acts on a resource type"),
    "WILDCARD_ACTION_DROPPED": re.compile(r"^(?P<principal>\S+): action (?P<action>\S+) is a pattern"),
    "AWS_MANAGED_KEY": re.compile(r"^(?P<principal>\S+): (?P<action>\S+) on the AWS managed key (?P<resource>\S+) "),
}
_POLICY_KINDS = ("role", "user")
_TRUST_ACTIONS = frozenset({"sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity",
                            "sts:TagSession", "sts:SetSourceIdentity", "sts:SetContext"})
_KMS_KEY_OR_ALIAS = re.compile(r"^arn:[^:]+:kms:[^:]*:\d{12}:(?:key|alias)/")

# The rolesmith bugs that make the built policies refuse calls the trails show succeeding. (Fixed: a
# kms:ViaService condition for services outside the KMS guide's table, e.g. CloudFormation, KMS itself
# and internal.amazonaws.com, which refused four KMS calls here.)
OUTPOSTS_BUG = (
    "gap: a user of 111122223333 writes to an S3 on Outposts bucket of 222222222222; cross-account access needs"
    " the Outposts bucket policy too, but rolesmith writes bucket policies (and BUCKET_OWNER_UNKNOWN findings)"
    " only for arn:aws:s3::: buckets (synthesize._bucket_policies); a CROSS_ACCOUNT_POLICY_NOT_WRITTEN finding"
    " names the owner's missing half, but no policy covers it"
)
# (file, event, action, resource) -> the bug; each is checked by a strict xfail below.
KNOWN_BUGS: dict[tuple[str, str, str, str], str] = {
    ("awsdocs_examples/amazon-s3-userguide.jsonl", "ee3b4e0c-ab12-459b-9998-0a5a6f2e4015", "s3-outposts:PutObject",
     "arn:aws:s3-outposts:us-east-1:222222222222:outpost/*/bucket/DOC-EXAMPLE-BUCKET1/object/path/upload.sh"):
        OUTPOSTS_BUG,
}


def _skip_if_absent() -> None:
    if not ROOT.is_dir():
        pytest.skip(f"../shared/ not present: {ROOT} holds the public CloudTrail corpus")


@cache
def _built(name: str) -> PolicySet:
    return build_policies([ROOT / name], BuildOptions(skip_bad=True)).policies


def _dropped(ps: PolicySet) -> set[tuple[str, str, str | None]]:
    """(principal, action, resource or None for any) the build reports as not granted on purpose."""
    out: set[tuple[str, str, str | None]] = set()
    for finding in ps.findings:
        pattern = _DROPPED.get(finding.code)
        if pattern is None:
            continue
        m = pattern.match(finding.message)
        assert m, f"{finding.code}: message no longer in the documented shape: {finding.message}"
        groups = m.groupdict()
        resource = "*" if finding.code == "UNSCOPED_USE_DROPPED" else groups.get("resource")
        out.add((groups["principal"], groups["action"], resource))
    return out


def _successful(event: Event) -> bool:
    return not event.denied and event.error_code not in NOT_AUTHORISED


def _event_ref(event: Event) -> str:
    return event.event_id or f"record #{event.origin.rpartition('#')[2]}"


def _session_arn(event: Event) -> str | None:
    principal = event.principal
    assert principal is not None
    session = principal.session_arn
    # A session ARN names the role that issued it (assumed-role/<role>/<session>). Some documentation and
    # hand-edited records contradict their own sessionIssuer (the IAM guide's role-chaining example:
    # arn .../assumed-role/JohnDoe/JohnRole1 issued by role/JohnRole1); AWS never issues such a session,
    # so the request is judged as the role rolesmith attributed the call to, without that session ARN.
    if session and ":assumed-role/" in session and principal.kind == "role":
        if session.split(":assumed-role/", 1)[1].split("/", 1)[0] != principal.arn.rsplit("/", 1)[-1]:
            return None
    return session


def _context(event: Event, use: Any) -> dict[str, Any]:
    principal = event.principal
    assert principal is not None
    # As tests/test_build.py: the use's own conditions are what the real request carried, plus the
    # caller's account and the canned ACL of an upload.
    context: dict[str, Any] = {key: value for _, key, value in use.conditions}
    if principal.account:
        context.setdefault("kms:CallerAccount", principal.account)
        context.setdefault("aws:PrincipalAccount", principal.account)
    acl = event.request.get("x-amz-acl")
    if isinstance(acl, list):  # some trails log headers as one-element lists
        acl = acl[0] if acl else None
    if acl and use.action.startswith("s3:Put"):
        context["s3:x-amz-acl"] = acl
    # A KMS call an integrated service made for the caller carries kms:ViaService =
    # <service>.<region>.amazonaws.com, but only for the services in the documented table
    # (kms-dg__conditions-kms.md, "Services that support the kms:ViaService condition key",
    # copied as rolesmith.actions.via.KMS_VIA_SERVICES); other services' calls carry none.
    if use.action.startswith("kms:") and use.via and use.via.endswith(".amazonaws.com") and event.region:
        service = use.via[: -len(".amazonaws.com")]
        if service in KMS_VIA_SERVICES:
            context.setdefault("kms:ViaService", f"{service}.{event.region}.amazonaws.com")
    return context


def _policies(ps: PolicySet, request: Request) -> Policies:
    action, resource = request.action, request.resource
    # tests/test_build.py's _policies_for treats every sts: action as a role assumption and every kms:
    # action as a use of a key. In the real trails sts:GetFederationToken (resource federated-user/…) and
    # kms:CreateKey / ListAliases / GenerateRandom (resource "*") are neither: only the identity policy
    # decides them.
    if (action.startswith("sts:") and action not in _TRUST_ACTIONS) or (
            action.startswith("kms:") and not _KMS_KEY_OR_ALIAS.match(resource)):
        return Policies(identity=tuple(NamedPolicy(name=f"identity {p.principal}", document=p.policy)
                                       for p in ps.identity_policies if p.principal == request.principal))
    policies = _policies_for(ps, request.principal, action, resource)
    cross = request.resource_account not in (None, request.principal_account)
    owned_by_rolesmith = (action.startswith("s3") or action.startswith("kms:") or action in _TRUST_ACTIONS)
    if cross and policies.resource is None and not owned_by_rolesmith:
        # Cross-account on a resource whose policy rolesmith never writes (IAM users, EC2 traffic-mirror
        # filters, Lambda functions, …): the call succeeded, so the resource's owner allowed it (or, in
        # Panther's hand-edited events, the record's account ids disagree: principal 210987654321 calling
        # iam:CreateUser on a user of recipient account 123456789012). That side is not in the trail;
        # stand in for it, so what is judged is the identity policy rolesmith wrote. S3 (incl. Outposts),
        # KMS and trust policies are rolesmith's to write and get no stand-in.
        policies = Policies(identity=policies.identity, resource=NamedPolicy(
            name="resource owner's policy (not in the trail)", document={"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": request.principal}, "Action": action,
                "Resource": resource}]}))
    return policies


def _without_policy(ps: PolicySet) -> set[str]:
    """Principals the build says it writes no policy for (NO_POLICY_FOR_PRINCIPAL: service-linked and
    Identity Center roles, names that are no IAM role); the message starts with the ARN."""
    return {f.message.split(" ", 1)[0] for f in ps.findings if f.code == "NO_POLICY_FOR_PRINCIPAL"}


def _observed_requests(name: str, ps: PolicySet) -> list[tuple[tuple[str, str, str, str], str, Request]]:
    dropped = _dropped(ps)
    without = _without_policy(ps)
    out = []
    for event in read_trail([ROOT / name], skip_bad=True):
        principal = event.principal
        if principal is None or principal.kind not in _POLICY_KINDS or not _successful(event):
            continue
        if principal.arn in without:
            continue
        mapped = uses_for(event)
        for use in (*mapped.uses, *mapped.inferred):
            if (principal.arn, use.action, use.resource) in dropped or (principal.arn, use.action, None) in dropped:
                continue
            request = Request(principal=principal.arn, principal_account=principal.account or "",
                              action=use.action, resource=use.resource, resource_account=use.resource_account,
                              context=_context(event, use), session_arn=_session_arn(event))
            key = (name, _event_ref(event), use.action, use.resource)
            out.append((key, f"{event.source} {event.name} {key[1]} {use.action} {use.resource}", request))
    return out


@cache
def _checks(name: str) -> tuple[tuple[tuple[str, str, str, str], str, bool, str], ...]:
    """(key, label, allowed, "decision at layer") for every (call, use) of the file."""
    ps = _built(name)
    out = []
    for key, label, request in _observed_requests(name, ps):
        decision = evaluate(request, _policies(ps, request))
        out.append((key, label, decision.allowed, f"{decision.decision} at {decision.layer}"))
    return tuple(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES or ["<absent>"])
def test_every_successful_call_in_a_real_trail_is_allowed_by_the_built_policies(name: str) -> None:
    _skip_if_absent()
    checks = _checks(name)
    refused = [f"{label}: {why}" for key, label, allowed, why in checks if not allowed and key not in KNOWN_BUGS]
    assert refused == [], f"{len(refused)} of {len(checks)} checks refused"


@pytest.mark.slow
@pytest.mark.parametrize("key", [
    pytest.param(key, marks=pytest.mark.xfail(strict=True, reason=reason), id=f"{key[0]}:{key[1]}:{key[2]}")
    for key, reason in KNOWN_BUGS.items()])
def test_known_bug_still_refuses_a_real_call(key: tuple[str, str, str, str]) -> None:
    _skip_if_absent()
    found = [(allowed, why) for k, _, allowed, why in _checks(key[0]) if k == key]
    assert found, f"{key}: no longer among the checks (fixed differently? update KNOWN_BUGS)"
    assert all(allowed for allowed, _ in found), found
