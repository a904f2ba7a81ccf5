"""Reasons from AWS's message and the rest of the trail, when no policies are available.

Message format: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html.
"""

from __future__ import annotations

from typing import Any, Mapping

from rolesmith.evaluator import Request
from rolesmith.explain import fixes as fx
from rolesmith.explain.common import (
    ASSUME,
    EXPLICIT,
    LAYER_WORDS,
    MISSING_FILTER,
    NEED_POLICIES,
    Out,
    identity_fix,
    resource_fix,
    trust_out,
    via_kms,
)
from rolesmith.explain.kms import indirect_kms
from rolesmith.explain.messages import ParsedMessage
from rolesmith.explain.model import Basis
from rolesmith.explain.requests import kms_key_for
from rolesmith.explain.trailindex import TrailIndex
from rolesmith.trail.model import Event


def from_message(event: Event, req: Request, parsed: ParsedMessage, decoded: Mapping[str, Any] | None,
                 inferred: tuple[Any, ...], trail: TrailIndex) -> Out:
    action = req.action.lower()
    cross = req.resource_account is not None and req.resource_account != req.principal_account
    kms_layer_words = parsed.layer in ("resource", None) and action.startswith("kms:")
    if parsed.kind == "implicit" and kms_layer_words and via_kms(event, req) or (
            parsed.kind == "implicit" and action.startswith("kms:") and not event.source.startswith("kms.")):
        out = indirect_kms(event, req, parsed, inferred, None, trail)
        if out is not None:
            return out
    if parsed.kind == "explicit" or (decoded and decoded.get("explicitDeny")):
        layer = parsed.layer
        reason = EXPLICIT.get(layer or "", "UNKNOWN")
        if layer in ("resource",) and action in ASSUME:
            reason = "TRUST_POLICY"
        target, kind = (req.principal, fx.principal_kind(req.principal)) if layer == "identity" else (
            parsed.policy_arn, {"scp": "scp", "rcp": "rcp", "boundary": "permissions-boundary",
                                "session": "session-policy", "resource": fx.resource_kind(req.resource, req.action),
                                "vpc-endpoint": "vpc-endpoint"}.get(layer or "", "policy"))
        if layer == "resource":
            target = fx.policy_target(req.resource, kind)
        words = LAYER_WORDS.get(layer or "", "policy")
        notes: tuple[str, ...] = ()
        if layer == "scp":
            notes = ("AWS may word an SCP's missing allow as an explicit deny (IAM troubleshooting guide): "
                     "check for an allow too",)
        return Out(
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
        if layer in MISSING_FILTER:
            # The session policy belongs to the session; a boundary or SCP is only named with --live/--policies.
            target = req.session_arn if layer == "session" else None
            whose = f" of {req.principal}" if layer == "boundary" else ""
            return Out(reason=MISSING_FILTER[layer], basis=basis, layer=layer,
                       summary=f"{req.action} on {req.resource} for {req.principal}: no {LAYER_WORDS[layer]} allows it",
                       fixes=(fx.add_guardrail(layer, target, [req.action], [req.resource],
                                               f"allow {req.action} in the {LAYER_WORDS[layer]}{whose}"),),
                       missing=() if target else (f"which {LAYER_WORDS[layer]}{whose} applies (pass --live)",))
        if layer == "resource":
            if action in ASSUME:
                return trust_out(req, basis, cross)
            if action.startswith("kms:"):
                return Out(reason="MISSING_KEY_POLICY_ALLOW", basis=basis, layer="key-policy",
                            summary=f"the key policy of {req.resource} does not allow {req.action} for {req.principal}",
                            fixes=(fx.add_resource(req.resource, req.principal, [req.action],
                                                   f"allow {req.principal} {req.action} in the key policy",
                                                   layer="key-policy", kind="kms-key"),))
            kind = fx.resource_kind(req.resource, req.action)
            if req.resource == "*":
                return Out(reason="MISSING_RESOURCE_ALLOW", basis=basis, layer="resource",
                            summary=f"no resource-based policy allows {req.action} for {req.principal}",
                            missing=(f"which resource's policy governs {req.action} (AWS names resource *)",))
            return Out(reason="MISSING_RESOURCE_ALLOW", basis=basis, layer="resource",
                        summary=f"the {kind} policy of {fx.policy_target(req.resource, kind)} does not allow "
                        f"{req.action} for {req.principal}",
                        fixes=(resource_fix(req, kind),))
        if layer == "identity":
            fix, _, hint, notes = identity_fix(event, req, None, trail)
            fixes = (fix,)
            reason = "MISSING_IDENTITY_ALLOW"
            if action in ASSUME:
                notes += ("the role's trust policy must allow the caller as well",)
            return Out(reason=reason, basis=basis, layer="identity", hint=hint, notes=notes, fixes=fixes,
                        summary=f"no identity-based policy of {req.principal} allows {req.action} on {req.resource}")
    # AWS named the request (or nothing) but not the layer.
    if action in ASSUME:
        return trust_out(req, "message", cross)
    kms = indirect_kms(event, req, parsed, inferred, None, trail)
    if kms is not None and (kms.basis == "trail" or kms_key_for(event, parsed, inferred)):
        return kms
    fix, _, hint, notes = identity_fix(event, req, None, trail)
    fixes = [fix]
    if cross:
        fixes.append(resource_fix(req, fx.resource_kind(req.resource, req.action)))
    if hint == "TAGS_APPLIED_AFTER_CREATE":
        # EC2 has no resource-based policies, so an implicit refusal of RunInstances is on the identity side.
        return Out(reason="MISSING_IDENTITY_ALLOW", basis="trail", layer="identity", hint=hint, notes=notes,
                    fixes=tuple(fixes),
                    summary=f"no identity-based policy of {req.principal} allows the untagged {req.action}",
                    missing=(NEED_POLICIES,))
    return Out(reason="UNKNOWN", basis="none", layer=None, hint=hint, notes=notes + (
                    "the fixes below are the likely ones: the allow the request needs on each side that must allow",),
                fixes=tuple(fixes),
                summary=f"{req.action} on {req.resource} was refused to {req.principal}; AWS's message does not say "
                "which policy refused",
                missing=("which layer refused: AWS's message names none", NEED_POLICIES)
                + (("the decoded authorization message: pass --live to decode it with sts:DecodeAuthorizationMessage",)
                   if parsed.encoded and decoded is None else ()))
