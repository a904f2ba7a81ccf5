"""Scenario YAML: the accounts, principals, policies and resources a sandbox starts with.

The format is documented in the README (``rolesmith sandbox``). Policy documents may use two
placeholders, substituted after loading so ARNs stay readable in YAML:
``${account:NAME}`` → that account's id, ``${key:NAME}`` / ``${key:ACCOUNT/NAME}`` → the key's ARN.
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from rolesmith.errors import RolesmithError

Document = Mapping[str, Any]

OWNERSHIP = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
_ACCOUNT_ID = re.compile(r"^\d{12}$")
_PLACEHOLDER = re.compile(r"\$\{(account|key):([^}]+)\}")
# The form of AWS region names (us-east-1, us-gov-west-1, cn-north-1, eusc-de-east-1): botocore
# rejects anything else only when the first request is signed, long after the scenario was loaded.
_REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d+$")
# A KMS key or alias ARN (https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id):
# the sandbox reads the account out of it for every SSE-KMS call.
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]+|alias/[A-Za-z0-9/_-]+)$")
# What YAML 1.1 turns an unquoted key into when it is not a string: ``1:``, ``yes:``, ``~:``.
_YAML_TYPES = {bool: "a boolean (an unquoted yes/no/on/off/true/false)", int: "a number", float: "a number",
               type(None): "null (an unquoted ~ or null)"}


class ScenarioError(RolesmithError):
    """The scenario file is malformed: one line naming the file, the entry and the fix."""

    exit_code = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class PrincipalSpec:
    """A user or role: ``policies`` maps a policy name to its document (inline or managed alike)."""

    name: str
    kind: str  # "user" | "role"
    account: str
    account_name: str
    path: str = "/"
    policies: Mapping[str, Document] = field(default_factory=dict)
    boundary: Document | None = None
    trust: Document | None = None  # roles only
    instance_profile: bool = False
    service_linked: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:{self.kind}{self.path}{self.name}"

    @property
    def qualified(self) -> str:
        return f"{self.account_name}/{self.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class BucketSpec:
    name: str
    account: str
    policy: Document | None = None
    encryption: str | None = None  # None, "AES256", or a KMS key ARN (SSE-KMS default encryption)
    object_ownership: str = "BucketOwnerEnforced"  # the AWS default for new buckets


@dataclass(frozen=True, kw_only=True, slots=True)
class KeySpec:
    name: str
    account: str
    key_id: str
    region: str
    policy: Document
    aliases: tuple[str, ...] = ()

    @property
    def arn(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{self.key_id}"


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSpec:
    name: str
    account: str
    region: str
    policy: Document | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class AccountSpec:
    name: str
    id: str
    scps: tuple[tuple[Document, ...], ...] = ()  # one tuple per OU level, root first
    rcps: tuple[tuple[Document, ...], ...] = ()
    management: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    source: str
    region: str
    accounts: tuple[AccountSpec, ...]
    principals: tuple[PrincipalSpec, ...]
    buckets: tuple[BucketSpec, ...]
    keys: tuple[KeySpec, ...]
    queues: tuple[QueueSpec, ...]
    run_as: str | None = None  # the principal a workload runs as by default (``ACCOUNT/NAME``)

    @property
    def default_principal(self) -> str:
        return self.principal(self.run_as).qualified if self.run_as else self.principals[0].qualified

    def account(self, account_id: str) -> AccountSpec | None:
        return next((a for a in self.accounts if a.id == account_id), None)

    def principal(self, name: str) -> PrincipalSpec:
        """By ``ACCOUNT/NAME`` (account name or id), ARN, or bare name when unique."""
        hits = [
            p for p in self.principals
            if name in (p.arn, p.qualified, f"{p.account}/{p.name}") or name == p.name
        ]
        if len(hits) != 1:
            known = ", ".join(p.qualified for p in self.principals)
            how = "is ambiguous" if hits else "is not declared"
            raise ScenarioError(f"{self.source}: principal {name!r} {how}; use one of: {known}")
        return hits[0]

    def bucket(self, name: str) -> BucketSpec | None:
        return next((b for b in self.buckets if b.name == name), None)


def _fail(source: str, where: str, fix: str) -> ScenarioError:
    return ScenarioError(f"{source}: {where}: {fix}")


def _mapping(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(source, where, f"expected a mapping, got {type(value).__name__}")
    return value


def _named(value: Any, source: str, where: str) -> Mapping[str, Any]:
    """A mapping whose keys are names (accounts, principals, resources, policies, tags): each must be
    a string, or ``1:`` / ``yes:`` / ``~:`` would become the name "1" / "True" / "None"."""
    out = _mapping(value, source, where)
    for k in out:
        if not isinstance(k, str):
            what = _YAML_TYPES.get(type(k), type(k).__name__)
            raise _fail(source, where, f"the name {k!r} is {what}, not a string: quote it in YAML")
    return out


def _only(raw: Mapping[str, Any], keys: set[str], source: str, where: str) -> None:
    # A misspelt key ("polices:") would otherwise leave a principal without its policies, silently.
    extra = set(raw) - keys
    if extra:
        raise _fail(source, where, f"unknown keys {sorted(extra, key=str)}; allowed: {', '.join(sorted(keys))}")


def _region(value: Any, source: str) -> str:
    if value is None:
        return "us-east-1"
    if not isinstance(value, str):
        raise _fail(source, "region", f"expected a region name such as us-east-1, got {type(value).__name__}")
    if not _REGION.match(value):
        raise _fail(source, "region", f"{value!r} is not an AWS region name: use one such as us-east-1")
    return value


def _aliases(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    # A bare string is refused rather than read character by character.
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _fail(source, where, "expected a list of alias names, e.g. [alias/NAME]")
    bad = [a for a in value if not a.startswith("alias/") or a.startswith("alias/aws/")]
    if bad:
        raise _fail(source, where, f"{bad[0]!r}: aliases start with 'alias/' and not 'alias/aws/'")
    return tuple(value)


def _kms_key(enc: Mapping[str, Any], table: Mapping[tuple[str, str], str], account: str,
             source: str, where: str) -> str:
    """A bucket's ``encryption: {kms_key: …}`` → the key ARN: a declared key's name (``NAME`` or
    ``ACCOUNT/NAME``, as in ``${key:…}``) or a well-formed key / alias ARN."""
    ref = enc.get("kms_key")
    if not isinstance(ref, str) or not ref:
        raise _fail(source, where, "expected a key name or a key ARN (a string)")
    hit = table.get(("key", ref)) or table.get(("key", f"{account}/{ref}"))
    if hit is not None:
        return hit
    if ref.startswith("arn:"):
        if not _KMS_ARN.match(ref):
            raise _fail(source, where, f"{ref!r} is not a KMS key ARN: use arn:aws:kms:REGION:ACCOUNT:key/ID "
                                       "(or :alias/NAME) or the name of a declared key")
        return ref
    raise _fail(source, where, f"unknown key {ref!r}: name a declared key or a key ARN")


def _document(value: Any, source: str, where: str) -> Document:
    if not isinstance(value, Mapping) or "Statement" not in value:
        raise _fail(source, where, 'expected a policy document with "Statement"')
    return value


def _levels(value: Any, source: str, where: str) -> tuple[tuple[Document, ...], ...]:
    """SCPs/RCPs: a list of documents (one level) or a list of lists (one per OU level)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(source, where, "expected a list of policy documents (or of lists, one per OU level)")
    if all(isinstance(v, list) for v in value):
        return tuple(tuple(_document(d, source, f"{where}[{i}]") for d in lvl) for i, lvl in enumerate(value))
    return (tuple(_document(d, source, f"{where}[{i}]") for i, d in enumerate(value)),)


