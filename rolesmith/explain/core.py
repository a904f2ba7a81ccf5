"""Why one denied event was refused: evaluate the policies in force, else read AWS's message.

Layers and their codes follow "Policy evaluation logic" and "Cross-account policy evaluation logic"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html):
same account, an identity *or* a resource-policy allow suffices; cross-account, both must allow; KMS key
policies and role trust policies must allow by themselves; SCPs, RCPs, boundaries and session policies
only filter. Message parsing follows
https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Protocol

from rolesmith.evaluator import Decision, MatchedStatement, NamedPolicy, Policies, Request, evaluate
from rolesmith.explain import fixes as fx
from rolesmith.explain.messages import ParsedMessage, parse_message
from rolesmith.explain.model import Basis, Explanation, Fix
from rolesmith.explain.network import scope_run_instances
from rolesmith.explain.requests import (
    arn_account,
    build_request,
    kms_actions_for,
    kms_key_for,
    s3_bucket_owner,
    s3_object_arn,
    service_of,
)
from rolesmith.explain.trailindex import TrailIndex, invoking_service
from rolesmith.trail.model import Event


class Store(Protocol):
    def policies_for(self, request: Request) -> Policies: ...


Decoder = Callable[[str], "Mapping[str, Any] | None"]

_FILTERS = ("scp", "rcp", "boundary", "session")
_RESOURCE_LAYERS = ("key-policy", "trust-policy", "resource")
_ASSUME = frozenset({"sts:assumerole", "sts:assumerolewithwebidentity", "sts:assumerolewithsaml"})
_READS = frozenset({"GetObject", "HeadObject", "GetObjectAcl", "GetObjectTagging", "GetObjectAttributes"})
_MISSING_FILTER = {"scp": "MISSING_SCP_ALLOW", "rcp": "MISSING_RCP_ALLOW", "boundary": "MISSING_BOUNDARY_ALLOW",
                   "session": "MISSING_SESSION_ALLOW", "vpc-endpoint": "MISSING_VPC_ENDPOINT_ALLOW"}
_EXPLICIT = {"identity": "EXPLICIT_DENY_IDENTITY", "resource": "EXPLICIT_DENY_RESOURCE",
             "key-policy": "EXPLICIT_DENY_RESOURCE", "trust-policy": "TRUST_POLICY", "scp": "EXPLICIT_DENY_SCP",
             "rcp": "EXPLICIT_DENY_RCP", "boundary": "EXPLICIT_DENY_BOUNDARY", "session": "EXPLICIT_DENY_SESSION",
             "vpc-endpoint": "EXPLICIT_DENY_VPC_ENDPOINT"}
_LAYER_WORDS = {"identity": "identity-based policy", "resource": "resource-based policy", "key-policy": "key policy",
                "trust-policy": "trust policy", "scp": "service control policy", "rcp": "resource control policy",
                "boundary": "permissions boundary", "session": "session policy", "vpc-endpoint": "VPC endpoint policy"}
NEED_POLICIES = "the policies in force (pass --policies DIR or --live) to confirm which layer refused"


@dataclass(frozen=True, kw_only=True, slots=True)
class _Out:
    reason: str
    basis: Basis
    layer: str | None
    summary: str
    fixes: tuple[Fix, ...] = ()
    statements: tuple[MatchedStatement, ...] = ()
    missing: tuple[str, ...] = ()
    hint: str | None = None
    notes: tuple[str, ...] = ()


def explain_event(event: Event, store: Store | None = None, *, trail: TrailIndex | None = None,
                  decoder: Decoder | None = None) -> Explanation:
    """Explain one denied event. ``store`` answers ``policies_for(request)`` (a ``--policies DIR`` or a
    live account); without it the reason comes from AWS's message and the rest of the ``trail``."""
    trail = trail or TrailIndex()
    parsed = parse_message(event.error_message)
    decoded = decoder(parsed.encoded) if decoder is not None and parsed.encoded else None
    built = build_request(event, parsed, decoded)
    req = built.request
    account_of = getattr(store, "account_of", None)
    if req is not None and req.resource_account is None and callable(account_of) and ":s3:::" in req.resource:
        owner = account_of(req.resource)  # S3 ARNs carry no account: the store may know the bucket's owner
        if owner and owner != req.principal_account:
            req = replace(req, resource_account=owner)
    owner_note: tuple[str, ...] = ()
    if req is not None and req.resource_account is None and ":s3:::" in req.resource and not s3_bucket_owner(event):
        owner_note = ("the bucket's owning account is neither in the event nor in the policies: assumed the "
                      "caller's own",)
    out = _object_ownership(event, req, trail, store)
    if out is None and req is None:
        out = _Out(reason="UNKNOWN", basis="none", layer=None,
                   summary=f"{event.source.split('.', 1)[0]}:{event.name} was refused to a caller the record does not name",
                   missing=built.missing)
    elif out is None and req is not None:
        if store is not None:
            req, out = _first_denied(event, req, built.alternatives, parsed, built.inferred_kms, store, trail)
        else:
            out = _from_message(event, req, parsed, decoded, built.inferred_kms, trail)
        gaps = getattr(store, "gaps_for", None)
        extra = built.missing + (tuple(gaps(req)) if callable(gaps) and req is not None else ())
        if extra:
            out = replace(out, missing=out.missing + extra)
    assert out is not None
    missing = out.missing
    if out.reason == "UNKNOWN" and not missing:
        missing = (NEED_POLICIES,)
    return Explanation(
        event_id=event.event_id,
        origin=event.origin,
        event=f"{service_of(event)}:{event.name}",
        time=event.time,
        principal=req.principal if req is not None else None,
        caller=None if req is not None else " ".join(x for x in (event.identity_type, event.caller_account) if x) or None,
        request=req,
        reason=out.reason,
        basis=out.basis,
        layer=out.layer,
        summary=out.summary,
        statements=out.statements,
        fixes=out.fixes,
        missing=missing,
        hint=out.hint,
        notes=built.notes + owner_note + out.notes,
        error_message=event.error_message,
    )


