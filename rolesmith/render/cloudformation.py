"""The policy set as CloudFormation: one template model per deployable unit, parameterised.

Units: a role (``AWS::IAM::Role`` with its trust policy and inline policy, or an
``AWS::IAM::ManagedPolicy`` attached to an existing role when the trail showed no AssumeRole), a user
(``AWS::IAM::ManagedPolicy``), a bucket policy (``AWS::S3::BucketPolicy``) and a customer-managed key
(``AWS::KMS::Key`` with its ``KeyPolicy``). Account ids, role/user/bucket names and key ids become
``Parameters`` (defaults: the values in the trail) referenced through ``Fn::Sub``, and the partition
becomes ``${AWS::Partition}``, so a customer can deploy the snippet in their own accounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rolesmith.policies.model import PolicySet
from rolesmith.policies.statements import letter_suffix

_ACCOUNT = re.compile(r"\b\d{12}\b")
_ROLE_OR_USER = re.compile(r"^arn:([^:]+):iam::(\d{12}):(role|user)/(.*/)?([^/]+)$")
_KEY = re.compile(r"^arn:([^:]+):kms:([^:]*):(\d{12}):key/([^/]+)$")
_S3 = re.compile(r"^arn:([^:]+):s3:::([^/]+)(/.*)?$")
_ARN = re.compile(r"^arn:([^:]+):")
POLICY_NAME = "rolesmith-least-privilege"


def camel(name: str) -> str:
    """``report-writer`` -> ``ReportWriter`` (CloudFormation logical ids and parameter names are alphanumeric)."""
    words = re.split(r"[^A-Za-z0-9]+", name)
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "X"


@dataclass(kw_only=True, slots=True)
class Parameters:
    """Parameter names for every account id and name in the policy set, shared by all units."""

    accounts: dict[str, str] = field(default_factory=dict)
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, value) -> parameter name
    descriptions: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set)

    def _new(self, base: str, default: str, description: str) -> str:
        name, n = base, 2
        while name in self._taken:
            name, n = f"{base}{n}", n + 1
        self._taken.add(name)
        self.defaults[name] = default
        self.descriptions[name] = description
        return name

    def account(self, account_id: str) -> str:
        if account_id not in self.accounts:
            letter = letter_suffix(len(self.accounts) + 1)
            self.accounts[account_id] = self._new(
                f"Account{letter}", account_id, f"AWS account id (account {account_id} in the trail)"
            )
        return self.accounts[account_id]

    def name(self, kind: str, value: str, account: str | None = None) -> str:
        # Same-named roles (users) of two accounts are two names: one parameter would give both
        # AWS::IAM::Role resources the same RoleName.
        key = (kind, value, account if kind in ("role", "user") else None)
        if key not in self.names:
            label = {"role": "RoleName", "user": "UserName", "bucket": "BucketName", "key": "KeyId"}[kind]
            base = camel(value[:8]) if kind == "key" else camel(value)
            base = ("Key" + base if kind == "key" else base) + label
            self.names[key] = self._new(base[:255], value, f"{label} ({value} in the trail)")
        return self.names[key]


class _Subst:
    """Turns literal strings of a policy document into ``Fn::Sub`` expressions, recording the parameters used."""

    def __init__(self, params: Parameters) -> None:
        self.params = params
        self.used: set[str] = set()

    def _ref(self, name: str) -> str:
        self.used.add(name)
        return "${" + name + "}"

    def string(self, text: str) -> Any:
        escaped = text.replace("${", "${!")  # IAM policy variables stay literal inside Fn::Sub
        out = self._arn(escaped) if escaped.startswith("arn:") else None
        if out is None:
            out = _ACCOUNT.sub(lambda m: self._ref(self.params.account(m.group(0))), escaped)
        if out == text:
            return text
        return {"Fn::Sub": out}

    def _arn(self, arn: str) -> str | None:
        m = _ROLE_OR_USER.match(arn)
        if m:
            partition, account, kind, path, name = m.groups()
            return (f"arn:{self._partition(partition)}:iam::{self._ref(self.params.account(account))}:{kind}/"
                    f"{path or ''}{self._ref(self.params.name(kind, name, account))}")
        m = _KEY.match(arn)
        if m:
            partition, region, account, key_id = m.groups()
            return (f"arn:{self._partition(partition)}:kms:{region}:{self._ref(self.params.account(account))}:key/"
                    f"{self._ref(self.params.name('key', key_id))}")
        m = _S3.match(arn)
        if m and "*" not in m.group(2):
            partition, bucket, rest = m.groups()
            return f"arn:{self._partition(partition)}:s3:::{self._ref(self.params.name('bucket', bucket))}{rest or ''}"
        m = _ARN.match(arn)
        if m:
            rest = arn[m.end():]
            rest = _ACCOUNT.sub(lambda a: self._ref(self.params.account(a.group(0))), rest)
            return f"arn:{self._partition(m.group(1))}:{rest}"
        return None

    def _partition(self, partition: str) -> str:
        return "${AWS::Partition}"

    def document(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, list):
            return [self.document(v) for v in value]
        if isinstance(value, dict):
            return {k: (v if k in ("Version", "Sid", "Effect") else self.document(v)) for k, v in value.items()}
        return value


@dataclass(kw_only=True, slots=True)
class Unit:
    """One deployable piece: a file name stem and its resources (logical id -> resource)."""

    stem: str
    resources: dict[str, dict[str, Any]]
    used: set[str]
    arn: str  # the role, user, bucket or key the unit deploys
    role_refs: set[str] = field(default_factory=set)  # role/user ARNs its policies name as principals


def _principals(doc: Any) -> set[str]:
    found: set[str] = set()
    for stmt in doc.get("Statement", []):
        aws = stmt.get("Principal", {}).get("AWS") if isinstance(stmt.get("Principal"), dict) else None
        for value in [aws] if isinstance(aws, str) else aws or []:
            found.add(value)
    return found


def units(policy_set: PolicySet, params: Parameters) -> list[Unit]:
    """Every deployable unit of the policy set, in a stable order: roles and users, buckets, keys."""
    out: list[Unit] = []
    trust = {t.role: t.policy for t in policy_set.trust_policies}
    identity = {p.principal: p.policy for p in policy_set.identity_policies}
    for arn in sorted(set(trust) | set(identity)):
        m = _ROLE_OR_USER.match(arn)
        if not m:
            continue
        _, account, kind, path, name = m.groups()
        sub = _Subst(params)
        name_ref = {"Ref": params.name(kind, name, account)}
        sub.used.add(params.name(kind, name, account))
        base = camel(name)
        resources: dict[str, dict[str, Any]] = {}
        if kind == "role" and arn in trust:
            props: dict[str, Any] = {"RoleName": name_ref}
            if path:
                props["Path"] = "/" + path
            props["Description"] = "Least-privilege role written by rolesmith from a CloudTrail trail"
            props["AssumeRolePolicyDocument"] = sub.document(trust[arn])
            if arn in identity:
                props["Policies"] = [{"PolicyName": POLICY_NAME, "PolicyDocument": sub.document(identity[arn])}]
            resources[f"{base}Role"] = {"Type": "AWS::IAM::Role", "Properties": props}
        else:
            attach = "Roles" if kind == "role" else "Users"
            resources[f"{base}Policy"] = {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "Description": f"Least-privilege policy for the existing {kind} {name}, written by rolesmith",
                    attach: [name_ref],
                    "PolicyDocument": sub.document(identity[arn]),
                },
            }
        out.append(Unit(stem=f"{kind}-{name}", resources=resources, used=sub.used, arn=arn))
    for policy in policy_set.resource_policies:
        sub = _Subst(params)
        if policy.kind == "s3-bucket":
            m = _S3.match(policy.resource)
            if not m:
                continue
            bucket = m.group(2)
            pname = params.name("bucket", bucket)
            sub.used.add(pname)
            resources = {f"{camel(bucket)}BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                # A bucket has one policy: deleting the stack would delete it whole, other statements
                # included (AWS::S3::BucketPolicy), so the stack leaves it in place.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {"Bucket": {"Ref": pname}, "PolicyDocument": sub.document(policy.policy)},
            }}
            stem = f"bucket-policy-{bucket}"
        elif policy.kind == "kms-key":
            m = _KEY.match(policy.resource)
            if not m:
                continue
            key_id = m.group(4)
            sub.used.add(params.name("key", key_id))
            resources = {f"Key{camel(key_id[:8])}": {
                "Type": "AWS::KMS::Key",
                # Keys hold data: never delete one because a stack was updated or removed.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "Description": {"Fn::Sub": f"Replaces key ${{{params.name('key', key_id)}}}: key policy written"
                                              " by rolesmith from a CloudTrail trail"},
                    "EnableKeyRotation": True,
                    "KeyPolicy": sub.document(policy.policy),
                },
            }}
            stem = f"kms-key-{key_id}"
        else:
            continue
        out.append(Unit(stem=stem, resources=resources, used=sub.used, arn=policy.resource,
                        role_refs=_principals(policy.policy)))
    _disambiguate(out)
    return out


def _account_of(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 else ""


def _disambiguate(unit_list: list[Unit]) -> None:
    """Make file stems and logical ids unique: same-named roles in two accounts get the account as a
    suffix; names that only differ in case or punctuation (``test-user`` / ``TestUser``) a number."""
    stems = [u.stem.lower() for u in unit_list]
    logicals = [lid for u in unit_list for lid in u.resources]
    for unit in unit_list:
        account = _account_of(unit.arn)
        if stems.count(unit.stem.lower()) > 1 and account:
            unit.stem = f"{unit.stem}-{account}"
        if any(logicals.count(lid) > 1 for lid in unit.resources) and account:
            unit.resources = {f"{lid}{account}": res for lid, res in unit.resources.items()}
    seen_stems: set[str] = set()
    seen_ids: set[str] = set()
    for unit in unit_list:
        stem, n = unit.stem, 2
        while stem.lower() in seen_stems:
            stem, n = f"{unit.stem}-{n}", n + 1
        unit.stem = stem
        seen_stems.add(stem.lower())
        renamed = {}
        for lid, res in unit.resources.items():
            new, n = lid, 2
            while new in seen_ids:
                new, n = f"{lid}{n}", n + 1
            seen_ids.add(new)
            renamed[new] = res
        unit.resources = renamed


def template(unit_list: list[Unit], params: Parameters, policy_set: PolicySet) -> dict[str, Any]:
    """A CloudFormation template (as a dict) deploying ``unit_list``."""
    used: set[str] = set().union(*(u.used for u in unit_list))
    resources: dict[str, dict[str, Any]] = {}
    role_logical: dict[str, str] = {}
    for unit in unit_list:
        for logical, res in unit.resources.items():
            if res["Type"] == "AWS::IAM::Role":
                role_logical[unit.arn] = logical
    for unit in unit_list:
        depends = sorted({role_logical[arn] for arn in unit.role_refs if arn in role_logical})
        for logical, res in unit.resources.items():
            if depends:
                # KMS and S3 reject a policy naming a principal that does not exist yet.
                res = {"Type": res["Type"], "DependsOn": depends, **{k: v for k, v in res.items() if k != "Type"}}
            resources[logical] = res
    parameters = {
        name: {"Type": "String", "Default": params.defaults[name], "Description": params.descriptions[name]}
        for name in sorted(used)
    }
    findings = [{"code": f.code, "message": f.message} for f in policy_set.findings]
    doc: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Least-privilege policies written by rolesmith from what a workload did (CloudTrail).",
    }
    meta: dict[str, Any] = {}
    accounts = sorted({_account_of(u.arn) for u in unit_list} - {""})
    if len(accounts) > 1:
        # A stack deploys into one account: a bucket policy or key of another account fails there
        # (only the bucket owner may set its policy; a key policy must let the deployer manage it).
        meta["accounts"] = accounts
        meta["deploy"] = ("resources of several accounts: deploy each account's part in that account, e.g. from"
                          " `rolesmith build --format cloudformation -o DIR`, which writes one template per role,"
                          " bucket policy and key")
    if findings:
        meta["findings"] = findings
    if meta:
        doc["Metadata"] = {"rolesmith": meta}
    doc["Parameters"] = parameters
    doc["Resources"] = resources
    return doc
