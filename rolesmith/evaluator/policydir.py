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
(``PolicyVersion.Document``, ``PolicyDocument``) whose document may also be JSON text or the
URL-encoded text the IAM API returns. Anything else is a ``PolicyDirError`` naming the file.
"""

from __future__ import annotations

import json
import re
import urllib.parse
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


def _rel(path: Path, root: Path) -> Path:
    # Errors name a file as DIR/sub/file: enough to find it, short enough for one line.
    return path.relative_to(root.parent) if root.parent in path.parents else path


def _kind(value: Any) -> str:
    """How a YAML/JSON value reads in an error message ("got a list")."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return {dict: "a mapping", list: "a list"}.get(type(value), f"a {type(value).__name__}")


def _text(path: Path, root: Path, what: str) -> str:
    rel = _rel(path, root)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise PolicyDirError(f"{rel}: is a directory; remove it or replace it with a {what} file") from None
    except OSError as err:
        raise PolicyDirError(f"{rel}: cannot read: {err.strerror}; make it a readable {what} file") from None
    try:
        # utf-8-sig: editors on Windows save UTF-8 with a byte-order mark, which is still UTF-8.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PolicyDirError(f"{rel}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                             f"save it as a UTF-8 {what} file") from None


def _json(text: str, rel: Path, where: str = "") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise PolicyDirError(f"{rel}: {where}invalid JSON at line {err.lineno}: {err.msg}; fix the file") from None
    except RecursionError:
        # The stdlib parser recurses per nesting level; a policy is a few levels deep.
        raise PolicyDirError(f"{rel}: {where}JSON nested too deeply to be a policy document; fix the file") from None
    except ValueError as err:  # e.g. an integer beyond the interpreter's digit limit
        raise PolicyDirError(f"{rel}: {where}invalid JSON: {str(err).split(';')[0]}; fix the file") from None


def _decoded(value: str, rel: Path, where: str) -> Any:
    """A document given as text: JSON, or URL-encoded JSON as the IAM API returns it.

    GetRolePolicy, GetPolicyVersion and friends return documents "URL-encoded compliant with RFC
    3986" (IAM API Reference, PolicyVersion); JSON text always starts with ``{`` so it is never
    unquoted (a ``%`` inside it is literal).
    """
    text = value.strip()
    if not text.startswith("{"):
        text = urllib.parse.unquote(text).strip()
    if not text.startswith("{"):
        raise PolicyDirError(f"{rel}: {where} is a string, not a JSON policy document (raw or URL-encoded); "
                             "write the policy document as a JSON object with a Statement")
    return _json(text, rel, f"{where}: ")


def _document(path: Path, root: Path) -> dict[str, Any]:
    rel = _rel(path, root)
    data = _json(_text(path, root, "JSON policy"), rel)
    where = "the file's content"
    if isinstance(data, dict) and "PolicyVersion" in data:
        if isinstance(data["PolicyVersion"], dict) and "Document" in data["PolicyVersion"]:
            data, where = data["PolicyVersion"]["Document"], "PolicyVersion.Document"
    if isinstance(data, dict) and "PolicyDocument" in data:
        data, where = data["PolicyDocument"], "PolicyDocument"
    if isinstance(data, str):
        data = _decoded(data, rel, where)
    if not isinstance(data, dict) or "Statement" not in data:
        raise PolicyDirError(f"{rel}: not a policy document (expected a JSON object with a Statement)")
    return data