# --------------------------------------------------------------------------- policies


def _first_denied(event: Event, req: Request, alternatives: tuple[str, ...], parsed: ParsedMessage,
                  inferred: tuple[Any, ...], store: Store, trail: TrailIndex) -> tuple[Request, _Out]:
    """AWS refuses a call when any resource it touches is refused: explain the first refused one."""
    first = _from_policies(event, req, parsed, inferred, store, trail)
    if first.reason != "UNKNOWN" or not alternatives:
        return req, first
    for resource in alternatives:
        account = arn_account(resource)
        alt = replace(req, resource=resource,
                      resource_account=account if account and account != req.principal_account else None)
        out = _from_policies(event, alt, parsed, inferred, store, trail)
        if out.reason != "UNKNOWN":
            return alt, out
    return req, first


def _from_policies(event: Event, req: Request, parsed: ParsedMessage, inferred: tuple[Any, ...], store: Store,
                   trail: TrailIndex) -> _Out:
    pol = store.policies_for(req)
    dec = evaluate(req, pol)
    if dec.allowed:
        kms = _indirect_kms(event, req, parsed, inferred, store, trail)
        if kms is not None:
            return kms
        return _Out(reason="UNKNOWN", basis="policies", layer=None,
                    summary=f"the policies given allow {req.action} on {req.resource} for {req.principal}",
                    missing=("why AWS refused what these policies allow: they changed since the event, or a layer "
                             "rolesmith does not evaluate refused it (VPC endpoint policy, ACL, Block Public Access)",))
    if dec.decision == "ExplicitlyDenied":
        return _explicit(req, pol, dec)
    return _implicit(event, req, pol, dec, trail)


def _explicit(req: Request, pol: Policies, dec: Decision) -> _Out:
    layer = dec.layer or "identity"
    denies = tuple(s for s in dec.statements if s.effect == "Deny") or dec.statements
    fixes = []
    for s in denies:
        target, kind = _deny_target(s.layer, s.policy, req, pol)
        fixes.append(fx.change_deny(
            s.layer, s.policy, _statement_doc(pol, s), s.index, s.sid, target, kind,
            f"statement {s.sid or '#' + str(s.index)} of {_LAYER_WORDS.get(s.layer, s.layer)} {s.policy} denies "
            f"{req.action} on {req.resource}: narrow it or add an exception for {req.principal}"))
    first = denies[0] if denies else None
    where = f" (statement {first.sid or '#' + str(first.index)} of {first.policy})" if first else ""
    return _Out(reason=_EXPLICIT.get(layer, "UNKNOWN"), basis="policies", layer=layer,
                summary=f"an explicit Deny in the {_LAYER_WORDS.get(layer, layer)}{where} refuses {req.action} "
                f"on {req.resource} for {req.principal}",
                fixes=tuple(fixes), statements=denies)


