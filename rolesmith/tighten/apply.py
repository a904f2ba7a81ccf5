"""``--apply`` and ``--rollback``: write the replacement to IAM, and restore the role exactly.

The backup file is written *before* IAM is changed, so a run that fails half way can still be rolled
back. Trust policy and permissions boundary are never changed.

Two ways to write the replacement:
- the role's only grant is one customer-managed policy attached to nothing else: a new default version
  of it (``CreatePolicyVersion``; rollback sets the old default back and deletes the new version);
- otherwise: an inline policy ``rolesmith-tightened`` replaces the others (attached managed policies
  are detached, other inline policies deleted; rollback puts every one of them back).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolesmith.tighten.errors import TightenAwsError, TightenInputError, VerificationError
from rolesmith.tighten.model import TightenReport

INLINE_NAME = "rolesmith-tightened"
BACKUP_FORMAT = "rolesmith-tighten-backup/1"
# IAM quotas on policy size, whitespace excluded; the inline limit is the aggregate of a role's inline policies
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html).
INLINE_ROLE_LIMIT = 10_240
MANAGED_LIMIT = 6_144
MAX_VERSIONS = 5  # versions a managed policy can have (same page)


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    role: str
    backup: Path
    actions: tuple[str, ...]  # one line per IAM write, in order


def _iam(session: Any) -> Any:
    if session is None:
        import boto3

        session = boto3.Session()
    return session.client("iam")


def _size(doc: dict[str, Any]) -> int:
    return len(json.dumps(doc, separators=(",", ":")).replace(" ", ""))


def snapshot(iam: Any, role_name: str) -> dict[str, Any]:
    """The role's permission-bearing state: inline documents, attached policies, their default versions."""
    inline: dict[str, Any] = {}
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name):
        for name in page["PolicyNames"]:
            inline[name] = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
    attached: list[str] = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name):
        attached += [a["PolicyArn"] for a in page["AttachedPolicies"]]
    defaults = {arn: iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] for arn in attached if ":aws:policy/" not in arn}
    return {"inline_policies": inline, "attached_policies": sorted(attached), "default_versions": defaults}