def _yaml(path: Path, root: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    import yaml

    rel = _rel(path, root)
    text = _text(path, root, "YAML")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PolicyDirError(f"{rel}: invalid YAML: {str(err).splitlines()[0]}; fix the file") from None
    except RecursionError:
        raise PolicyDirError(f"{rel}: YAML nested too deeply; fix the file") from None
    except ValueError as err:  # e.g. an integer beyond the interpreter's digit limit
        raise PolicyDirError(f"{rel}: invalid YAML: {str(err).split(';')[0]}; fix the file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyDirError(f"{rel}: expected a mapping at the top level, got {_kind(data)}; see the layout in the README")
    return data


_ARN = "arn:aws:iam::ACCOUNT:role/NAME"
_PRINCIPAL_KEYS = ("arn", "groups")
_ACCOUNT_KEYS = ("management", "organization")


def _principals(path: Path, root: Path) -> dict[str, dict[str, Any]]:
    """principals.yaml: ``name: ARN`` or ``name: {arn: ARN, groups: [group, ...]}``."""
    rel = _rel(path, root)
    out: dict[str, dict[str, Any]] = {}
    for key, value in _yaml(path, root).items():
        name = str(key)
        entry = {"arn": value} if isinstance(value, str) else value
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise PolicyDirError(f"{rel}: {name}: expected an ARN or {{arn: ARN, groups: [group, ...]}}, "
                                 f"got {_kind(value)}; write '{name}: {_ARN}'")
        unknown = sorted(str(k) for k in entry if k not in _PRINCIPAL_KEYS)
        if unknown:
            raise PolicyDirError(f"{rel}: {name}: unknown key {unknown[0]!r}; use arn and groups")
        arn = entry.get("arn")
        # A principal is matched by its ARN: one that cannot be an ARN would silently never match.
        if arn is not None and not (isinstance(arn, str) and arn.startswith("arn:") and len(arn.split(":", 5)) == 6):
            raise PolicyDirError(f"{rel}: {name}: {_kind(arn)} is not an ARN; write '{name}: {_ARN}'")
        groups = entry.get("groups")
        if groups is not None and not (isinstance(groups, list) and all(
                isinstance(g, (str, int)) and not isinstance(g, bool) for g in groups)):
            raise PolicyDirError(f"{rel}: {name}: groups must be a list of group names, got {_kind(groups)}; "
                                 f"write 'groups: [group, ...]'")
        out[name] = dict(entry)
    return out


def _account_id(value: Any, rel: Path, where: str) -> str:
    # YAML reads an unquoted 12-digit id as a number, and one with a leading 0 as octal: only a
    # result that is still 12 digits is the id that was meant.
    text = str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not re.fullmatch(r"\d{12}", text):
        raise PolicyDirError(f"{rel}: {where}: {_kind(value)} is not a 12-digit account id; "
                             "write it quoted, e.g. \"111122223333\"")
    return text


def _accounts(path: Path, root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """accounts.yaml: ``accounts: {ID: {management: BOOL, organization: BOOL}}``, ``buckets: {NAME: ID}``."""
    rel = _rel(path, root)
    acc = _yaml(path, root)
    raw_accounts = acc.get("accounts") or {}
    if not isinstance(raw_accounts, dict):
        raise PolicyDirError(f"{rel}: accounts must map account ids to {{management: BOOL, organization: BOOL}}, "
                             f"got {_kind(raw_accounts)}")
    accounts: dict[str, dict[str, Any]] = {}
    for key, value in raw_accounts.items():
        account = _account_id(key, rel, "accounts")
        entry = {} if value is None else value
        if not isinstance(entry, dict):
            raise PolicyDirError(f"{rel}: accounts: {account}: expected {{management: BOOL, organization: BOOL}}, "
                                 f"got {_kind(value)}")
        for k, v in entry.items():
            if k not in _ACCOUNT_KEYS:
                raise PolicyDirError(f"{rel}: accounts: {account}: unknown key {str(k)!r}; use management and organization")
            # bool("false") is True: a quoted flag would silently mean the opposite.
            if not isinstance(v, bool):
                raise PolicyDirError(f"{rel}: accounts: {account}: {k} must be true or false, got {_kind(v)}")
        accounts[account] = dict(entry)
    raw_buckets = acc.get("buckets") or {}
    if not isinstance(raw_buckets, dict):
        raise PolicyDirError(f"{rel}: buckets must map bucket names to account ids, got {_kind(raw_buckets)}")
    buckets = {str(k): _account_id(v, rel, f"buckets: {k}") for k, v in raw_buckets.items()}
    return accounts, buckets


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
    principals = _principals(root / "principals.yaml", root)
    accounts, buckets = _accounts(root / "accounts.yaml", root)

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
    store = PolicyStore(
        root=str(root), principals=principals, accounts=accounts, buckets=buckets,
        identity=per_dir("identity"), groups=per_dir("groups"), boundaries=per_file("boundaries"),
        sessions=per_file("sessions"), scps=_levels(root, "scps"), rcps=_levels(root, "rcps"),
        resources=resources, trust=per_file("trust"),
    )
    _check(store)
    return store


def _check(store: PolicyStore) -> None:
    """Compile every policy now (memoised for the evaluation that follows), so a malformed one is an
    error even when the trail never asks for its principal or resource."""
    from rolesmith.evaluator.compile import compiled

    layers: list[tuple[NamedPolicy, str]] = []
    for kind, table in (("identity", store.identity), ("identity", store.groups)):
        layers += [(p, kind) for policies in table.values() for p in policies]
    layers += [(p, "boundary") for p in store.boundaries.values()]
    layers += [(p, "session") for p in store.sessions.values()]
    layers += [(p, "trust-policy") for p in store.trust.values()]
    layers += [(p, "scp") for level in store.scps for p in level]
    layers += [(p, "rcp") for level in store.rcps for p in level]
    layers += [(p, "key-policy" if kind == "kms" else "resource") for (kind, _), p in store.resources.items()]
    for policy, layer in layers:
        compiled(policy, layer)