def _implicit(event: Event, req: Request, pol: Policies, dec: Decision, trail: TrailIndex) -> _Out:
    layers = dec.layers
    cross = req.resource_account is not None and req.resource_account != req.principal_account
    res_layer = next((name for name in _RESOURCE_LAYERS if name in layers), "resource")
    res_state = layers.get(res_layer, "absent")
    identity_ok = layers.get("identity") == "allow"
    action = req.action.lower()
    kind = pol.resource_kind or fx.resource_kind(req.resource, req.action)
    fixes: list[Fix] = []
    codes: list[tuple[str, str]] = []  # (reason, layer) in evaluation order
    for name in _FILTERS:
        if layers.get(name) == "implicit-deny":
            codes.append((_MISSING_FILTER[name], name))
            fixes.append(_filter_fix(name, req, pol))
    statements: tuple[MatchedStatement, ...] = ()
    hint = None
    notes: tuple[str, ...] = ()
    need_identity = False
    if action in _ASSUME or kind == "role-trust":
        if res_state != "allow":
            codes.append(("TRUST_POLICY", "trust-policy"))
            fixes.append(fx.add_trust(req.resource, req.principal, req.action,
                                      f"let {req.principal} assume {req.resource} in its trust policy"))
        need_identity = not identity_ok and (cross or res_state == "allow")
    elif action.startswith("kms:") or kind == "kms-key":
        if res_state != "allow":
            codes.append(("MISSING_KEY_POLICY_ALLOW", "key-policy"))
            fixes.append(fx.add_resource(req.resource, req.principal, [req.action],
                                         f"allow {req.principal} {req.action} in the key policy of {req.resource}",
                                         layer="key-policy", kind="kms-key"))
        need_identity = not identity_ok and (cross or res_state == "allow")
    else:
        need_resource = cross and res_state != "allow"
        need_identity = not identity_ok and (cross or res_state != "allow")
        if need_identity and need_resource:
            codes.append(("MISSING_BOTH", "identity"))
        elif need_resource:
            codes.append(("MISSING_RESOURCE_ALLOW", res_layer))
        if need_resource:
            fixes.append(_resource_fix(req, kind))
    if need_identity:
        ident, statements, hint, notes = _identity_fix(event, req, pol, trail)
        if not any(code == "MISSING_BOTH" for code, _ in codes):
            codes.append(("MISSING_IDENTITY_ALLOW", "identity"))
        fixes.append(ident)
    if _via_kms(event, req):
        codes.insert(0, ("INDIRECT_KMS", "key-policy" if res_state != "allow" else "identity"))
        fixes = [_with_via(f, event) for f in fixes]
    if not codes:
        return _Out(reason="UNKNOWN", basis="policies", layer=dec.layer,
                    summary=f"{req.action} on {req.resource} is implicitly denied, but no single layer lacks an allow",
                    missing=("which layer refused: every evaluated layer allows; see each layer in --format json",))
    reason, layer = codes[0]
    return _Out(reason=reason, basis="policies", layer=layer, fixes=tuple(fixes), statements=statements, hint=hint,
                notes=notes, summary=_implicit_summary(req, [c for c, _ in codes]))


def _implicit_summary(req: Request, codes: list[str]) -> str:
    words = {
        "MISSING_IDENTITY_ALLOW": "no identity-based policy allows it",
        "MISSING_RESOURCE_ALLOW": "the resource policy does not allow it (cross-account: both sides must)",
        "MISSING_BOTH": "neither the identity policy nor the resource policy allows it (cross-account: both must)",
        "MISSING_KEY_POLICY_ALLOW": "the KMS key policy does not allow it",
        "TRUST_POLICY": "the role's trust policy does not allow the caller",
        "MISSING_SCP_ALLOW": "no service control policy allows it",
        "MISSING_RCP_ALLOW": "no resource control policy allows it",
        "MISSING_BOUNDARY_ALLOW": "the permissions boundary does not allow it",
        "MISSING_SESSION_ALLOW": "the session policy does not allow it",
        "INDIRECT_KMS": "the service's call to KMS on the caller's behalf was refused",
    }
    return f"{req.action} on {req.resource} for {req.principal}: " + "; ".join(words.get(c, c) for c in codes)


