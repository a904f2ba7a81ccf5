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
and a capped table of link contexts are kept, never the events themselves.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterator

import networkx as nx

from rolesmith.actions.model import EventUses, Use
from rolesmith.graph.model import CONTEXT_CAP, ERROR_CAP, EVIDENCE_CAP, Assumption, GraphUse, UseKey
from rolesmith.trail.model import Event, Principal

PNode = tuple[str, str]

_ASSUME_EVENTS = frozenset({"AssumeRole", "AssumeRoleWithSAML", "AssumeRoleWithWebIdentity"})
# Ids AWS mints in a response (RunInstances, CreateSecurityGroup, RunJobFlow …): evidence for
# ``--generalize safe`` that the id is new every run. Only creation calls are scanned (cheap), and the
# set is capped so memory stays bounded on huge trails.
_CREATING = ("Create", "Run", "Allocate", "Launch", "Request", "Start")
_CREATED_ID = re.compile(r"^(?:sg|i|vol|eni|snap|lt|j|r|fleet|sir)-[0-9A-Za-z]{6,}$")
CREATED_CAP = 10_000
# s3:PutObject and friends whose x-amz-acl header decides the bucket-policy condition.
_ACL_ACTIONS = frozenset({"s3:PutObject", "s3:PutObjectAcl"})
# A service-invoked call made for the same principal (KMS data key for an S3 upload) happens while
# the triggering request runs: CloudTrail times of the two differ by seconds. 15 minutes leaves room
# for clock granularity and slow multipart uploads without linking unrelated calls of a long trail.
LINK_WINDOW_S = 900.0


def _evidence(event: Event) -> str:
    return event.event_id or event.origin


def _principal_node(arn: str) -> PNode:
    return ("principal", arn)


def _resource_node(arn: str) -> PNode:
    return ("resource", arn)


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


def _distance(a: list[Any], b: list[Any]) -> float:
    """Gap between two [first, last] time spans (0 when they overlap or a time is unknown)."""
    if None in (a[0], a[1], b[0], b[1]):
        return 0.0
    if a[1] < b[0]:
        return b[0] - a[1]
    if b[1] < a[0]:
        return a[0] - b[1]
    return 0.0


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


