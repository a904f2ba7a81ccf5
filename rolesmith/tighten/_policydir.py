"""The role from a ``--current-policies`` directory: the ``explain --policies`` layout, read by the evaluator's loader.

``identity/<role>/*.json`` are its policies (a file in ``aws iam get-policy-version`` form is a
managed policy, its version kept), ``boundaries/<role>.json`` its boundary, ``trust/<role>.json`` its
trust policy, ``principals.yaml`` maps the role name to its ARN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolesmith.tighten.current import ROLE_ARN, parse_role
from rolesmith.tighten.errors import TightenInputError
from rolesmith.tighten.model import CurrentPolicy, CurrentRole

if TYPE_CHECKING:
    from rolesmith.evaluator.policydir import PolicyStore


def _version(path: Path) -> str | None:
    try:
        # utf-8-sig as the loader reads it: a byte-order mark must not turn a managed policy inline.
        raw: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, json.JSONDecodeError):
        return None  # the loader has already accepted or rejected the file
    if isinstance(raw, dict) and isinstance(raw.get("PolicyVersion"), dict):
        return str(raw["PolicyVersion"].get("VersionId") or "") or "unknown"
    return None


def _validate(store: "PolicyStore", name: str) -> None:
    """The checks ``explain`` applies to the same files, with the same one-line ``PolicyError``.

    tighten reads statements directly (wildcard expansion, condition merging), so a document
    outside the policy grammar must be refused here rather than crash there.
    """
    from rolesmith.evaluator.compile import compile_policy

    for named in store.identity[name]:
        compile_policy(named, "identity")
    if name in store.boundaries:
        compile_policy(store.boundaries[name], "boundary")
    if name in store.trust:
        # Kept as is in the replacement: a malformed one would be written back to IAM.
        compile_policy(store.trust[name], "trust-policy")


def read_role_from_dir(role: str, directory: Path) -> CurrentRole:
    from rolesmith.evaluator.policydir import load_policy_dir

    name, _account, arn = parse_role(role)
    store = load_policy_dir(directory)
    if name not in store.identity:
        raise TightenInputError(
            f"role {role}: {directory}/identity/{name}/ does not exist; check the role name or add its policy files there"
        )
    listed = store.principals.get(name, {}).get("arn")
    if arn is None:
        arn = str(listed) if listed else None
        # The account and role name come from this ARN, so it must be a role's.
        if arn is not None and not ROLE_ARN.match(arn):
            raise TightenInputError(
                f"role {name}: {directory}/principals.yaml gives {arn!r}, not a role ARN; "
                f"write '{name}: arn:aws:iam::ACCOUNT:role/{name}' there or pass the role ARN"
            )
    if arn is None:
        raise TightenInputError(
            f"role {name}: {directory}/principals.yaml gives no ARN for it; pass the role ARN or add '{name}: ARN' there"
        )
    _validate(store, name)
    policies = []
    for named in store.identity[name]:
        stem = named.name.rsplit("/", 1)[-1]
        version = _version(directory / "identity" / name / f"{stem}.json")
        policies.append(
            CurrentPolicy(
                name=stem,
                kind="managed" if version else "inline",
                document=dict(named.document),
                version_id=version,
            )
        )
    boundary = store.boundaries.get(name)
    trust = store.trust.get(name)
    return CurrentRole(
        arn=arn,
        name=parse_role(arn)[0],
        account=arn.split(":")[4],
        policies=tuple(policies),
        boundary=CurrentPolicy(name=boundary.name.rsplit("/", 1)[-1], kind="managed", document=dict(boundary.document))
        if boundary
        else None,
        trust=dict(trust.document) if trust else None,
        source=str(directory),
    )