def _resource_fix(req: Request, kind: str) -> Fix:
    resource, _ = fx.generated_name(req.resource) or (req.resource, "")
    return fx.add_resource(resource, req.principal, [req.action],
                           f"allow {req.principal} {req.action} in the {kind} policy", kind=kind)


def _identity_fix(event: Event, req: Request, pol: Policies | None,
                  trail: TrailIndex) -> tuple[Fix, tuple[MatchedStatement, ...], str | None, tuple[str, ...]]:
    near = _near_misses(req, pol) if pol is not None else ()
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


def _near_misses(req: Request, pol: Policies) -> tuple[tuple[MatchedStatement, tuple[str, ...]], ...]:
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


def _filter_fix(layer: str, req: Request, pol: Policies) -> Fix:
    target: str | None
    if layer == "boundary":
        target = pol.boundary.name if pol.boundary else None
        what = f"the permissions boundary of {req.principal}"
    elif layer == "session":
        target = req.session_arn
        what = "the session policy passed to AssumeRole (whoever creates the session must pass a wider one)"
    else:
        target = _failing_org_level(layer, req, pol)
        what = f"the {_LAYER_WORDS[layer]} {target or ''}".rstrip()
    return fx.add_guardrail(layer, target, [req.action], [req.resource], f"allow {req.action} in {what}")


def _failing_org_level(layer: str, req: Request, pol: Policies) -> str | None:
    """The first OU level whose SCPs/RCPs allow nothing for the request: each level must allow."""
    levels = pol.scps if layer == "scp" else pol.rcps
    for level in levels:
        probe = Policies(identity=pol.identity, boundary=pol.boundary, session=pol.session,
                         resource=pol.resource, resource_kind=pol.resource_kind,
                         **{"scps" if layer == "scp" else "rcps": (level,)})
        try:
            if evaluate(req, probe).layers.get(layer) == "implicit-deny":
                return level[0].name if level else None
        except Exception:  # noqa: BLE001
            return None
    return None


def _deny_target(layer: str, policy: str, req: Request, pol: Policies) -> tuple[str | None, str]:
    if layer == "identity":
        return req.principal, fx.principal_kind(req.principal)
    if layer in _RESOURCE_LAYERS:
        kind = pol.resource_kind or fx.resource_kind(req.resource, req.action)
        return fx.policy_target(req.resource, kind), kind
    if layer == "session":
        return req.session_arn, "session-policy"
    return policy, {"scp": "scp", "rcp": "rcp", "boundary": "permissions-boundary"}.get(layer, layer)


def _statement_doc(pol: Policies, s: MatchedStatement) -> Mapping[str, Any] | None:
    candidates: list[NamedPolicy] = []
    if s.layer == "identity":
        candidates = list(pol.identity)
    elif s.layer in _RESOURCE_LAYERS and pol.resource:
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


# --------------------------------------------------------------------------- KMS behind another service


def _via_kms(event: Event, req: Request) -> bool:
    """A KMS call a service made on the caller's behalf (the KMS event itself, invokedBy S3 …)."""
    return req.action.lower().startswith("kms:") and not event.source.startswith("kms.") or (
        event.source.startswith("kms.") and bool(event.invoked_by))


def _via_service(event: Event) -> str:
    service = event.invoked_by.split(".", 1)[0] if event.source.startswith("kms.") and event.invoked_by else service_of(event)
    return f"{service}.{event.region or 'us-east-1'}.amazonaws.com"


def _with_via(fix: Fix, event: Event) -> Fix:
    """kms:ViaService keeps the grant to calls through that service (kms-dg__conditions-kms.md)."""
    if fix.op != "add-statements" or fix.document is None:
        return fix
    doc = {"Version": fix.document["Version"], "Statement": []}
    for st in fix.document["Statement"]:
        st = dict(st)
        if str(st.get("Action", "")).lower().startswith("kms:"):
            st["Condition"] = {"StringEquals": {"kms:ViaService": _via_service(event)}}
        doc["Statement"].append(st)
    return replace(fix, document=doc)


def _kms_request(event: Event, req: Request, key: str, action: str) -> Request:
    account = arn_account(key)
    ctx = dict(req.context)
    ctx["kms:ViaService"] = _via_service(event)
    ctx["kms:CallerAccount"] = req.principal_account
    return Request(principal=req.principal, principal_account=req.principal_account, action=action, resource=key,
                   resource_account=account if account != req.principal_account else None, context=ctx,
                   session_arn=req.session_arn)