def _default_key_policy(account: str) -> Document:
    # The default key policy: the account root gets kms:*, which delegates the key to IAM
    # (shared/reference/s3_kms/kms-dg__key-policy-default.md).
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "kms:*", "Resource": "*"}]}


def _substitute(value: Any, table: Mapping[tuple[str, str], str], source: str, where: str) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            hit = table.get((m.group(1), m.group(2)))
            if hit is None:
                raise _fail(source, where, f"unknown placeholder {m.group(0)}: declare that {m.group(1)}")
            return hit
        return _PLACEHOLDER.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: _substitute(v, table, source, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, table, source, where) for v in value]
    return value


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


@functools.cache
def _loader() -> type:
    """PyYAML's safe loader (libyaml's where PyYAML was built with it: the pure-Python one is 10x
    slower, and the scenario is parsed on every sandbox start) that refuses a key given twice in one
    mapping: YAML keeps only the last, so a second account or user of the same name would silently
    replace the first."""
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _Strict(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # "<<: *anchor" merges, and explicit keys may override what it brings
                key = self.construct_object(key_node, deep=True)
                try:
                    twice = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if twice:
                    raise _DuplicateKey(None, None, f"the key {key!r} is given twice (YAML would keep only the"
                                        " last one); remove or rename one", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return _Strict


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    source = str(path)
    try:
        data = p.read_bytes()
        text = data.decode("utf-8")
        raw = yaml.load(text, Loader=_loader())  # noqa: S506 - a safe loader
    except OSError as err:
        raise ScenarioError(f"{source}: cannot read: {err.strerror}; pass an existing scenario YAML") from err
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ScenarioError(f"{source}: line {line}: byte 0x{data[err.start]:02x} is not UTF-8; "
                            "save the file as UTF-8") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        if isinstance(err, _DuplicateKey):
            raise ScenarioError(f"{source}: {line}{err.problem}") from err
        raise ScenarioError(f"{source}: {line}invalid YAML; fix the syntax") from err
    return parse_scenario(raw, source=source)


def parse_scenario(raw: Any, *, source: str = "<scenario>") -> Scenario:
    top = _mapping(raw, source, "top level")
    unknown = set(top) - {"region", "accounts", "run_as"}
    if unknown:
        raise _fail(source, "top level", f"unknown keys {sorted(unknown, key=str)}; allowed: region, run_as, accounts")
    region = _region(top.get("region"), source)
    accounts_raw = _named(top.get("accounts"), source, "accounts")
    if not accounts_raw:
        raise _fail(source, "accounts", "declare at least one account")

    # First pass: account ids and key ARNs, so placeholders resolve anywhere.
    table: dict[tuple[str, str], str] = {}
    ids: dict[str, str] = {}
    for aname, acc in accounts_raw.items():
        acc = _mapping(acc, source, f"accounts.{aname}")
        aid = str(acc.get("id", ""))
        if not _ACCOUNT_ID.match(aid):
            raise _fail(source, f"accounts.{aname}.id", "expected a 12-digit account id (quote it in YAML)")
        if aid in ids.values():
            raise _fail(source, f"accounts.{aname}.id", f"account id {aid} is declared twice")
        ids[aname] = aid
        table[("account", aname)] = aid
    key_ids: dict[tuple[str, str], str] = {}
    for aname, acc in accounts_raw.items():
        for kname, kraw in _named(acc.get("keys"), source, f"accounts.{aname}.keys").items():
            kraw = _mapping(kraw, source, f"accounts.{aname}.keys.{kname}")
            kid = str(kraw.get("id") or uuid.uuid5(uuid.NAMESPACE_URL, f"rolesmith-sandbox/{ids[aname]}/{kname}"))
            key_ids[(aname, kname)] = kid
            arn = f"arn:aws:kms:{region}:{ids[aname]}:key/{kid}"
            table[("key", f"{aname}/{kname}")] = arn
            table.setdefault(("key", kname), arn)

    accounts: list[AccountSpec] = []
    principals: list[PrincipalSpec] = []
    buckets: list[BucketSpec] = []
    keys: list[KeySpec] = []
    queues: list[QueueSpec] = []
    allowed = {"id", "users", "roles", "buckets", "keys", "queues", "scps", "rcps", "management"}

    def flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):  # YAML's 'no' in quotes is a string, and a non-empty string is true
            raise _fail(source, f"{where}.{key}", f"expected true or false, got {value!r}")
        return value
    for aname, acc in accounts_raw.items():
        where = f"accounts.{aname}"
        acc = _substitute(_mapping(acc, source, where), table, source, where)
        _only(acc, allowed, source, where)
        aid = ids[aname]
        accounts.append(AccountSpec(name=aname, id=aid, scps=_levels(acc.get("scps"), source, f"{where}.scps"),
                                    rcps=_levels(acc.get("rcps"), source, f"{where}.rcps"),
                                    management=flag(acc, "management", where)))
        for kind in ("user", "role"):
            for pname, praw in _named(acc.get(kind + "s"), source, f"{where}.{kind}s").items():
                pw = f"{where}.{kind}s.{pname}"
                praw = _mapping(praw, source, pw)
                _only(praw, {"policies", "trust", "path", "boundary", "instance_profile", "service_linked", "tags"}
                      if kind == "role" else {"policies", "path", "boundary", "tags"}, source, pw)
                pols = {n: _document(d, source, f"{pw}.policies.{n}")
                        for n, d in _named(praw.get("policies"), source, f"{pw}.policies").items()}
                trust = praw.get("trust")
                if kind == "role" and trust is None:
                    raise _fail(source, pw, "a role needs a trust policy (key 'trust')")
                path = str(praw.get("path", "/"))
                if not (path.startswith("/") and path.endswith("/")):
                    raise _fail(source, f"{pw}.path", "an IAM path starts and ends with '/'")
                principals.append(PrincipalSpec(
                    name=pname, kind=kind, account=aid, account_name=aname, path=path, policies=pols,
                    boundary=_document(praw["boundary"], source, f"{pw}.boundary") if praw.get("boundary") else None,
                    trust=_document(trust, source, f"{pw}.trust") if trust is not None else None,
                    instance_profile=flag(praw, "instance_profile", pw),
                    service_linked=flag(praw, "service_linked", pw),
                    tags={k: str(v) for k, v in _named(praw.get("tags"), source, f"{pw}.tags").items()}))
        for bname, braw in _named(acc.get("buckets"), source, f"{where}.buckets").items():
            bw = f"{where}.buckets.{bname}"
            braw = _mapping(braw, source, bw)
            _only(braw, {"object_ownership", "encryption", "policy"}, source, bw)
            own = str(braw.get("object_ownership", "BucketOwnerEnforced"))
            if own not in OWNERSHIP:
                raise _fail(source, f"{bw}.object_ownership", f"expected one of {', '.join(OWNERSHIP)}")
            enc = braw.get("encryption")
            if isinstance(enc, Mapping):
                enc = _kms_key(enc, table, aname, source, f"{bw}.encryption.kms_key")
            elif enc not in (None, "AES256"):
                raise _fail(source, f"{bw}.encryption", "expected AES256 or {kms_key: NAME}")
            if any(b.name == bname for b in buckets):
                raise _fail(source, bw, "bucket names are global: this one is declared twice")
            buckets.append(BucketSpec(
                name=bname, account=aid, object_ownership=own, encryption=enc,
                policy=_document(braw["policy"], source, f"{bw}.policy") if braw.get("policy") else None))
        for kname, kraw in _named(acc.get("keys"), source, f"{where}.keys").items():
            kw = f"{where}.keys.{kname}"
            kraw = _mapping(kraw, source, kw)
            _only(kraw, {"id", "aliases", "policy"}, source, kw)
            aliases = _aliases(kraw.get("aliases"), source, f"{kw}.aliases")
            keys.append(KeySpec(
                name=kname, account=aid, key_id=key_ids[(aname, kname)], region=region,
                policy=_document(kraw["policy"], source, f"{kw}.policy") if kraw.get("policy") else _default_key_policy(aid),
                aliases=aliases))
        for qname, qraw in _named(acc.get("queues"), source, f"{where}.queues").items():
            qw = f"{where}.queues.{qname}"
            qraw = _mapping(qraw, source, qw)
            _only(qraw, {"policy"}, source, qw)
            queues.append(QueueSpec(name=qname, account=aid, region=region,
                                    policy=_document(qraw["policy"], source, f"{qw}.policy") if qraw.get("policy") else None))
    seen: set[str] = set()
    for p in principals:
        if p.arn in seen:
            raise _fail(source, p.qualified, "declared twice")
        seen.add(p.arn)
    if not principals:
        raise _fail(source, "accounts", "declare at least one user or role to run as")
    scenario = Scenario(source=source, region=region, accounts=tuple(accounts), principals=tuple(principals),
                        buckets=tuple(buckets), keys=tuple(keys), queues=tuple(queues),
                        run_as=str(top["run_as"]) if top.get("run_as") else None)
    scenario.default_principal  # noqa: B018 - validates run_as now, with the file name in the error
    _check_policies(scenario)
    return scenario


@functools.lru_cache(maxsize=1)
def _known_regions() -> frozenset[str]:
    # Cached: converge resets the sandbox once per iteration, and reading the data takes 15 ms.
    from botocore.loaders import create_loader

    partitions = create_loader().load_data("endpoints").get("partitions", [])
    return frozenset(r for part in partitions for r in part.get("regions", {}))


def check_region_known(scenario: Scenario) -> None:
    """moto keeps state only in the regions of botocore's endpoint data: in any other, seeding the
    scenario fails on the first request. Checked when a sandbox starts, not in ``parse_scenario``:
    moto imports botocore then anyway, while parsing alone would pay 50 ms for it."""
    if os.environ.get("MOTO_ALLOW_NONEXISTENT_REGION", "").lower() == "true":  # moto takes any region then
        return
    if scenario.region not in _known_regions():
        raise _fail(scenario.source, "region", f"{scenario.region!r} is not a region AWS has (none in botocore's "
                                               "endpoint data): use one such as us-east-1")


def _check_policies(scenario: Scenario) -> None:
    """Compile every policy now, so a malformed one is a load error naming it, not a failed request."""
    from rolesmith.evaluator import NamedPolicy, PolicyError
    from rolesmith.evaluator.compile import compile_policy

    docs: list[tuple[str, str, Document]] = []
    for a in scenario.accounts:
        docs += [(f"accounts.{a.name}.scps[{i}][{j}]", "scp", d) for i, lvl in enumerate(a.scps) for j, d in enumerate(lvl)]
        docs += [(f"accounts.{a.name}.rcps[{i}][{j}]", "rcp", d) for i, lvl in enumerate(a.rcps) for j, d in enumerate(lvl)]
    for p in scenario.principals:
        where = f"accounts.{p.account_name}.{p.kind}s.{p.name}"
        docs += [(f"{where}.policies.{n}", "identity", d) for n, d in p.policies.items()]
        docs += [(f"{where}.boundary", "boundary", p.boundary)] if p.boundary else []
        docs += [(f"{where}.trust", "trust-policy", p.trust)] if p.trust else []
    docs += [(f"bucket {b.name}: policy", "resource", b.policy) for b in scenario.buckets if b.policy]
    docs += [(f"key {k.name}: policy", "key-policy", k.policy) for k in scenario.keys]
    docs += [(f"queue {q.name}: policy", "resource", q.policy) for q in scenario.queues if q.policy]
    for where, layer, doc in docs:
        try:
            compile_policy(NamedPolicy(name=where, document=doc), layer)
        except PolicyError as err:
            raise ScenarioError(f"{scenario.source}: {err}; fix that policy document") from err
