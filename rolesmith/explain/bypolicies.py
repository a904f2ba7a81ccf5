"""Reasons from evaluating the policies in force (``--policies DIR`` or ``--live``).

The layer semantics and the documents they follow are described in ``rolesmith.explain.core``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rolesmith.evaluator import Decision, MatchedStatement, Policies, Request, evaluate
from rolesmith.explain import fixes as fx
from rolesmith.explain.common import (
    ASSUME,
    FILTERS,
    LAYER_WORDS,
    MISSING_FILTER,
    Out,
    RESOURCE_LAYERS,
    Store,
    explicit,
    identity_fix,
    resource_fix,
    via_kms,
    with_via,
)
from rolesmith.explain.kms import indirect_kms
from rolesmith.explain.messages import ParsedMessage
from rolesmith.explain.model import Fix
from rolesmith.explain.requests import arn_account
from rolesmith.explain.trailindex import TrailIndex
from rolesmith.trail.model import Event


def first_denied(event: Event, req: Request, alternatives: tuple[str, ...], parsed: ParsedMessage,
                 inferred: tuple[Any, ...], store: Store, trail: TrailIndex,
                 others: tuple[Request, ...] = ()) -> tuple[Request, Out]:
    """AWS refuses a call when any permission it needs is refused: explain the first refused one.

    Order: ``req`` (what AWS's message names, else the call's first use), the call's other uses (a
    CopyObject needs s3:GetObject on the source *and* s3:PutObject on the destination, API Reference
    CopyObject "Permissions"; s3-ug__troubleshoot-403-errors.md), the action's other resources, then the
    KMS keys behind it (SSE_KMS_AND_SECURE_INBOX.md §1)."""
    checks = [req, *(with_owner(o, store) for o in others)]
    refused = [r for r in checks if not evaluate(r, store.policies_for(r)).allowed]
    if refused and (refused[0] is req or not parsed.action):  # what AWS's message names comes first
        chosen = refused[0]
        out = from_policies(event, chosen, parsed, inferred, store, trail)
        for also in refused[1:]:
            # Each refused use would fail the next attempt: propose every fix now, not one run later.
            more = from_policies(event, also, parsed, inferred, store, trail)
            out = replace(out, fixes=out.fixes + tuple(f for f in more.fixes if f not in out.fixes),
                          notes=out.notes + ("the call also needs " + more.summary,))
        return chosen, out
    first = from_policies(event, req, parsed, inferred, store, trail)
    if first.reason == "INDIRECT_KMS" and "kms:GenerateDataKey" in fixed_actions(first):
        # A data key is for what the call writes (a copy's destination), not what it reads.
        req = next((with_owner(o, store) for o in others if o.action == "s3:PutObject"), req)
    if first.reason != "UNKNOWN" or not alternatives:
        return req, first
    for resource in alternatives:
        account = arn_account(resource)
        alt = replace(req, resource=resource,
                      resource_account=account if account and account != req.principal_account else None)
        out = from_policies(event, alt, parsed, inferred, store, trail)
        if out.reason != "UNKNOWN":
            return alt, out
    return req, first


def fixed_actions(out: Out) -> set[str]:
    found: set[str] = set()
    for fix in out.fixes:
        for st in (fix.document or {}).get("Statement", ()):
            action = st.get("Action", ())
            found.update([action] if isinstance(action, str) else action)
    return found


def with_owner(req: Request, store: Store) -> Request:
    """S3 ARNs carry no account: the store may know the bucket's owner."""
    account_of = getattr(store, "account_of", None)
    if req.resource_account is None and callable(account_of) and ":s3:::" in req.resource:
        owner = account_of(req.resource)
        if owner and owner != req.principal_account:
            return replace(req, resource_account=owner)
    return req