def _indirect_kms(event: Event, req: Request, parsed: ParsedMessage, inferred: tuple[Any, ...],
                  store: Store | None, trail: TrailIndex) -> _Out | None:
    service = service_of(event)
    actions = kms_actions_for(event, service) or tuple(sorted({u.action for u in inferred}))
    key = kms_key_for(event, parsed, inferred)
    if event.source.startswith("kms.") and event.invoked_by:
        # The KMS call itself, made by S3 (or another service) for the caller.
        service, actions, key = event.invoked_by.split(".", 1)[0], (req.action,), req.resource
    if not actions:
        return None
    kms_event = trail.kms_denial_for(event)
    if key is None and kms_event is not None:
        key = next((str(r["ARN"]) for r in kms_event.resources if r.get("ARN")), None)
    if key is None:
        if store is None:
            return None
        return _Out(reason="UNKNOWN", basis="policies", layer=None,
                    summary=f"the policies allow {req.action}; the KMS key behind it may refuse {'/'.join(actions)}",
                    missing=(f"which KMS key encrypts {req.resource} (not in the event): check the bucket's default "
                             "encryption or the object's SSE-KMS key",))
    cross = arn_account(key) not in (None, req.principal_account)
    need_key, need_identity, basis = True, True, "message" if store is None else "policies"
    statements: tuple[MatchedStatement, ...] = ()
    if store is not None:
        need_key = need_identity = False
        for action in actions:
            kreq = _kms_request(event, req, key, action)
            kpol = store.policies_for(kreq)
            kdec = evaluate(kreq, kpol)
            if kdec.allowed:
                continue
            if kdec.decision == "ExplicitlyDenied":
                out = _explicit(kreq, kpol, kdec)
                return replace(out, reason="INDIRECT_KMS", summary=f"{req.action} needs {action} on {key}: " + out.summary)
            state = next((kdec.layers[n] for n in ("key-policy", "resource") if n in kdec.layers), "absent")
            need_key = need_key or state != "allow"
            need_identity = need_identity or (kdec.layers.get("identity") != "allow" and (cross or state == "allow"))
        if not (need_key or need_identity):
            return None
    elif kms_event is not None:
        basis = "trail"
    via = {"StringEquals": {"kms:ViaService": _via_service(event)}}
    fixes = []
    if need_key:
        fixes.append(fx.add_resource(key, req.principal, list(actions),
                                     f"allow {req.principal} {'/'.join(actions)} through {_via_service(event)} "
                                     f"in the key policy of {key}", layer="key-policy", kind="kms-key", conditions=via))
    if need_identity:
        fixes.append(fx.add_identity(req.principal, list(actions), [key],
                                     f"allow {req.principal} {'/'.join(actions)} on {key}", conditions=via))
    sides = " and ".join(w for w, n in (("the key policy", need_key), ("the caller's identity policy", need_identity)) if n)
    notes = ("cross-account: the key policy and the caller's IAM policy must both allow "
             "(kms-dg__key-policy-modifying-external-accounts.md)",) if cross else ()
    if basis == "message" and store is None:
        notes += ("without policies both sides are proposed; either may already allow",)
    what = f"{service}:{event.name}" + (f" of {s3_object_arn(event)}" if s3_object_arn(event) else "")
    return _Out(reason="INDIRECT_KMS", basis=basis, layer="key-policy" if need_key else "identity",
                summary=f"{what} was refused because {service.upper() if len(service) < 4 else service} "
                f"could not use KMS key {key} for {req.principal}: {sides} must allow {'/'.join(actions)}",
                fixes=tuple(fixes), statements=statements, notes=notes)


# --------------------------------------------------------------------------- S3 object ownership


