"""The policies directory: JSON policy files laid out by where they are attached.

Layout (every part optional; documented in the README under ``rolesmith simulate``)::

    DIR/
      principals.yaml          name: ARN  or  name: {arn: ARN, groups: [g, ...]}
      accounts.yaml            accounts: {"111122223333": {management: true, organization: false}}
                               buckets: {bucket-name: "444455556666"}   # S3 ARNs carry no account
      identity/<principal>/*.json   inline and managed policies of a user or role
      groups/<group>/*.json         group policies (users list their groups in principals.yaml)
      boundaries/<principal>.json   permissions boundary
      sessions/<role>.json          session policy of the role's sessions
      scps/<level>/*.json or scps/<level>-<name>.json    level 0 = root, then each OU, then the account
      rcps/<level>/*.json or rcps/<level>-<name>.json
      resource/s3/<bucket>.json  resource/kms/<key-id>.json  resource/sqs/<queue>.json
      resource/sns/<topic>.json  resource/secretsmanager/<secret-name>.json
      resource/lambda/<function>.json  resource/<service>/<last ARN component>.json
      trust/<role>.json             role trust policy (used for sts:AssumeRole* on the role)

A principal's name is its key in principals.yaml, else the last component of its ARN (the role
name for an assumed-role session). SCPs and RCPs apply to every account unless accounts.yaml marks
it ``organization: false``; ``management: true`` exempts an account from SCPs (and its resources
from RCPs). A policy file holds a policy document, or an IAM API wrapper of one
(``PolicyVersion.Document``, ``PolicyDocument``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.evaluator.model import NamedPolicy, Policies, Request

_LEVEL = re.compile(r"^(\d+)(?:-(.+))?$")


class PolicyDirError(RolesmithError):
    """A policies directory that cannot be read: the message names the file and the fix."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyStore:
    """Everything read from one policies directory; ``policies_for`` picks what applies to a request."""

    root: str
    principals: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    accounts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    buckets: Mapping[str, str] = field(default_factory=dict)
    identity: Mapping[str, tuple[NamedPolicy, ...]] = field(default_factory=dict)
    groups: Mapping[str, tuple[NamedPolicy, ...]] = field(default_factory=dict)
    boundaries: Mapping[str, NamedPolicy] = field(default_factory=dict)
    sessions: Mapping[str, NamedPolicy] = field(default_factory=dict)
    scps: tuple[tuple[NamedPolicy, ...], ...] = ()
    rcps: tuple[tuple[NamedPolicy, ...], ...] = ()
    resources: Mapping[tuple[str, str], NamedPolicy] = field(default_factory=dict)
    trust: Mapping[str, NamedPolicy] = field(default_factory=dict)

    def principal_name(self, arn: str) -> str:
        for name, entry in self.principals.items():
            if entry.get("arn") == arn:
                return name
        if ":assumed-role/" in arn:
            role = arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
            for name, entry in self.principals.items():
                if str(entry.get("arn", "")).endswith(f":role/{role}") or str(entry.get("arn", "")).endswith(f"/{role}"):
                    return name
            return role
        return arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]

    def account_of(self, arn: str) -> str | None:
        """The account that owns a resource ARN (S3 buckets from accounts.yaml ``buckets``)."""
        parts = arn.split(":", 5)
        if len(parts) == 6 and parts[2] == "s3":
            return self.buckets.get(parts[5].split("/", 1)[0])
        if len(parts) == 6 and parts[4]:
            return parts[4]
        return None

    def resource_policy(self, resource: str, action: str) -> tuple[NamedPolicy | None, str | None]:
        kind, key = resource_key(resource, action)
        if kind is None or key is None:
            return None, kind
        if kind == "role-trust":
            return self.trust.get(key[1]), kind
        pol = self.resources.get(key)
        if pol is None and kind == "secretsmanager-secret":
            # Secret ARNs end in a random 6-character suffix the file name may leave out.
            pol = self.resources.get((key[0], re.sub(r"-[A-Za-z0-9]{6}$", "", key[1])))
        return pol, kind

    def policies_for(self, request: Request) -> Policies:
        name = self.principal_name(request.principal)
        entry = self.principals.get(name, {})
        identity = list(self.identity.get(name, ()))
        for group in entry.get("groups", ()) or ():
            identity += self.groups.get(str(group), ())
        account = self.accounts.get(request.principal_account, {})
        res_account = request.resource_account or request.principal_account
        res_acct_entry = self.accounts.get(res_account, {})
        resource, kind = self.resource_policy(request.resource, request.action)
        session = None
        if ":assumed-role/" in request.principal or request.session_arn:
            session = self.sessions.get(name)
        return Policies(
            identity=tuple(identity),
            boundary=self.boundaries.get(name),
            session=session,
            scps=self.scps if account.get("organization", True) else (),
            rcps=self.rcps if res_acct_entry.get("organization", True) else (),
            resource=resource,
            resource_kind=kind,
            service_linked_role="/aws-service-role/" in request.principal,
            management_account=bool(account.get("management", False)),
            resource_management_account=bool(res_acct_entry.get("management", False)),
        )


