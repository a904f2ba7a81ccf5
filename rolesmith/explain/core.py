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

from dataclasses import replace

from rolesmith.explain.bymessage import from_message
from rolesmith.explain.bypolicies import first_denied
from rolesmith.explain.common import Decoder, NEED_POLICIES, Out, Store
from rolesmith.explain.messages import parse_message
from rolesmith.explain.model import Explanation
from rolesmith.explain.ownership import object_ownership
from rolesmith.explain.requests import build_request, s3_bucket_owner, service_of
from rolesmith.explain.trailindex import TrailIndex
from rolesmith.trail.model import Event


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
    if req is not None and req.resource_account is None and ":s3:::" in req.resource and not s3_bucket_owner(event, req.resource):
        owner_note = ("the bucket's owning account is neither in the event nor in the policies: assumed the "
                      "caller's own",)
    out = object_ownership(event, req, trail, store)
    if out is None and req is None:
        out = Out(reason="UNKNOWN", basis="none", layer=None,
                   summary=f"{event.source.split('.', 1)[0]}:{event.name} was refused to a caller the record does not name",
                   missing=built.missing)
    elif out is None and req is not None:
        if store is not None:
            req, out = first_denied(event, req, built.alternatives, parsed, built.inferred_kms, store, trail,
                                      built.others)
        else:
            out = from_message(event, req, parsed, decoded, built.inferred_kms, trail)
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
