"""Value objects of the usage graph: how a use is keyed, and what the public queries return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rolesmith.actions.model import Condition
from rolesmith.graph.evidence import unpack_ids

# Evidence event ids kept per use / assumes edge: enough to point a reader at examples, while memory
# grows with the number of distinct uses rather than with the number of events.
EVIDENCE_CAP = 10
# Distinct error codes and link contexts kept per use (same reason).
ERROR_CAP = 5
CONTEXT_CAP = 32


@dataclass(frozen=True, kw_only=True, slots=True)
class UseKey:
    """Identity of one use node: the same permission by the same principal is one node however often it occurs."""

    principal: str
    action: str
    resource: str
    conditions: tuple[Condition, ...] = ()
    via: str | None = None
    denied: bool = False

    def label(self) -> str:
        parts = [self.principal, self.action, self.resource]
        if self.conditions:
            parts.append(",".join(f"{op}:{key}={value}" for op, key, value in self.conditions))
        if self.via:
            parts.append(f"via {self.via}")
        if self.denied:
            parts.append("DENIED")
        return " | ".join(parts)


def use_sort_key(key: UseKey) -> tuple[object, ...]:
    """The deterministic order of uses in every query and output."""
    return (key.principal, key.action, key.resource, key.conditions, key.via or "", key.denied)


@dataclass(frozen=True, kw_only=True, slots=True)
class GraphUse:
    """A snapshot of one use node with its evidence (what ``needs`` and ``trigger_of`` return)."""

    key: UseKey
    resource_account: str | None
    count: int
    first_seen: float | None
    last_seen: float | None
    errors: tuple[str, ...]
    # The evidence ids as the graph holds them (packed while they are UUIDs, see
    # rolesmith.graph.evidence): a snapshot of every use is taken at once when policies are
    # written, and most uses' evidence is never read, so ``events`` unpacks it only when asked.
    evidence: bytes | tuple[str, ...]
    provenance: Literal["observed", "inferred"]
    inferred_by: tuple[str, ...]  # rule ids that inferred it (also set when it was observed too)
    partial: bool
    acl: tuple[str, ...]  # x-amz-acl values the uploads sent ("" where an upload sent none)

    @property
    def events(self) -> tuple[str, ...]:
        """Evidence event ids (``eventID``, else ``path#index``), in the order first seen."""
        evidence = self.evidence
        return evidence if type(evidence) is tuple else tuple(unpack_ids(evidence))

    @property
    def principal(self) -> str:
        return self.key.principal

    @property
    def action(self) -> str:
        return self.key.action

    @property
    def resource(self) -> str:
        return self.key.resource

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return self.key.conditions

    @property
    def via(self) -> str | None:
        return self.key.via

    @property
    def denied(self) -> bool:
        return self.key.denied


@dataclass(frozen=True, kw_only=True, slots=True)
class Assumption:
    """An ``assumes`` edge: ``caller`` (role/user ARN or service principal) assumed ``role``."""

    caller: str
    caller_kind: str  # Principal.kind of the caller: role, user, root, federated, service
    role: str
    actions: tuple[str, ...]  # sts:AssumeRole[WithWebIdentity|WithSAML] (+ sts:TagSession, …)
    count: int
    events: tuple[str, ...]
