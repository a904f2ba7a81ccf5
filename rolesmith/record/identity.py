"""``userIdentity`` for each access key a run used: one sts:GetCallerIdentity per key, by rolesmith.

rolesmith can only sign GetCallerIdentity with credentials it holds (those it hands the child);
keys the child obtained itself are attributed from the AssumeRole response the hook saw.
Shapes follow CloudTrail's userIdentity element (shared/reference, "CloudTrail userIdentity element").
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from rolesmith.trail.secrets import scrub_text

log = logging.getLogger(__name__)


def identity_from_arn(arn: str, principal_id: str | None, access_key_id: str | None) -> dict[str, Any]:
    parts = arn.split(":", 5)
    account = parts[4] if len(parts) > 5 else None
    resource = parts[5] if len(parts) > 5 else ""
    base: dict[str, Any] = {"principalId": principal_id, "arn": arn, "accountId": account}
    if access_key_id:
        base["accessKeyId"] = access_key_id
    if resource.startswith("assumed-role/"):
        _, role, *_session = resource.split("/")
        role_id = (principal_id or "").split(":", 1)[0] or None
        partition = parts[1] if len(parts) > 1 else "aws"
        base["type"] = "AssumedRole"
        base["sessionContext"] = {"sessionIssuer": {"type": "Role", "principalId": role_id,
                                                    "arn": f"arn:{partition}:iam::{account}:role/{role}",
                                                    "accountId": account, "userName": role}}
    elif resource.startswith("user/"):
        base["type"] = "IAMUser"
        base["userName"] = resource.rsplit("/", 1)[-1]
    elif resource == "root":
        base["type"] = "Root"
    elif resource.startswith("federated-user/"):
        base["type"] = "FederatedUser"
    else:
        base["type"] = "Unknown"
    return base


class IdentityResolver:
    """Caches one identity per access key id; thread-safe (called from the collector threads)."""

    def __init__(self, own_key: str | None, caller_identity: Callable[[], Mapping[str, Any]] | None) -> None:
        self.own_key = own_key
        self._caller_identity = caller_identity
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, Any] | None] = {}
        self.sts_calls = 0

    def learn(self, access_key_id: str, arn: str, principal_id: str | None) -> None:
        with self._lock:
            self._cache[access_key_id] = identity_from_arn(arn, principal_id, access_key_id)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(k for k in self._cache)

    def known(self) -> dict[str, dict[str, Any] | None]:
        with self._lock:
            return dict(self._cache)

    def __call__(self, access_key_id: str | None) -> dict[str, Any] | None:
        if not access_key_id:
            return None
        with self._lock:
            if access_key_id in self._cache:
                return self._cache[access_key_id]
            identity: dict[str, Any] | None = None
            if access_key_id == self.own_key and self._caller_identity is not None:
                try:
                    self.sts_calls += 1
                    who = self._caller_identity()
                    identity = identity_from_arn(who["Arn"], who.get("UserId"), access_key_id)
                except Exception as err:  # no network, expired keys: record the call unattributed
                    log.warning("sts:GetCallerIdentity for %s failed: %s", access_key_id, scrub_text(str(err)))
            if identity is None:
                identity = {"type": "Unknown", "accessKeyId": access_key_id}
            self._cache[access_key_id] = identity
            return identity
