"""What the sandbox knows beyond moto's state: policies in force, owners, encryption, ownership.

moto keeps the data; this keeps what enforcement reads on every request (policies by principal and
resource, bucket owners, object owners and keys, KMS aliases), seeded from the scenario and updated
when a request through the sandbox changes it (PutBucketPolicy, PutKeyPolicy, PutRolePolicy, …).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from rolesmith.sandbox.scenario import PrincipalSpec, Scenario

Document = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectInfo:
    owner: str  # owning account
    kms_key: str | None  # key ARN for SSE-KMS objects
    owner_full_control: bool = False  # uploaded with bucket-owner-full-control


@dataclass(kw_only=True, slots=True)
class BucketState:
    name: str
    account: str
    region: str
    policy: Document | None = None
    encryption: str | None = None  # None | "AES256" | KMS key ARN
    object_ownership: str = "BucketOwnerEnforced"
    objects: dict[str, ObjectInfo] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class KeyState:
    arn: str
    account: str
    policy: Document
    aws_managed: bool = False


class World:
    """Mutable, lock-guarded; every accessor returns immutable values or copies."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.region = scenario.region
        self.lock = threading.RLock()
        self.principals: dict[str, PrincipalSpec] = {p.arn: p for p in scenario.principals}
        self.buckets: dict[str, BucketState] = {
            b.name: BucketState(name=b.name, account=b.account, region=scenario.region, policy=b.policy,
                                encryption=b.encryption, object_ownership=b.object_ownership)
            for b in scenario.buckets}
        self.keys: dict[str, KeyState] = {k.arn: KeyState(arn=k.arn, account=k.account, policy=k.policy)
                                          for k in scenario.keys}
        # (account, "alias/name") -> key ARN
        self.aliases: dict[tuple[str, str], str] = {(k.account, a): k.arn for k in scenario.keys for a in k.aliases}
        self.queues: dict[str, Document | None] = {q.arn: q.policy for q in scenario.queues}
        self.uploads: dict[str, tuple[str | None, bool]] = {}  # multipart upload id -> (key ARN, bofc)

    # -- principals ---------------------------------------------------------------------------
    def principal(self, arn: str) -> PrincipalSpec | None:
        with self.lock:
            return self.principals.get(arn)

    def role_by_name(self, account: str, name: str) -> PrincipalSpec | None:
        with self.lock:
            return next((p for p in self.principals.values()
                         if p.kind == "role" and p.account == account and p.name == name), None)

    def put_principal_policy(self, arn: str, name: str, document: Document) -> None:
        with self.lock:
            spec = self.principals.get(arn)
            if spec is not None:
                self.principals[arn] = replace(spec, policies={**spec.policies, name: document})

    def delete_principal_policy(self, arn: str, name: str) -> None:
        with self.lock:
            spec = self.principals.get(arn)
            if spec is not None:
                self.principals[arn] = replace(spec, policies={k: v for k, v in spec.policies.items() if k != name})

    def put_trust(self, arn: str, document: Document) -> None:
        with self.lock:
            spec = self.principals.get(arn)
            if spec is not None:
                self.principals[arn] = replace(spec, trust=document)

    # -- resources ----------------------------------------------------------------------------
    def bucket(self, name: str) -> BucketState | None:
        with self.lock:
            return self.buckets.get(name)

    def resolve_key(self, key_ref: str | None, account: str) -> str | None:
        """A key id, alias name, alias ARN or key ARN → key ARN (aliases resolve in ``account``)."""
        if not key_ref:
            return None
        if key_ref.startswith("arn:"):
            parts = key_ref.split(":", 5)
            if len(parts) == 6 and parts[5].startswith("alias/"):
                return self.aliases.get((parts[4], parts[5]), self._aws_managed(parts[4], parts[5]))
            return key_ref
        if key_ref.startswith("alias/"):
            return self.aliases.get((account, key_ref), self._aws_managed(account, key_ref))
        return f"arn:aws:kms:{self.region}:{account}:key/{key_ref}"

    def _aws_managed(self, account: str, alias: str) -> str | None:
        if alias.startswith("alias/aws/"):
            return f"arn:aws:kms:{self.region}:{account}:{alias}"
        return None

    def key_policy(self, arn: str) -> Document | None:
        with self.lock:
            state = self.keys.get(arn)
            return state.policy if state else None

    def is_aws_managed(self, key_arn: str) -> bool:
        return ":alias/aws/" in key_arn
