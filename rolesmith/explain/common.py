"""What every reasoning path shares: the outcome record, layer vocabulary, the fixes each layer gets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Protocol

from rolesmith.evaluator import Decision, MatchedStatement, NamedPolicy, Policies, Request, evaluate
from rolesmith.explain import fixes as fx
from rolesmith.explain.model import Basis, Fix
from rolesmith.explain.network import scope_run_instances
from rolesmith.explain.requests import service_of
from rolesmith.explain.trailindex import TrailIndex, invoking_service
from rolesmith.trail.model import Event


class Store(Protocol):
    def policies_for(self, request: Request) -> Policies: ...


Decoder = Callable[[str], "Mapping[str, Any] | None"]
FILTERS = ("scp", "rcp", "boundary", "session")
RESOURCE_LAYERS = ("key-policy", "trust-policy", "resource")
ASSUME = frozenset({"sts:assumerole", "sts:assumerolewithwebidentity", "sts:assumerolewithsaml"})
READS = frozenset({"GetObject", "HeadObject", "GetObjectAcl", "GetObjectTagging", "GetObjectAttributes"})
MISSING_FILTER = {"scp": "MISSING_SCP_ALLOW", "rcp": "MISSING_RCP_ALLOW", "boundary": "MISSING_BOUNDARY_ALLOW",
                  "session": "MISSING_SESSION_ALLOW", "vpc-endpoint": "MISSING_VPC_ENDPOINT_ALLOW"}
EXPLICIT = {"identity": "EXPLICIT_DENY_IDENTITY", "resource": "EXPLICIT_DENY_RESOURCE",
            "key-policy": "EXPLICIT_DENY_RESOURCE", "trust-policy": "TRUST_POLICY", "scp": "EXPLICIT_DENY_SCP",
            "rcp": "EXPLICIT_DENY_RCP", "boundary": "EXPLICIT_DENY_BOUNDARY", "session": "EXPLICIT_DENY_SESSION",
            "vpc-endpoint": "EXPLICIT_DENY_VPC_ENDPOINT"}
LAYER_WORDS = {"identity": "identity-based policy", "resource": "resource-based policy", "key-policy": "key policy",
               "trust-policy": "trust policy", "scp": "service control policy", "rcp": "resource control policy",
               "boundary": "permissions boundary", "session": "session policy", "vpc-endpoint": "VPC endpoint policy"}

NEED_POLICIES = "the policies in force (pass --policies DIR or --live) to confirm which layer refused"


@dataclass(frozen=True, kw_only=True, slots=True)


class Out:
    reason: str
    basis: Basis
    layer: str | None
    summary: str
    fixes: tuple[Fix, ...] = ()
    statements: tuple[MatchedStatement, ...] = ()
    missing: tuple[str, ...] = ()
    hint: str | None = None
    notes: tuple[str, ...] = ()


def explicit(req: Request, pol: Policies, dec: Decision) -> Out:
    layer = dec.layer or "identity"
    denies = tuple(s for s in dec.statements if s.effect == "Deny") or dec.statements
    fixes = []
    for s in denies:
        target, kind = deny_target(s.layer, s.policy, req, pol)
        fixes.append(fx.change_deny(
            s.layer, s.policy, statement_doc(pol, s), s.index, s.sid, target, kind,
            f"statement {s.sid or '#' + str(s.index)} of {LAYER_WORDS.get(s.layer, s.layer)} {s.policy} denies "
            f"{req.action} on {req.resource}: narrow it or add an exception for {req.principal}"))
    first = denies[0] if denies else None
    where = f" (statement {first.sid or '#' + str(first.index)} of {first.policy})" if first else ""
    return Out(reason=EXPLICIT.get(layer, "UNKNOWN"), basis="policies", layer=layer,
                summary=f"an explicit Deny in the {LAYER_WORDS.get(layer, layer)}{where} refuses {req.action} "
                f"on {req.resource} for {req.principal}",
                fixes=tuple(fixes), statements=denies)


def deny_target(layer: str, policy: str, req: Request, pol: Policies) -> tuple[str | None, str]:
    if layer == "identity":
        return req.principal, fx.principal_kind(req.principal)
    if layer in RESOURCE_LAYERS:
        kind = pol.resource_kind or fx.resource_kind(req.resource, req.action)
        return fx.policy_target(req.resource, kind), kind
    if layer == "session":
        return req.session_arn, "session-policy"
    return policy, {"scp": "scp", "rcp": "rcp", "boundary": "permissions-boundary"}.get(layer, layer)


def statement_doc(pol: Policies, s: MatchedStatement) -> Mapping[str, Any] | None:
    candidates: list[NamedPolicy] = []
    if s.layer == "identity":
        candidates = list(pol.identity)
    elif s.layer in RESOURCE_LAYERS and pol.resource:
        candidates = [pol.resource]
    elif s.layer == "boundary" and pol.boundary:
        candidates = [pol.boundary]
    elif s.layer == "session" and pol.session:
        candidates = [pol.session]
    elif s.layer in ("scp", "rcp"):
        candidates = [p for level in (pol.scps if s.layer == "scp" else pol.rcps) for p in level]
    for p in candidates:
        if p.name == s.policy:
            stmts = p.document.get("Statement", [])
            stmts = [stmts] if isinstance(stmts, Mapping) else list(stmts)
            if 0 <= s.index < len(stmts):
                return stmts[s.index]
    return None


def resource_fix(req: Request, kind: str) -> Fix:
    resource, _ = fx.generated_name(req.resource) or (req.resource, "")
    return fx.add_resource(resource, req.principal, [req.action],
                           f"allow {req.principal} {req.action} in the {kind} policy", kind=kind)


def identity_fix(event: Event, req: Request, pol: Policies | None,
                 trail: TrailIndex) -> tuple[Fix, tuple[MatchedStatement, ...], str | None, tuple[str, ...]]:
    near = near_misses(req, pol) if pol is not None else ()
    tag_keys = sorted({k for _, keys in near for k in keys if k.lower().startswith(("aws:requesttag/", "aws:tagkeys"))})
    service = invoking_service(event)
    tags_later = service is not None and req.action.lower() == "ec2:runinstances" and "aws:TagKeys" not in req.context
    if tags_later and (tag_keys or pol is None):
        scoped = scope_run_instances(event, req)
        if scoped is not None:
            note = (f"{service} launches instances untagged and tags them afterwards with ec2:CreateTags, so a "
                    f"RunInstances condition on {', '.join(tag_keys) or 'aws:RequestTag'} can never hold: scope "
                    "RunInstances by the security group / subnet it launches into instead")
            if trail.tagged_later and any(p == req.principal for p, _ in trail.tagged_later):
                note += " (the trail shows those CreateTags calls)"
            return scoped, tuple(s for s, _ in near), "TAGS_APPLIED_AFTER_CREATE", (note,)
    widened = fx.generated_name(req.resource)
    resource = widened[0] if widened else req.resource
    notes: tuple[str, ...] = (widened[1],) if widened else ()
    hint = "GENERATED_NAME" if widened else None
    if near and hint is None:
        hint = "CONDITION_NOT_MET"
        keys = sorted({k for _, ks in near for k in ks})
        notes += (f"an Allow matches {req.action} but its condition on {', '.join(keys)} does not hold for this call",)
    fix = fx.add_identity(req.principal, [req.action], [resource],
                          f"allow {req.principal} {req.action} on {resource}")
    return fix, tuple(s for s, _ in near), hint, notes


def near_misses(req: Request, pol: Policies) -> tuple[tuple[MatchedStatement, tuple[str, ...]], ...]:
    """Identity Allow statements that would match but for their Condition: the usual cause of a
    "but my policy allows it" denial. Checked by evaluating each statement without its condition."""
    found = []
    own = replace(req, resource_account=None)
    for policy in pol.identity:
        stmts = policy.document.get("Statement", [])
        stmts = [stmts] if isinstance(stmts, Mapping) else list(stmts)
        for index, st in enumerate(stmts):
            if not isinstance(st, Mapping) or st.get("Effect") != "Allow" or not st.get("Condition"):
                continue
            bare = {k: v for k, v in st.items() if k != "Condition"}
            probe = Policies(identity=(NamedPolicy(name=policy.name, document={"Version": fx.VERSION, "Statement": [bare]}),))
            try:
                if evaluate(own, probe).allowed:
                    keys = tuple(k for cond in st["Condition"].values() if isinstance(cond, Mapping) for k in cond)
                    found.append((MatchedStatement(layer="identity", policy=policy.name, sid=st.get("Sid"),
                                                   index=index, effect="Allow"), keys))
            except Exception:  # noqa: BLE001 - a probe must never turn an explanation into a crash
                continue
    return tuple(found)


def trust_out(req: Request, basis: Basis, cross: bool) -> Out:
    fixes = [fx.add_trust(req.resource, req.principal, req.action,
                          f"let {req.principal} assume {req.resource} in its trust policy")]
    if cross or basis != "policies":
        fixes.append(fx.add_identity(req.principal, [req.action], [req.resource],
                                     f"allow {req.principal} {req.action} on {req.resource}"))
    return Out(reason="TRUST_POLICY", basis=basis, layer="trust-policy", fixes=tuple(fixes),
                summary=f"{req.principal} may not assume {req.resource}: its trust policy does not allow the caller",
                notes=("without policies both the trust statement and the caller's allow are proposed",)
                if basis != "policies" else ())


def via_kms(event: Event, req: Request) -> bool:
    """A KMS call a service made on the caller's behalf (the KMS event itself, invokedBy S3 …)."""
    return req.action.lower().startswith("kms:") and not event.source.startswith("kms.") or (
        event.source.startswith("kms.") and bool(event.invoked_by))


def via_service(event: Event) -> str:
    service = event.invoked_by.split(".", 1)[0] if event.source.startswith("kms.") and event.invoked_by else service_of(event)
    return f"{service}.{event.region or 'us-east-1'}.amazonaws.com"


def with_via(fix: Fix, event: Event) -> Fix:
    """kms:ViaService keeps the grant to calls through that service (kms-dg__conditions-kms.md)."""
    if fix.op != "add-statements" or fix.document is None:
        return fix
    doc = {"Version": fix.document["Version"], "Statement": []}
    for st in fix.document["Statement"]:
        st = dict(st)
        if str(st.get("Action", "")).lower().startswith("kms:"):
            st["Condition"] = {"StringEquals": {"kms:ViaService": via_service(event)}}
        doc["Statement"].append(st)
    return replace(fix, document=doc)
