"""The usage graph: who used what, how often, and which indirect use came from which call.

Nodes (networkx ``MultiDiGraph``), keyed by tuples so the three kinds never collide:

* ``("principal", arn)``: roles, users, roots, federated identities and service principals;
* ``("resource", arn)``: every resource a use touched (``*`` for actions without a resource type);
* ``("use", UseKey)``: one permission of one principal (action, resource, conditions, via, denied).

Edges (the MultiDiGraph key is the edge kind):

* principal -``uses``-> use: count, first/last seen, error codes, evidence event ids (capped),
  observed | inferred and the inferring rules;
* use -``on``-> resource;
* use -``invoked-by``-> use: a call an AWS service made for the principal (KMS GenerateDataKey by
  ``s3.amazonaws.com``) linked to the call that triggered it (computed on first query);
* principal -``assumes``-> principal (role): from ``sts:AssumeRole*`` events.

Memory grows with the number of distinct uses: per use only counters, a capped list of evidence ids
and a capped table of link contexts are kept, never the events themselves. ``add`` only touches a
compact index (plain dicts and slotted records); the networkx graph is materialised from it on first
access to ``.graph`` (export, explain), so building policies from a large trail never pays for it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Iterator

import networkx as nx

from rolesmith.actions.model import EventUses, Use
from rolesmith.graph.evidence import holds, pack_id, unpack_ids
from rolesmith.graph.links import compute_links
from rolesmith.graph.model import CONTEXT_CAP, ERROR_CAP, EVIDENCE_CAP, Assumption, GraphUse, UseKey
from rolesmith.graph.model import use_sort_key as _sort_key
from rolesmith.trail.model import Event, Principal

_ASSUME_EVENTS = frozenset({"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"})
# Ids AWS mints in a response (RunInstances, CreateSecurityGroup, RunJobFlow …): evidence for
# ``--generalize safe`` that the id is new every run. Only creation calls are scanned (cheap), and the
# set is capped so memory stays bounded on huge trails.
_CREATING = ("Create", "Run", "Allocate", "Launch", "Request", "Start")
_CREATED_ID = re.compile(r"^(?:sg|i|vol|eni|snap|lt|j|r|fleet|sir)-[0-9A-Za-z]{6,}$")
CREATED_CAP = 10_000
_PACKED_CAP = EVIDENCE_CAP * 16
# s3:PutObject and friends whose x-amz-acl header decides the bucket-policy condition.
_ACL_ACTIONS = frozenset({"s3:PutObject", "s3:PutObjectAcl"})


def _evidence(event: Event) -> str:
    return event.event_id or event.origin


def _bucket_of(arn: str) -> str | None:
    if not arn.startswith("arn:") or ":s3:::" not in arn:
        return None
    rest = arn.split(":::", 1)[1]
    return rest.split("/", 1)[0] or None


def _widen(span: list[Any], when: float | None) -> None:
    if when is None:
        return
    if span[0] is None or when < span[0]:
        span[0] = when
    if span[1] is None or when > span[1]:
        span[1] = when


class _Stats:
    """What one use node carries (the attributes of its ``uses`` edge); slotted: there may be millions."""

    __slots__ = ("key", "count", "observed", "first", "last", "errors", "events", "inferred_by", "partial",
                 "resource_account", "contexts", "match", "acl")

    def __init__(self, key: UseKey, resource_account: str | None) -> None:
        self.key = key
        self.count = 0
        self.observed = 0
        self.first: float | None = None
        self.last: float | None = None
        self.errors: list[str] | None = None
        self.events: bytes | list[str] = b""  # evidence ids, packed while they are all UUIDs
        self.inferred_by: set[str] | None = None
        self.partial = False
        self.resource_account = resource_account
        # Link contexts beyond the use's own resource (and its bucket), e.g. the roles its call passed.
        self.contexts: dict[str, list[Any]] | None = None
        # For a service-invoked use: ARNs that identify the triggering call (encryption context, role).
        self.match: dict[str, list[Any]] | None = None
        self.acl: set[str] | None = None

    def attrs(self) -> dict[str, Any]:
        return {
            "action": self.key.action, "count": self.count, "observed": self.observed, "first_seen": self.first,
            "last_seen": self.last, "errors": list(self.errors or ()), "events": unpack_ids(self.events),
            "inferred_by": set(self.inferred_by or ()), "partial": self.partial,
            "resource_account": self.resource_account,
        }


def _spans(table: dict[str, list[Any]] | None, values: Iterable[str], when: float | None) -> dict[str, list[Any]]:
    table = {} if table is None else table
    for arn in values:
        span = table.get(arn)
        if span is None:
            if len(table) >= CONTEXT_CAP:
                continue
            span = table[arn] = [None, None]
        _widen(span, when)
    return table


def _arn_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.startswith("arn:"):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arn_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _arn_values(item)


def _created_ids(value: Any, out: set[str], *, any_key: bool = False) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if (any_key or key.endswith("Id")) and _CREATED_ID.match(item):
                    out.add(item)
            else:
                _created_ids(item, out, any_key=any_key)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                if any_key and _CREATED_ID.match(item):
                    out.add(item)
            else:
                _created_ids(item, out, any_key=any_key)


def _acl_header(request: Any) -> str:
    value = request.get("x-amz-acl") if isinstance(request, dict) else None
    if isinstance(value, list):  # some trails log headers as one-element lists
        value = value[0] if value else None
    return value if isinstance(value, str) else ""


class UsageGraph:
    """Principals, resources and uses observed in a trail, with ``invoked-by`` and ``assumes`` edges."""

    def __init__(self) -> None:
        self._uses: dict[tuple[Any, ...], _Stats] = {}  # (principal, action, resource, conds, via, denied)
        self._by_key: dict[UseKey, _Stats] = {}
        self._by_principal: dict[str, list[UseKey]] = {}
        self._principals: dict[str, tuple[str, str | None, str]] = {}  # arn -> (kind, account, partition)
        self._resources: dict[str, str | None] = {}  # arn -> owning account when known
        self._assumes: dict[tuple[str, str], dict[str, Any]] = {}
        self._links: dict[UseKey, UseKey] | None = None
        self._nx: nx.MultiDiGraph | None = None
        self.events = 0
        self.unattributable = 0
        self.unattributable_events: list[str] = []
        self.unmapped: Counter[str] = Counter()  # "source name: reason" -> events
        self.unmapped_events: dict[str, list[str]] = {}
        self.created: set[str] = set()  # resource ids the trail shows AWS generating (see _CREATED_ID)
        # IAM user -> evidence of calls its GetFederationToken sessions made (the policy that also
        # has to allow them is the session policy passed to that call, which no trail shows).
        self.federated_sessions: dict[str, list[str]] = {}

    # -- building -------------------------------------------------------------------------------

    def add(self, event: Event, event_uses: EventUses) -> None:
        """Record one normalised event and what it needed."""
        self.events += 1
        principal = event.principal
        if principal is None:
            self.unattributable += 1
            if len(self.unattributable_events) < EVIDENCE_CAP:
                self.unattributable_events.append(_evidence(event))
            return
        uses, inferred = event_uses.uses, event_uses.inferred
        if event_uses.unknown is not None:
            label = f"{event.source} {event.name}: {event_uses.unknown}"
            self.unmapped[label] += 1
            ids = self.unmapped_events.setdefault(label, [])
            if len(ids) < EVIDENCE_CAP:
                ids.append(_evidence(event))
            if not uses and not inferred:
                return
        parn = principal.arn
        known = self._principals.get(parn)
        if known is None or known[0] == "unknown":
            self._principals[parn] = (principal.kind, principal.account, principal.partition)
            self._nx = None
        if not uses and not inferred:
            return
        if principal.session_arn is not None and ":federated-user/" in principal.session_arn:
            ids = self.federated_sessions.setdefault(parn, [])
            if len(ids) < EVIDENCE_CAP:
                ids.append(_evidence(event))
        self._links = None
        self._nx = None
        denied = event.denied
        when = event.time
        evidence = _evidence(event)
        packed: bytes | None = None  # evidence packed (b"" when not a UUID), made on first need
        passed: tuple[str, ...] = ()
        match: tuple[str, ...] = ()
        if event.invoked_by and principal.kind != "service":
            arns = list(_arn_values(event.request.get("encryptionContext")))
            if principal.kind == "role":
                arns.append(parn)  # a service acting under a role it was passed (EMR)
            match = tuple(arns)
        else:
            passed = tuple(u.resource for u in (*uses, *inferred) if u.action == "iam:PassRole" and u.resource != "*")
        for observed, group in ((True, uses), (False, inferred)):
            for use in group:
                raw = (parn, use.action, use.resource, use.conditions, use.via, denied)
                stats = self._uses.get(raw)
                if stats is None:
                    stats = self._new_use(raw, principal, use, event)
                stats.count += 1
                if observed:
                    stats.observed += 1
                if use.inferred_by:
                    if stats.inferred_by is None:
                        stats.inferred_by = set()
                    stats.inferred_by.add(use.inferred_by)
                if when is not None:
                    if stats.first is None or when < stats.first:
                        stats.first = when
                    if stats.last is None or when > stats.last:
                        stats.last = when
                code = event.error_code
                if code:
                    if stats.errors is None:
                        stats.errors = []
                    if code not in stats.errors and len(stats.errors) < ERROR_CAP:
                        stats.errors.append(code)
                held = stats.events
                if type(held) is bytes:
                    if len(held) < _PACKED_CAP:
                        if packed is None:
                            packed = pack_id(evidence) or b""
                        if not packed:
                            stats.events = [*unpack_ids(held), evidence]
                        elif not holds(held, packed):
                            stats.events = held + packed
                elif len(held) < EVIDENCE_CAP and evidence not in held:
                    held.append(evidence)
                if use.partial:
                    stats.partial = True
                if use.action in _ACL_ACTIONS:
                    if stats.acl is None:
                        stats.acl = set()
                    if len(stats.acl) < 4:
                        stats.acl.add(_acl_header(event.request))
                if passed:
                    stats.contexts = _spans(stats.contexts, passed, when)
                if match:
                    stats.match = _spans(stats.match, match, when)
        if not denied and event.response and event.name.startswith(_CREATING) and len(self.created) < CREATED_CAP:
            minted: set[str] = set()
            _created_ids(event.response, minted)
            if minted:
                # An id the request already named (RunInstances' security groups, CreateSnapshot's
                # volume) existed before the call: the response only echoes it.
                given: set[str] = set()
                _created_ids(event.request, given, any_key=True)
                self.created.update(minted - given)
        if event.name in _ASSUME_EVENTS and event.source.startswith("sts.") and not denied:
            self._record_assume(principal, event, event_uses)

    def _new_use(self, raw: tuple[Any, ...], principal: Principal, use: Use, event: Event) -> _Stats:
        key = UseKey(principal=raw[0], action=raw[1], resource=raw[2], conditions=tuple(raw[3]), via=raw[4],
                     denied=raw[5])
        account = self._resource_account(use, event)
        if use.resource not in self._resources or (account and not self._resources[use.resource]):
            self._resources[use.resource] = account
        stats = self._uses[raw] = self._by_key[key] = _Stats(key, account)
        self._by_principal.setdefault(principal.arn, []).append(key)
        return stats

    def _resource_account(self, use: Use, event: Event) -> str | None:
        if use.resource_account:
            return use.resource_account
        bucket = _bucket_of(use.resource)
        if bucket is None:
            return None
        # S3 data events list the bucket with its owner's accountId in ``resources``.
        want = f"arn:{event.partition}:s3:::{bucket}"
        for item in event.resources:
            arn = item.get("ARN") or item.get("arn")
            if arn == want and item.get("accountId"):
                return str(item["accountId"])
        return None

    def _record_assume(self, caller: Principal, event: Event, event_uses: EventUses) -> None:
        role = event.request.get("roleArn")
        if not isinstance(role, str) or not role.startswith("arn:"):
            return
        actions = {u.action for u in event_uses.uses if u.action.startswith("sts:") and u.resource == role}
        actions.add(f"sts:{event.name}")
        if role not in self._principals:
            parts = role.split(":")
            self._principals[role] = ("role", parts[4] if len(parts) > 4 else None,
                                      parts[1] if len(parts) > 1 else event.partition)
        stats = self._assumes.get((caller.arn, role))
        if stats is None:
            stats = self._assumes[(caller.arn, role)] = {"kind": "assumes", "count": 0, "actions": set(), "events": [],
                                                         "caller_kind": caller.kind}
        self._nx = None
        stats["count"] += 1
        stats["actions"].update(actions)
        evidence = _evidence(event)
        if len(stats["events"]) < EVIDENCE_CAP and evidence not in stats["events"]:
            stats["events"].append(evidence)

    # -- the networkx view ----------------------------------------------------------------------

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The usage graph as a networkx ``MultiDiGraph`` (built from the index on first access)."""
        links = self.links()
        if self._nx is None:
            g = nx.MultiDiGraph()
            for arn, (kind, account, partition) in self._principals.items():
                g.add_node(("principal", arn), kind="principal", principal_kind=kind, account=account,
                           partition=partition)
            for arn, account in self._resources.items():
                g.add_node(("resource", arn), kind="resource", account=account)
            for key, stats in self._by_key.items():
                unode = ("use", key)
                g.add_node(unode, kind="use")
                g.add_edge(("principal", key.principal), unode, key="uses", kind="uses", **stats.attrs())
                g.add_edge(unode, ("resource", key.resource), key="on", kind="on")
            for (caller, role), stats in self._assumes.items():
                g.add_edge(("principal", caller), ("principal", role), key="assumes", **stats)
            for invoked, trigger in links.items():
                g.add_edge(("use", invoked), ("use", trigger), key="invoked-by", kind="invoked-by")
            self._nx = g
        return self._nx

    # -- queries --------------------------------------------------------------------------------

    def _snapshot(self, key: UseKey) -> GraphUse:
        s = self._by_key[key]
        return GraphUse(
            key=key, resource_account=s.resource_account, count=s.count, first_seen=s.first, last_seen=s.last,
            errors=tuple(s.errors or ()), evidence=s.events if type(s.events) is bytes else tuple(s.events),
            provenance="observed" if s.observed else "inferred",
            inferred_by=tuple(sorted(s.inferred_by)) if s.inferred_by else (),
            partial=s.partial, acl=tuple(sorted(s.acl)) if s.acl else (),
        )

    def uses(self) -> list[GraphUse]:
        """Every use, in a deterministic order."""
        return [self._snapshot(k) for k in sorted(self._by_key, key=_sort_key)]

    def principals(self) -> list[tuple[str, str, str | None]]:
        """(arn, kind, account) of every principal, sorted by ARN."""
        return sorted((arn, kind, account) for arn, (kind, account, _) in self._principals.items())

    def needs(self, principal: str, *, include_denied: bool = False) -> list[GraphUse]:
        """What ``principal`` needs: its uses (denied ones only with ``include_denied``), sorted."""
        keys = self._by_principal.get(principal, ())
        return [self._snapshot(k) for k in sorted(keys, key=_sort_key) if include_denied or not k.denied]

    def has_uses(self, principal: str, *, include_denied: bool = False) -> bool:
        return any(include_denied or not k.denied for k in self._by_principal.get(principal, ()))

    def denied_uses(self) -> list[GraphUse]:
        """Every denied use, sorted."""
        return [self._snapshot(k) for k in sorted((k for k in self._by_key if k.denied), key=_sort_key)]

    def cross_account_users(self, resource: str) -> list[str]:
        """Principal ARNs from an account other than the resource owner's that used ``resource``.

        ``resource`` may be a bucket ARN: uses of its objects count as uses of the bucket.
        """
        owners: set[str] = set()
        users: dict[str, str | None] = {}
        prefix = resource.rstrip("/") + "/"
        for key, s in self._by_key.items():
            if key.denied or not (key.resource == resource or key.resource.startswith(prefix)):
                continue
            if s.resource_account:
                owners.add(s.resource_account)
            users[key.principal] = self._principals[key.principal][1]
        if not owners:
            parts = resource.split(":")
            if len(parts) > 4 and parts[4]:
                owners.add(parts[4])
        return sorted(p for p, account in users.items() if account and owners and account not in owners)

    def trigger_of(self, use: GraphUse | UseKey) -> GraphUse | None:
        """The use whose call made an AWS service perform ``use`` on the principal's behalf, if known."""
        key = use.key if isinstance(use, GraphUse) else use
        trigger = self.links().get(key)
        return self._snapshot(trigger) if trigger is not None else None

    def assumptions(self) -> list[Assumption]:
        out = [
            Assumption(caller=caller, caller_kind=s["caller_kind"], role=role, actions=tuple(sorted(s["actions"])),
                       count=s["count"], events=tuple(s["events"]))
            for (caller, role), s in self._assumes.items()
        ]
        return sorted(out, key=lambda a: (a.role, a.caller))

    def stats(self, key: UseKey) -> dict[str, Any]:
        """The attributes of a use's ``uses`` edge (a copy)."""
        return self._by_key[key].attrs()

    # -- invoked-by linking ---------------------------------------------------------------------

    def links(self) -> dict[UseKey, UseKey]:
        """invoked use -> triggering use, for every service-invoked use that can be linked."""
        if self._links is None:
            self._links = compute_links(self._by_key, self._principals)
            self._nx = None
        return self._links