def from_policies(event: Event, req: Request, parsed: ParsedMessage, inferred: tuple[Any, ...], store: Store,
                  trail: TrailIndex) -> Out:
    pol = store.policies_for(req)
    dec = evaluate(req, pol)
    if dec.allowed:
        kms = indirect_kms(event, req, parsed, inferred, store, trail)
        if kms is None or kms.reason == "UNKNOWN":
            # A copy's source key is named only by the KMS Decrypt event S3 made for the caller.
            kms = source_key(event, req, parsed, inferred, store, trail) or kms
        if kms is not None:
            return kms
        return Out(reason="UNKNOWN", basis="policies", layer=None,
                    summary=f"the policies given allow {req.action} on {req.resource} for {req.principal}",
                    missing=("why AWS refused what these policies allow: they changed since the event, or a layer "
                             "rolesmith does not evaluate refused it (VPC endpoint policy, ACL, Block Public Access)",))
    if dec.decision == "ExplicitlyDenied":
        return explicit(req, pol, dec)
    out = implicit(event, req, pol, dec, trail)
    if out.reason != "UNKNOWN" and not req.action.lower().startswith("kms:"):
        # The call would next fail on the KMS key behind it: propose that fix now, not one run later.
        kms = indirect_kms(event, req, parsed, inferred, store, trail)
        if kms is not None and kms.reason == "INDIRECT_KMS" and kms.fixes:
            out = replace(out, fixes=out.fixes + kms.fixes,
                          notes=out.notes + ("then the KMS key behind it: " + kms.summary,))
    return out


def source_key(event: Event, req: Request, parsed: ParsedMessage, inferred: tuple[Any, ...], store: Store,
               trail: TrailIndex) -> Out | None:
    kms_event = trail.kms_denial_for(event)
    if kms_event is None or event.source.startswith("kms."):
        return None
    key = next((str(r["ARN"]) for r in kms_event.resources if r.get("ARN")), None)
    if key is None or any(u.resource == key for u in inferred):
        return None
    out = indirect_kms(event, req, parsed, (), store, trail, key=key, actions=(f"kms:{kms_event.name}",))
    return out if out is not None and out.reason != "UNKNOWN" else None


def implicit(event: Event, req: Request, pol: Policies, dec: Decision, trail: TrailIndex) -> Out:
    layers = dec.layers
    cross = req.resource_account is not None and req.resource_account != req.principal_account
    res_layer = next((name for name in RESOURCE_LAYERS if name in layers), "resource")
    res_state = layers.get(res_layer, "absent")
    identity_ok = layers.get("identity") == "allow"
    action = req.action.lower()
    kind = pol.resource_kind or fx.resource_kind(req.resource, req.action)
    fixes: list[Fix] = []
    codes: list[tuple[str, str]] = []  # (reason, layer) in evaluation order
    for name in FILTERS:
        if layers.get(name) == "implicit-deny":
            codes.append((MISSING_FILTER[name], name))
            fixes.append(filter_fix(name, req, pol))
    statements: tuple[MatchedStatement, ...] = ()
    hint = None
    notes: tuple[str, ...] = ()
    need_identity = False
    if action in ASSUME or kind == "role-trust":
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
            fixes.append(resource_fix(req, kind))
    if need_identity:
        ident, statements, hint, notes = identity_fix(event, req, pol, trail)
        if not any(code == "MISSING_BOTH" for code, _ in codes):
            codes.append(("MISSING_IDENTITY_ALLOW", "identity"))
        fixes.append(ident)
    if via_kms(event, req):
        codes.insert(0, ("INDIRECT_KMS", "key-policy" if res_state != "allow" else "identity"))
        fixes = [with_via(f, event) for f in fixes]
    if not codes:
        return Out(reason="UNKNOWN", basis="policies", layer=dec.layer,
                    summary=f"{req.action} on {req.resource} is implicitly denied, but no single layer lacks an allow",
                    missing=("which layer refused: every evaluated layer allows; see each layer in --format json",))
    reason, layer = codes[0]
    return Out(reason=reason, basis="policies", layer=layer, fixes=tuple(fixes), statements=statements, hint=hint,
                notes=notes, summary=implicit_summary(req, [c for c, _ in codes]))


def implicit_summary(req: Request, codes: list[str]) -> str:
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


def filter_fix(layer: str, req: Request, pol: Policies) -> Fix:
    target: str | None
    if layer == "boundary":
        target = pol.boundary.name if pol.boundary else None
        what = f"the permissions boundary of {req.principal}"
    elif layer == "session":
        target = req.session_arn
        what = "the session policy passed to AssumeRole (whoever creates the session must pass a wider one)"
    else:
        target = failing_org_level(layer, req, pol)
        what = f"the {LAYER_WORDS[layer]} {target or ''}".rstrip()
    return fx.add_guardrail(layer, target, [req.action], [req.resource], f"allow {req.action} in {what}")


def failing_org_level(layer: str, req: Request, pol: Policies) -> str | None:
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