def apply_replacement(report: TightenReport, backup: Path, *, session: Any = None) -> Change:
    from botocore.exceptions import ClientError

    if not report.verification.ok:
        raise VerificationError(
            f"{report.role}: the replacement denies {len(report.verification.failures)} used call(s); not applied "
            "(see the verification section of the report)"
        )
    if not report.usage.calls:
        raise VerificationError(f"{report.role}: no trail evidence of use; refusing to apply an empty replacement")
    doc = next(p.policy for p in report.replacement.identity_policies if p.principal == report.role)
    if not doc.get("Statement"):
        raise VerificationError(f"{report.role}: the replacement grants nothing (see NOT_GRANTED_BEFORE); not applied")
    if backup.exists():
        raise TightenInputError(f"{backup}: already exists; pass a new backup path so no earlier backup is lost")
    name = report.current.name
    iam = _iam(session)
    try:
        state = snapshot(iam, name)
        role_arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as err:
        raise _refused(err, f"reading {name}") from err
    own = [a for a in state["attached_policies"] if ":aws:policy/" not in a]
    strategy = "managed-version" if len(state["attached_policies"]) == 1 and own and not state["inline_policies"] else "inline"
    if strategy == "managed-version":
        try:
            strategy = _version_strategy(iam, own[0], name)
        except ClientError as err:
            raise _refused(err, f"reading {own[0]}") from err
    limit = MANAGED_LIMIT if strategy == "managed-version" else INLINE_ROLE_LIMIT
    if _size(doc) > limit:
        raise TightenInputError(f"{report.role}: the replacement is {_size(doc)} characters, over IAM's {limit}; "
                                "deploy the CloudFormation output (-o DIR) as managed policies instead")
    record: dict[str, Any] = {
        "format": BACKUP_FORMAT,
        "role": role_arn,
        "role_name": name,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "strategy": strategy,
        **state,
        "written": {},
    }
    backup.parent.mkdir(parents=True, exist_ok=True)
    backup.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    actions: list[str] = []
    text = json.dumps(doc, separators=(",", ":"))
    try:
        if strategy == "managed-version":
            arn = own[0]
            version = iam.create_policy_version(PolicyArn=arn, PolicyDocument=text, SetAsDefault=True)["PolicyVersion"]["VersionId"]
            record["written"] = {"policy_arn": arn, "version_id": version}
            actions.append(f"iam:CreatePolicyVersion {arn} {version} (default)")
        else:
            others = [p for p in state["inline_policies"] if p != INLINE_NAME]
            # The replacement goes in first so the role is never without permissions, unless the role's
            # inline policies together would then exceed IAM's aggregate size: then they go first.
            room = _size(doc) + sum(_size(state["inline_policies"][p]) for p in others) <= INLINE_ROLE_LIMIT

            def delete_others() -> None:
                for other in others:
                    iam.delete_role_policy(RoleName=name, PolicyName=other)
                    actions.append(f"iam:DeleteRolePolicy {name} {other}")

            if not room:
                delete_others()
            iam.put_role_policy(RoleName=name, PolicyName=INLINE_NAME, PolicyDocument=text)
            record["written"] = {"inline_policy": INLINE_NAME}
            actions.append(f"iam:PutRolePolicy {name} {INLINE_NAME}")
            for arn in state["attached_policies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
                actions.append(f"iam:DetachRolePolicy {name} {arn}")
            if room:
                delete_others()
    except ClientError as err:
        raise _refused(err, f"writing {name} (roll back with --rollback {backup})") from err
    finally:
        backup.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return Change(role=role_arn, backup=backup, actions=tuple(actions))


def _version_strategy(iam: Any, arn: str, role_name: str) -> str:
    """``managed-version`` only when the policy is this role's alone and has room for a new version."""
    users = iam.list_entities_for_policy(PolicyArn=arn)
    roles = [r["RoleName"] for r in users.get("PolicyRoles", [])]
    if roles != [role_name] or users.get("PolicyUsers") or users.get("PolicyGroups"):
        return "inline"  # a new version would change every other principal it is attached to
    versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
    if len(versions) >= MAX_VERSIONS:
        raise TightenInputError(
            f"{arn}: has {len(versions)} versions, IAM's maximum; delete a non-default version first "
            "(--apply never deletes one: --rollback could not restore it)"
        )
    return "managed-version"


def load_backup(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise TightenInputError(f"{path}: no such backup file; pass the file --apply wrote") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TightenInputError(f"{path}: not valid JSON; pass the backup file --apply wrote, unedited") from err
    required = ("role_name", "strategy", "inline_policies", "attached_policies", "default_versions", "written")
    if not isinstance(record, dict) or record.get("format") != BACKUP_FORMAT or any(k not in record for k in required):
        raise TightenInputError(f"{path}: not a rolesmith tighten backup ({BACKUP_FORMAT}); pass the file --apply wrote")
    return record


def rollback(backup: Path, *, session: Any = None) -> Change:
    """Put the role back exactly as the backup recorded it."""
    from botocore.exceptions import ClientError

    record = load_backup(backup)
    name = record["role_name"]
    iam = _iam(session)
    actions: list[str] = []
    try:
        now = snapshot(iam, name)
        written = record["written"]
        for arn, version in record["default_versions"].items():
            if now["default_versions"].get(arn, version) != version:
                iam.set_default_policy_version(PolicyArn=arn, VersionId=version)
                actions.append(f"iam:SetDefaultPolicyVersion {arn} {version}")
        if written.get("version_id"):
            iam.delete_policy_version(PolicyArn=written["policy_arn"], VersionId=written["version_id"])
            actions.append(f"iam:DeletePolicyVersion {written['policy_arn']} {written['version_id']}")
        for pname, doc in sorted(record["inline_policies"].items()):
            if now["inline_policies"].get(pname) != doc:
                iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=json.dumps(doc))
                actions.append(f"iam:PutRolePolicy {name} {pname}")
        for pname in sorted(set(now["inline_policies"]) - set(record["inline_policies"])):
            iam.delete_role_policy(RoleName=name, PolicyName=pname)
            actions.append(f"iam:DeleteRolePolicy {name} {pname}")
        for arn in record["attached_policies"]:
            if arn not in now["attached_policies"]:
                iam.attach_role_policy(RoleName=name, PolicyArn=arn)
                actions.append(f"iam:AttachRolePolicy {name} {arn}")
        for arn in now["attached_policies"]:
            if arn not in record["attached_policies"]:
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
                actions.append(f"iam:DetachRolePolicy {name} {arn}")
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code == "NoSuchEntity" and not actions:
            raise TightenInputError(f"{backup}: role {name} no longer exists; nothing to restore") from err
        raise _refused(err, f"restoring {name} from {backup}") from err
    return Change(role=record.get("role", name), backup=backup, actions=tuple(actions))


def _refused(err: Exception, what: str) -> TightenAwsError:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
    return TightenAwsError(f"{what}: AWS refused ({code}); check the credentials allow IAM writes on the role")