def _object_ownership(event: Event, req: Request | None, trail: TrailIndex, store: Store | None) -> _Out | None:
    if not event.source.startswith("s3.") or event.name not in _READS:
        return None
    bucket, key = event.request.get("bucketName"), event.request.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return None
    owner = s3_bucket_owner(event) or event.account
    cloudfront = (event.caller_account or "").lower() == "cloudfront" or invoking_service(event) == "cloudfront.amazonaws.com"
    caller_account = req.principal_account if req is not None else event.caller_account
    if not cloudfront and (owner is None or caller_account != owner):
        return None
    who = "the CloudFront origin identity" if cloudfront else f"bucket owner account {owner}"
    foreign = [u for u in trail.uploads.get(f"{bucket}/{key}", ())
               if u.account and u.account != owner and u.acl != "bucket-owner-full-control"]
    live = getattr(store, "object_ownership", None)
    basis: Basis = "trail"
    uploader = foreign[-1].uploader if foreign else None
    if not foreign and callable(live):
        info = live(bucket, key)  # (object owner account or id, bucket owner, ObjectOwnership setting) or None
        if not info or info[0] == info[1] or info[2] == "BucketOwnerEnforced":
            return None
        basis = "policies"
    elif not foreign:
        return None
    bucket_arn = f"arn:{event.partition}:s3:::{bucket}"
    origin = f" ({foreign[-1].origin})" if foreign and foreign[-1].origin else ""
    return _Out(
        reason="OBJECT_OWNERSHIP", basis=basis, layer="s3-ownership",
        summary=f"s3:{event.name} of s3://{bucket}/{key} was refused to {who}: the object was uploaded by another "
        f"account{' (' + uploader + ')' if uploader else ''}{origin} without bucket-owner-full-control, so that "
        "account owns it and the bucket policy does not apply to it",
        fixes=fx.ownership_fixes(bucket_arn, uploader),
        notes=("objects uploaded before the fix stay foreign-owned unless Object Ownership is BucketOwnerEnforced "
               "(s3-ug__about-object-ownership.md)",),
    )


# --------------------------------------------------------------------------- AWS's message only


