"""INDIRECT_KMS: an S3 / Secrets Manager / SSM call refused because of the KMS key behind it.

S3 calls KMS with the caller's identity; the key policy (and, cross-account, the caller's IAM policy)
must allow, and kms:ViaService scopes such grants (shared/reference/SSE_KMS_AND_SECURE_INBOX.md,
kms-dg__conditions-kms.md, kms-dg__key-policy-modifying-external-accounts.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rolesmith.evaluator import MatchedStatement, Request, evaluate
from rolesmith.explain import fixes as fx
from rolesmith.explain.common import Out, Store, explicit, via_service
from rolesmith.explain.messages import ParsedMessage
from rolesmith.explain.requests import arn_account, kms_actions_for, kms_key_for, s3_object_arn, service_of
from rolesmith.explain.trailindex import TrailIndex
from rolesmith.trail.model import Event


def kms_request(event: Event, req: Request, key: str, action: str) -> Request:
    account = arn_account(key)
    ctx = dict(req.context)
    ctx["kms:ViaService"] = via_service(event)
    ctx["kms:CallerAccount"] = req.principal_account
    return Request(principal=req.principal, principal_account=req.principal_account, action=action, resource=key,
                   resource_account=account if account != req.principal_account else None, context=ctx,
                   session_arn=req.session_arn)


def indirect_kms(event: Event, req: Request, parsed: ParsedMessage, inferred: tuple[Any, ...],
                 store: Store | None, trail: TrailIndex, *, key: str | None = None,
                 actions: tuple[str, ...] | None = None) -> Out | None:
    """``key``/``actions``: a key the event itself does not name (a copy's source key, from the trail)."""
    service = service_of(event)
    actions = actions or kms_actions_for(event, service) or tuple(sorted({u.action for u in inferred}))
    key = key or kms_key_for(event, parsed, inferred)
    if event.source.startswith("kms.") and event.invoked_by:
        # The KMS call itself, made by S3 (or another service) for the caller.
        service, actions, key = event.invoked_by.split(".", 1)[0], (req.action,), req.resource
    if not actions:
        return None
    kms_event = trail.kms_denial_for(event)
    if key is None and kms_event is not None:
        key = next((str(r["ARN"]) for r in kms_event.resources if r.get("ARN")), None)
        # The key the trail names was refused this one action (a copy's source key: Decrypt, not the
        # destination's GenerateDataKey).
        actions = (f"kms:{kms_event.name}",) if key else actions
    if key is None:
        if store is None:
            return None
        return Out(reason="UNKNOWN", basis="policies", layer=None,
                    summary=f"the policies allow {req.action}; the KMS key behind it may refuse {'/'.join(actions)}",
                    missing=(f"which KMS key encrypts {req.resource} (not in the event): check the bucket's default "
                             "encryption or the object's SSE-KMS key",))
    cross = arn_account(key) not in (None, req.principal_account)
    need_key, need_identity, basis = True, True, "message" if store is None else "policies"
    statements: tuple[MatchedStatement, ...] = ()
    if store is not None:
        need_key = need_identity = False
        for action in actions:
            kreq = kms_request(event, req, key, action)
            kpol = store.policies_for(kreq)
            kdec = evaluate(kreq, kpol)
            if kdec.allowed:
                continue
            if kdec.decision == "ExplicitlyDenied":
                out = explicit(kreq, kpol, kdec)
                return replace(out, reason="INDIRECT_KMS", summary=f"{req.action} needs {action} on {key}: " + out.summary)
            state = next((kdec.layers[n] for n in ("key-policy", "resource") if n in kdec.layers), "absent")
            need_key = need_key or state != "allow"
            need_identity = need_identity or (kdec.layers.get("identity") != "allow" and (cross or state == "allow"))
        if not (need_key or need_identity):
            return None
    elif kms_event is not None:
        basis = "trail"
    via = {"StringEquals": {"kms:ViaService": via_service(event)}}
    fixes = []
    if need_key:
        fixes.append(fx.add_resource(key, req.principal, list(actions),
                                     f"allow {req.principal} {'/'.join(actions)} through {via_service(event)} "
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
    return Out(reason="INDIRECT_KMS", basis=basis, layer="key-policy" if need_key else "identity",
                summary=f"{what} was refused because {service.upper() if len(service) < 4 else service} "
                f"could not use KMS key {key} for {req.principal}: {sides} must allow {'/'.join(actions)}",
                fixes=tuple(fixes), statements=statements, notes=notes)
