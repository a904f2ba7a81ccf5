"""The role's current permissions: inline and attached managed policies, boundary, trust.

Read with boto3 (IAM GetRole, ListRolePolicies/GetRolePolicy, ListAttachedRolePolicies, GetPolicy +
GetPolicyVersion of the default version) or offline from a ``--current-policies`` directory in the
layout of ``explain --policies`` (``rolesmith.evaluator.policydir``).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from rolesmith.policies.model import Document
from rolesmith.tighten.errors import TightenAwsError, TightenInputError
from rolesmith.tighten.model import CurrentPolicy, CurrentRole

ROLE_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):iam::(?P<account>\d{12}):role/(?:.*/)?(?P<name>[\w+=,.@-]+)$")


def parse_role(role: str) -> tuple[str, str | None, str | None]:
    """``(name, account, arn)`` from a role name or role ARN; account/arn are None for a bare name."""
    m = ROLE_ARN.match(role)
    if m:
        return m["name"], m["account"], role
    if role.startswith("arn:"):
        raise TightenInputError(f"{role}: not a role ARN; pass arn:aws:iam::ACCOUNT:role/NAME or the role name")
    if not re.fullmatch(r"[\w+=,.@-]{1,64}", role):
        raise TightenInputError(f"{role!r}: not a valid role name; pass the role name or its ARN")
    return role, None, None


def policy_document(raw: Any, where: str) -> Document:
    """A policy document from what IAM or a file gives: a dict, JSON text, or URL-encoded JSON text."""
    doc = raw
    if isinstance(raw, str):
        text = raw if raw.lstrip().startswith("{") else urllib.parse.unquote(raw)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise TightenInputError(f"{where}: not valid JSON ({err.msg} at line {err.lineno}); fix the policy document") from err
    if isinstance(doc, dict) and "PolicyVersion" in doc:  # `aws iam get-policy-version` output
        doc = doc["PolicyVersion"].get("Document") if isinstance(doc["PolicyVersion"], dict) else None
        return policy_document(doc, where)
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise TightenInputError(f"{where}: not an IAM policy document (no \"Statement\"); fix the policy file")
    statements = doc["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, dict) and "Effect" in s for s in statements):
        raise TightenInputError(f"{where}: every statement needs an \"Effect\"; fix the policy document")
    return {**doc, "Statement": statements}


def _client(session: Any, name: str) -> Any:
    if session is None:
        import boto3

        session = boto3.Session()
    return session.client(name)


def _aws_error(err: Exception, what: str) -> TightenAwsError:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
    return TightenAwsError(f"{what}: AWS refused ({code}); check the credentials allow it (SecurityAudit suffices)")


def read_role_iam(role: str, *, session: Any = None) -> CurrentRole:
    """Everything in force on the role, from IAM: read-only calls only."""
    from botocore.exceptions import BotoCoreError, ClientError

    name, _account, _arn = parse_role(role)
    iam = _client(session, "iam")
    try:
        info = iam.get_role(RoleName=name)["Role"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchEntity":
            raise TightenInputError(
                f"role {role}: no such role in this account; check the name, the AWS profile, or pass --current-policies DIR"
            ) from err
        raise _aws_error(err, f"iam:GetRole {name}") from err
    except BotoCoreError as err:
        raise TightenAwsError(f"iam:GetRole {name}: {err}; check AWS credentials and region") from err
    arn = info["Arn"]
    policies: list[CurrentPolicy] = []
    try:
        for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
            for pname in page["PolicyNames"]:
                doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
                policies.append(
                    CurrentPolicy(name=pname, kind="inline", document=policy_document(doc, f"{arn} inline policy {pname}"))
                )
        for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for att in page["AttachedPolicies"]:
                policies.append(_managed(iam, att["PolicyArn"]))
        boundary = None
        if info.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn"):
            boundary = _managed(iam, info["PermissionsBoundary"]["PermissionsBoundaryArn"])
    except ClientError as err:
        raise _aws_error(err, f"reading the policies of {arn}") from err
    trust = info.get("AssumeRolePolicyDocument")
    return CurrentRole(
        arn=arn,
        name=name,
        account=arn.split(":")[4],
        policies=tuple(policies),
        boundary=boundary,
        trust=policy_document(trust, f"{arn} trust policy") if trust else None,
        source="iam",
    )


def _managed(iam: Any, policy_arn: str) -> CurrentPolicy:
    meta = iam.get_policy(PolicyArn=policy_arn)["Policy"]
    version = meta["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    kind = "aws-managed" if policy_arn.split(":")[4] == "aws" else "customer-managed"
    return CurrentPolicy(
        name=meta["PolicyName"],
        kind=kind,  # type: ignore[arg-type]
        arn=policy_arn,
        version_id=version,
        document=policy_document(doc, f"{policy_arn} {version}"),
    )


def read_role_dir(role: str, directory: Path) -> CurrentRole:
    """The role's policies from a ``--current-policies`` directory (layout of ``explain --policies``)."""
    from rolesmith.tighten._policydir import read_role_from_dir

    return read_role_from_dir(role, directory)