def _from_message(event: Event, req: Request, parsed: ParsedMessage, decoded: Mapping[str, Any] | None,
                  inferred: tuple[Any, ...], trail: TrailIndex) -> _Out:
    action = req.action.lower()
    cross = req.resource_account is not None and req.resource_account != req.principal_account
    kms_layer_words = parsed.layer in ("resource", None) and action.startswith("kms:")
    if parsed.kind == "implicit" and kms_layer_words and _via_kms(event, req) or (
            parsed.kind == "implicit" and action.startswith("kms:") and not event.source.startswith("kms.")):
        out = _indirect_kms(event, req, parsed, inferred, None, trail)
        if out is not None:
            return out
    if parsed.kind == "explicit" or (decoded and decoded.get("explicitDeny")):
        layer = parsed.layer
        reason = _EXPLICIT.get(layer or "", "UNKNOWN")
        if layer in ("resource",) and action in _ASSUME:
            reason = "TRUST_POLICY"
        target, kind = (req.principal, fx.principal_kind(req.principal)) if layer == "identity" else (
            parsed.policy_arn, {"scp": "scp", "rcp": "rcp", "boundary": "permissions-boundary",
                                "session": "session-policy", "resource": fx.resource_kind(req.resource, req.action),
                                "vpc-endpoint": "vpc-endpoint"}.get(layer or "", "policy"))
        if layer == "resource":
            target = fx.policy_target(req.resource, kind)
        words = _LAYER_WORDS.get(layer or "", "policy")
        notes: tuple[str, ...] = ()
        if layer == "scp":
            notes = ("AWS may word an SCP's missing allow as an explicit deny (IAM troubleshooting guide): "
                     "check for an allow too",)
        return _Out(
            reason=reason, basis="decoded-message" if decoded else "message", layer=layer,
            summary=f"an explicit Deny in a {words}{' ' + parsed.policy_arn if parsed.policy_arn else ''} refuses "
            f"{req.action} on {req.resource} for {req.principal}",
            fixes=(fx.change_deny(layer or "unknown", parsed.policy_arn, None, None, None, target, kind,
                                  f"find the Deny for {req.action} in the {words} and narrow it or add an exception"),),
            missing=(f"the {words}'s statements, to name the Deny (pass --policies DIR or --live)",),
            notes=notes)
    layer = parsed.layer
    basis: Basis = "message"
    if layer is None and decoded is not None and decoded.get("allowed") is False:
        # EC2 has no resource-based policies: an implicit deny of an EC2 call is the identity side or a
        # filter; the decoded message does not say which (DecodeAuthorizationMessage API reference).
        layer, basis = ("identity", "decoded-message") if action.startswith("ec2:") else (None, basis)
    if parsed.kind == "implicit" or layer is not None:
        if layer in _MISSING_FILTER:
            target = req.session_arn if layer == "session" else (req.principal if layer == "boundary" else None)
            return _Out(reason=_MISSING_FILTER[layer], basis=basis, layer=layer,
                        summary=f"{req.action} on {req.resource} for {req.principal}: no {_LAYER_WORDS[layer]} allows it",
                        fixes=(fx.add_guardrail(layer, target, [req.action], [req.resource],
                                                f"allow {req.action} in the {_LAYER_WORDS[layer]}"),),
                        missing=() if target else (f"which {_LAYER_WORDS[layer]} applies (pass --live)",))
        if layer == "resource":
            if action in _ASSUME:
                return _trust_out(req, basis, cross)
            if action.startswith("kms:"):
                return _Out(reason="MISSING_KEY_POLICY_ALLOW", basis=basis, layer="key-policy",
                            summary=f"the key policy of {req.resource} does not allow {req.action} for {req.principal}",
                            fixes=(fx.add_resource(req.resource, req.principal, [req.action],
                                                   f"allow {req.principal} {req.action} in the key policy",
                                                   layer="key-policy", kind="kms-key"),))
            kind = fx.resource_kind(req.resource, req.action)
            if req.resource == "*":
                return _Out(reason="MISSING_RESOURCE_ALLOW", basis=basis, layer="resource",
                            summary=f"no resource-based policy allows {req.action} for {req.principal}",
                            missing=(f"which resource's policy governs {req.action} (AWS names resource *)",))
            return _Out(reason="MISSING_RESOURCE_ALLOW", basis=basis, layer="resource",
                        summary=f"the {kind} policy of {fx.policy_target(req.resource, kind)} does not allow "
                        f"{req.action} for {req.principal}",
                        fixes=(_resource_fix(req, kind),))
        if layer == "identity":
            fix, _, hint, notes = _identity_fix(event, req, None, trail)
            fixes = (fix,)
            reason = "MISSING_IDENTITY_ALLOW"
            if action in _ASSUME:
                notes += ("the role's trust policy must allow the caller as well",)
            return _Out(reason=reason, basis=basis, layer="identity", hint=hint, notes=notes, fixes=fixes,
                        summary=f"no identity-based policy of {req.principal} allows {req.action} on {req.resource}")
    # AWS named the request (or nothing) but not the layer.
    if action in _ASSUME:
        return _trust_out(req, "message", cross)
    kms = _indirect_kms(event, req, parsed, inferred, None, trail)
    if kms is not None and (kms.basis == "trail" or kms_key_for(event, parsed, inferred)):
        return kms
    fix, _, hint, notes = _identity_fix(event, req, None, trail)
    fixes = [fix]
    if cross:
        fixes.append(_resource_fix(req, fx.resource_kind(req.resource, req.action)))
    if hint == "TAGS_APPLIED_AFTER_CREATE":
        # EC2 has no resource-based policies, so an implicit refusal of RunInstances is on the identity side.
        return _Out(reason="MISSING_IDENTITY_ALLOW", basis="trail", layer="identity", hint=hint, notes=notes,
                    fixes=tuple(fixes),
                    summary=f"no identity-based policy of {req.principal} allows the untagged {req.action}",
                    missing=(NEED_POLICIES,))
    return _Out(reason="UNKNOWN", basis="none", layer=None, hint=hint, notes=notes + (
                    "the fixes below are the likely ones: the allow the request needs on each side that must allow",),
                fixes=tuple(fixes),
                summary=f"{req.action} on {req.resource} was refused to {req.principal}; AWS's message does not say "
                "which policy refused",
                missing=("which layer refused: AWS's message names none", NEED_POLICIES)
                + (("the decoded authorization message: pass --live to decode it with sts:DecodeAuthorizationMessage",)
                   if parsed.encoded and decoded is None else ()))


def _trust_out(req: Request, basis: Basis, cross: bool) -> _Out:
    fixes = [fx.add_trust(req.resource, req.principal, req.action,
                          f"let {req.principal} assume {req.resource} in its trust policy")]
    if cross or basis != "policies":
        fixes.append(fx.add_identity(req.principal, [req.action], [req.resource],
                                     f"allow {req.principal} {req.action} on {req.resource}"))
    return _Out(reason="TRUST_POLICY", basis=basis, layer="trust-policy", fixes=tuple(fixes),
                summary=f"{req.principal} may not assume {req.resource}: its trust policy does not allow the caller",
                notes=("without policies both the trust statement and the caller's allow are proposed",)
                if basis != "policies" else ())