def _created_ids(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if key.endswith("Id") and _CREATED_ID.match(item):
                    out.add(item)
            else:
                _created_ids(item, out)
    elif isinstance(value, list):
        for item in value:
            _created_ids(item, out)


def _acl_header(request: Any) -> str:
    value = request.get("x-amz-acl") if isinstance(request, dict) else None
    if isinstance(value, list):  # some trails log headers as one-element lists
        value = value[0] if value else None
    return value if isinstance(value, str) else ""


def _via_service(via: str) -> str | None:
    """IAM prefix of the service that made a call for the principal (None for "AWS Internal")."""
    if not via.endswith(".amazonaws.com"):
        return None
    try:
        from rolesmith.actions.dataset import service_for_source

        found = service_for_source(via)
    except ImportError:  # pragma: no cover - the mapping package ships with rolesmith
        found = None
    return found or via.split(".", 1)[0]


class UsageGraph:
    """Principals, resources and uses observed in a trail, with ``invoked-by`` and ``assumes`` edges."""

    def __init__(self) -> None:
        self.graph: nx.MultiDiGraph = nx.MultiDiGraph()
        self._uses: dict[UseKey, dict[str, Any]] = {}  # UseKey -> the attribute dict of its 'uses' edge
        self._by_principal: dict[str, list[UseKey]] = {}
        self._assumes: dict[tuple[str, str], dict[str, Any]] = {}
        self._links: dict[UseKey, UseKey] | None = None
        self.events = 0
        self.unattributable = 0
        self.unattributable_events: list[str] = []
        self.unmapped: Counter[str] = Counter()  # "source:name: reason" -> events
        self.unmapped_events: dict[str, list[str]] = {}
        self.created: set[str] = set()  # resource ids the trail shows AWS generating (see _CREATED_ID)

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
        if event_uses.unknown is not None:
            label = f"{event.source} {event.name}: {event_uses.unknown}"
            self.unmapped[label] += 1
            ids = self.unmapped_events.setdefault(label, [])
            if len(ids) < EVIDENCE_CAP:
                ids.append(_evidence(event))
            if not event_uses.uses and not event_uses.inferred:
                return
        self._links = None
        self._add_principal(principal)
        denied = event.denied
        invoked = event.invoked_by if event.invoked_by and principal.kind != "service" else None
        contexts: set[str] = set()
        match: set[str] = set()
        if invoked is None:
            for use in (*event_uses.uses, *event_uses.inferred):
                if use.resource != "*":
                    contexts.add(use.resource)
                    bucket = _bucket_of(use.resource)
                    if bucket is not None:  # S3 Bucket Keys put the bucket ARN in the encryption context
                        contexts.add(f"arn:{event.partition}:s3:::{bucket}")
        else:
            match.update(_arn_values(event.request.get("encryptionContext")))
            if principal.kind == "role":
                match.add(principal.arn)  # a service acting under a role it was passed (EMR)
        acl = _acl_header(event.request)
        for use in event_uses.uses:
            self._record(principal, use, event, denied=denied, observed=True, contexts=contexts, match=match,
                         acl=acl)
        for use in event_uses.inferred:
            self._record(principal, use, event, denied=denied, observed=False, contexts=contexts, match=match,
                         acl=acl)
        if not denied and event.response and event.name.startswith(_CREATING) and len(self.created) < CREATED_CAP:
            _created_ids(event.response, self.created)
        if event.name in _ASSUME_EVENTS and event.source.startswith("sts.") and not denied:
            self._record_assume(principal, event, event_uses)

    def _add_principal(self, principal: Principal) -> PNode:
        node = _principal_node(principal.arn)
        if node not in self.graph:
            self.graph.add_node(node, kind="principal", principal_kind=principal.kind, account=principal.account,
                                partition=principal.partition)
        elif self.graph.nodes[node].get("principal_kind") == "unknown":
            self.graph.nodes[node].update(principal_kind=principal.kind, account=principal.account,
                                          partition=principal.partition)
        return node

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

    def _record(self, principal: Principal, use: Use, event: Event, *, denied: bool, observed: bool,
                contexts: set[str], match: set[str], acl: str) -> None:
        key = UseKey(principal=principal.arn, action=use.action, resource=use.resource,
                     conditions=tuple(use.conditions), via=use.via, denied=denied)
        stats = self._uses.get(key)
        if stats is None:
            pnode = _principal_node(principal.arn)
            rnode = _resource_node(use.resource)
            unode = ("use", key)
            account = self._resource_account(use, event)
            if rnode not in self.graph:
                self.graph.add_node(rnode, kind="resource", account=account)
            elif account and not self.graph.nodes[rnode].get("account"):
                self.graph.nodes[rnode]["account"] = account
            self.graph.add_node(unode, kind="use")
            self.graph.add_edge(unode, rnode, key="on", kind="on")
            self.graph.add_edge(
                pnode, unode, key="uses", kind="uses", action=use.action, count=0, observed=0,
                first_seen=None, last_seen=None, errors=[], events=[], inferred_by=set(), partial=False,
                resource_account=account, contexts={}, match={}, acl=set(),
            )
            stats = self.graph.edges[pnode, unode, "uses"]
            self._uses[key] = stats
            self._by_principal.setdefault(principal.arn, []).append(key)
        elif stats["resource_account"] is None:
            stats["resource_account"] = self._resource_account(use, event)
        when = event.time
        stats["count"] += 1
        if observed:
            stats["observed"] += 1
        elif use.inferred_by:
            stats["inferred_by"].add(use.inferred_by)
        if use.inferred_by and observed:
            stats["inferred_by"].add(use.inferred_by)
        if when is not None:
            if stats["first_seen"] is None or when < stats["first_seen"]:
                stats["first_seen"] = when
            if stats["last_seen"] is None or when > stats["last_seen"]:
                stats["last_seen"] = when
        if event.error_code and event.error_code not in stats["errors"] and len(stats["errors"]) < ERROR_CAP:
            stats["errors"].append(event.error_code)
        evidence = _evidence(event)
        if len(stats["events"]) < EVIDENCE_CAP and evidence not in stats["events"]:
            stats["events"].append(evidence)
        if use.partial:
            stats["partial"] = True
        if use.action in _ACL_ACTIONS and len(stats["acl"]) < 4:
            stats["acl"].add(acl)
        for table, values in (("contexts", contexts), ("match", match)):
            spans = stats[table]
            for arn in values:
                span = spans.get(arn)
                if span is None:
                    if len(spans) >= CONTEXT_CAP:
                        continue
                    span = spans[arn] = [None, None]
                _widen(span, when)

    def _record_assume(self, caller: Principal, event: Event, event_uses: EventUses) -> None:
        role = event.request.get("roleArn")
        if not isinstance(role, str) or not role.startswith("arn:"):
            return
        actions = {u.action for u in event_uses.uses if u.action.startswith("sts:") and u.resource == role}
        actions.add(f"sts:{event.name}")
        rnode = _principal_node(role)
        if rnode not in self.graph:
            parts = role.split(":")
            self.graph.add_node(rnode, kind="principal", principal_kind="role",
                                account=parts[4] if len(parts) > 4 else None,
                                partition=parts[1] if len(parts) > 1 else event.partition)
        key = (caller.arn, role)
        stats = self._assumes.get(key)
        if stats is None:
            self.graph.add_edge(_principal_node(caller.arn), rnode, key="assumes", kind="assumes", count=0,
                                actions=set(), events=[], caller_kind=caller.kind)
            stats = self._assumes[key] = self.graph.edges[_principal_node(caller.arn), rnode, "assumes"]
        stats["count"] += 1
        stats["actions"].update(actions)
        evidence = _evidence(event)
        if len(stats["events"]) < EVIDENCE_CAP and evidence not in stats["events"]:
            stats["events"].append(evidence)

    # -- queries --------------------------------------------------------------------------------

    def _snapshot(self, key: UseKey) -> GraphUse:
        s = self._uses[key]
        return GraphUse(
            key=key, resource_account=s["resource_account"], count=s["count"], first_seen=s["first_seen"],
            last_seen=s["last_seen"], errors=tuple(s["errors"]), events=tuple(s["events"]),
            provenance="observed" if s["observed"] else "inferred", inferred_by=tuple(sorted(s["inferred_by"])),
            partial=s["partial"], acl=tuple(sorted(s["acl"])),
        )

    def uses(self) -> list[GraphUse]:
        """Every use, in a deterministic order."""
        return [self._snapshot(k) for k in sorted(self._uses, key=_sort_key)]

    def principals(self) -> list[tuple[str, str, str | None]]:
        """(arn, kind, account) of every principal node, sorted by ARN."""
        out = []
        for node, data in self.graph.nodes(data=True):
            if data.get("kind") == "principal":
                out.append((node[1], data.get("principal_kind", "unknown"), data.get("account")))
        return sorted(out)

    def needs(self, principal: str, *, include_denied: bool = False) -> list[GraphUse]:
        """What ``principal`` needs: its uses (denied ones only with ``include_denied``), sorted."""
        keys = self._by_principal.get(principal, ())
        return [self._snapshot(k) for k in sorted(keys, key=_sort_key) if include_denied or not k.denied]

    def cross_account_users(self, resource: str) -> list[str]:
        """Principal ARNs from an account other than the resource owner's that used ``resource``.

        ``resource`` may be a bucket ARN: uses of its objects count as uses of the bucket.
        """
        owners: set[str] = set()
        users: dict[str, str | None] = {}
        prefix = resource.rstrip("/") + "/"
        for key, s in self._uses.items():
            if key.denied or not (key.resource == resource or key.resource.startswith(prefix)):
                continue
            if s["resource_account"]:
                owners.add(s["resource_account"])
            users[key.principal] = self.graph.nodes[_principal_node(key.principal)].get("account")
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
        """The raw attribute dict of a use's ``uses`` edge (read-only by convention)."""
        return self._uses[key]

    # -- invoked-by linking ---------------------------------------------------------------------

    def links(self) -> dict[UseKey, UseKey]:
        """invoked use -> triggering use, for every service-invoked use that can be linked."""
        if self._links is None:
            self._links = self._compute_links()
            self.graph.remove_edges_from(
                [(u, v, k) for u, v, k in self.graph.edges(keys=True) if k == "invoked-by"]
            )
            for invoked, trigger in self._links.items():
                self.graph.add_edge(("use", invoked), ("use", trigger), key="invoked-by", kind="invoked-by")
        return self._links

    def _compute_links(self) -> dict[UseKey, UseKey]:
        # Index client calls by the ARNs of their events, so each invoked use only meets the calls
        # that share one of its context ARNs (no scan over every use of the service).
        by_context: dict[str, list[UseKey]] = {}
        for key, s in self._uses.items():
            if key.via is None:
                for arn in s["contexts"]:
                    by_context.setdefault(arn, []).append(key)
        links: dict[UseKey, UseKey] = {}
        for key in sorted(self._uses, key=_sort_key):
            stats = self._uses[key]
            if key.via is None or not stats["match"]:
                continue
            service = _via_service(key.via)
            best: tuple[Any, ...] | None = None
            for arn, span in stats["match"].items():
                for cand in by_context.get(arn, ()):
                    if service is not None and cand.action.split(":", 1)[0] != service:
                        continue
                    cspan = self._uses[cand]["contexts"][arn]
                    same = cand.principal == key.principal
                    if same:
                        gap = _distance(span, cspan)
                        if gap > LINK_WINDOW_S:
                            continue
                    elif arn == key.principal:
                        # A role passed to a service: the service's calls follow the passing call.
                        if None not in (cspan[0], span[1]) and cspan[0] > span[1]:
                            continue
                        gap = 0.0
                    else:
                        continue
                    score = (0 if cand.resource == arn else 1, gap, 0 if same else 1, _sort_key(cand))
                    if best is None or score < best[0]:
                        best = (score, cand)
            if best is not None:
                links[key] = best[1]
        return links


def _sort_key(key: UseKey) -> tuple[Any, ...]:
    return (key.principal, key.action, key.resource, key.conditions, key.via or "", key.denied)