def resource_key(resource: str, action: str) -> tuple[str | None, tuple[str, str] | None]:
    """The resource kind (``Policies.resource_kind``) and the (directory, file stem) of its policy."""
    parts = resource.split(":", 5)
    if len(parts) != 6:
        return None, None
    service, rest = parts[2], parts[5]
    if service == "iam" and rest.startswith("role/") and action.lower().startswith("sts:assumerole"):
        return "role-trust", ("trust", rest.rsplit("/", 1)[-1])
    if service == "s3":
        return "s3-bucket", ("s3", rest.split("/", 1)[0])
    if service == "kms":
        return ("kms-key" if rest.startswith("key/") else "kms-alias"), ("kms", rest.split("/", 1)[-1])
    if service == "secretsmanager":
        return "secretsmanager-secret", (service, rest.split(":", 1)[-1])
    if service == "lambda" and rest.startswith("function:"):
        return "lambda-function", (service, rest.split(":")[1])
    kind = {"sqs": "sqs-queue", "sns": "sns-topic"}.get(service, service)
    return kind, (service, re.split(r"[:/]", rest)[-1])


def _document(path: Path, root: Path) -> dict[str, Any]:
    rel = path.relative_to(root.parent) if root.parent in path.parents else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PolicyDirError(f"{rel}: invalid JSON at line {err.lineno}: {err.msg}; fix the file") from None
    except OSError as err:
        raise PolicyDirError(f"{rel}: cannot read: {err.strerror}") from None
    if isinstance(data, dict) and "PolicyVersion" in data:
        data = data["PolicyVersion"].get("Document", data) if isinstance(data["PolicyVersion"], dict) else data
    if isinstance(data, dict) and "PolicyDocument" in data:
        data = data["PolicyDocument"]
    if isinstance(data, str):
        data = json.loads(data)
    if not isinstance(data, dict) or "Statement" not in data:
        raise PolicyDirError(f"{rel}: not a policy document (expected a JSON object with a Statement)")
    return data


def _yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PolicyDirError(f"{path.name}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise PolicyDirError(f"{path.name}: expected a mapping at the top level")
    return data


def _levels(root: Path, sub: str) -> tuple[tuple[NamedPolicy, ...], ...]:
    base = root / sub
    if not base.is_dir():
        return ()
    levels: dict[int, list[NamedPolicy]] = {}
    for path in sorted(base.rglob("*.json")):
        rel = path.relative_to(base)
        head = rel.parts[0] if len(rel.parts) > 1 else path.stem
        m = _LEVEL.match(head)
        if not m:
            raise PolicyDirError(f"{sub}/{rel}: name it {sub}/<level>-<name>.json or {sub}/<level>/<name>.json (level 0 = root)")
        levels.setdefault(int(m.group(1)), []).append(NamedPolicy(name=f"{sub}/{rel.with_suffix('')}", document=_document(path, root)))
    return tuple(tuple(levels[k]) for k in sorted(levels))


def load_policy_dir(path: str | Path) -> PolicyStore:
    """Read a policies directory (layout in the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise PolicyDirError(f"{root}: not a directory; pass --policies DIR with the documented layout")
    principals: dict[str, dict[str, Any]] = {}
    for name, value in _yaml(root / "principals.yaml").items():
        principals[str(name)] = {"arn": value} if isinstance(value, str) else dict(value or {})
    acc = _yaml(root / "accounts.yaml")
    accounts = {str(k): dict(v or {}) for k, v in (acc.get("accounts") or {}).items()}
    buckets = {str(k): str(v) for k, v in (acc.get("buckets") or {}).items()}

    def per_dir(sub: str) -> dict[str, tuple[NamedPolicy, ...]]:
        out: dict[str, tuple[NamedPolicy, ...]] = {}
        base = root / sub
        if base.is_dir():
            for d in sorted(p for p in base.iterdir() if p.is_dir()):
                out[d.name] = tuple(NamedPolicy(name=f"{sub}/{d.name}/{f.stem}", document=_document(f, root))
                                    for f in sorted(d.glob("*.json")))
        return out

    def per_file(sub: str) -> dict[str, NamedPolicy]:
        base = root / sub
        if not base.is_dir():
            return {}
        return {f.stem: NamedPolicy(name=f"{sub}/{f.stem}", document=_document(f, root)) for f in sorted(base.glob("*.json"))}

    resources: dict[tuple[str, str], NamedPolicy] = {}
    base = root / "resource"
    if base.is_dir():
        for f in sorted(base.glob("*/*.json")):
            resources[(f.parent.name, f.stem)] = NamedPolicy(name=f"resource/{f.parent.name}/{f.stem}", document=_document(f, root))
    return PolicyStore(
        root=str(root), principals=principals, accounts=accounts, buckets=buckets,
        identity=per_dir("identity"), groups=per_dir("groups"), boundaries=per_file("boundaries"),
        sessions=per_file("sessions"), scps=_levels(root, "scps"), rcps=_levels(root, "rcps"),
        resources=resources, trust=per_file("trust"),
    )
