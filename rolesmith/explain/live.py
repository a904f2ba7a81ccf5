"""``explain --live``: the policies in force, fetched read-only with boto3.

Only Get/List/Describe calls (all in the SecurityAudit managed policy) plus sts:DecodeAuthorizationMessage:
IAM role/user inline, attached and group policies and permissions boundaries; S3 GetBucketPolicy,
GetBucketOwnershipControls, GetObjectAcl/GetBucketAcl; KMS GetKeyPolicy; SQS/SNS/Secrets Manager/Lambda
resource policies; role trust policies; Organizations SCPs/RCPs along the OU path. What cannot be read
(another account's principal, Organizations outside the management account, AccessDenied) is recorded
per request and surfaces in ``Explanation.missing``.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Mapping

from rolesmith.errors import RolesmithError
from rolesmith.evaluator.model import NamedPolicy, Policies, Request


class LiveError(RolesmithError):
    exit_code = 2


def _doc(value: Any) -> Mapping[str, Any] | None:
    """IAM returns documents URL-encoded JSON (boto3 usually decodes them already)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value
    text = str(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(urllib.parse.unquote(text))


def _code(err: Exception) -> str:
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else type(err).__name__


def session_for(profile: str | None) -> Any:
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.Session(profile_name=profile) if profile else boto3.Session()
    except ProfileNotFound:
        raise LiveError(f"--profile {profile}: no such AWS profile; list them with `aws configure list-profiles`") from None


class LiveStore:
    """``policies_for(request)`` from the account the ``session`` reaches; caches every fetch."""

    def __init__(self, session: Any = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._session = session if session is not None else session_for(None)
        self._errors: tuple[type[Exception], ...] = (ClientError, BotoCoreError)
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._gaps: dict[tuple[str, str, str], list[str]] = {}
        self._current: list[str] = []

    def check(self) -> str:
        """The account the credentials reach; fail fast and clearly when there are none."""
        from botocore.exceptions import ClientError, NoCredentialsError

        try:
            return str(self._client("sts").get_caller_identity()["Account"])
        except NoCredentialsError:
            raise LiveError("--live: no AWS credentials found; pass --profile NAME or set AWS_PROFILE / "
                            "AWS_ACCESS_KEY_ID") from None
        except ClientError as err:
            raise LiveError(f"--live: sts:GetCallerIdentity failed ({_code(err)}); check the credentials") from None

    # ---------------------------------------------------------------- plumbing

    def _client(self, service: str, region: str | None = None) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self._session.client(service, region_name=region) if region else self._session.client(service)
        return self._clients[key]

    def _fetch(self, key: tuple[Any, ...], what: str, call: Any) -> Any:
        if key in self._cache:
            return self._cache[key]
        try:
            value = call()
        except self._errors as err:
            code = _code(err)
            if code not in ("NoSuchBucketPolicy", "NoSuchEntity", "ResourceNotFoundException",
                            "OwnershipControlsNotFoundError", "NotFoundException",
                            "AWSOrganizationsNotInUseException"):
                self._current.append(f"{what}: {code or 'error'} (read-only access to it is needed)")
            value = None
        self._cache[key] = value
        return value

    def gaps_for(self, request: Request) -> tuple[str, ...]:
        return tuple(self._gaps.get((request.principal, request.action, request.resource), ()))

    # ---------------------------------------------------------------- identity side

    def _managed(self, arn: str) -> NamedPolicy | None:
        iam = self._client("iam")

        def get() -> NamedPolicy:
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
            return NamedPolicy(name=arn, document=_doc(document) or {})

        return self._fetch(("managed", arn), f"iam:GetPolicyVersion {arn}", get)

    def _identity(self, principal: str) -> tuple[tuple[NamedPolicy, ...], NamedPolicy | None]:
        iam = self._client("iam")
        name = principal.rsplit("/", 1)[-1]

        def role() -> tuple[tuple[NamedPolicy, ...], str | None]:
            out = []
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
                for pname in page["PolicyNames"]:
                    doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
                    out.append(NamedPolicy(name=f"{principal}/inline/{pname}", document=_doc(doc) or {}))
            arns = [p["PolicyArn"] for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name)
                    for p in page["AttachedPolicies"]]
            boundary = iam.get_role(RoleName=name)["Role"].get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
            return tuple(out) + tuple(p for p in map(self._managed, arns) if p), boundary

        def user() -> tuple[tuple[NamedPolicy, ...], str | None]:
            out = []
            for pname in iam.list_user_policies(UserName=name)["PolicyNames"]:
                doc = iam.get_user_policy(UserName=name, PolicyName=pname)["PolicyDocument"]
                out.append(NamedPolicy(name=f"{principal}/inline/{pname}", document=_doc(doc) or {}))
            arns = [p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]]
            for group in iam.list_groups_for_user(UserName=name)["Groups"]:
                g = group["GroupName"]
                for pname in iam.list_group_policies(GroupName=g)["PolicyNames"]:
                    doc = iam.get_group_policy(GroupName=g, PolicyName=pname)["PolicyDocument"]
                    out.append(NamedPolicy(name=f"group/{g}/inline/{pname}", document=_doc(doc) or {}))
                arns += [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=g)["AttachedPolicies"]]
            boundary = iam.get_user(UserName=name)["User"].get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
            return tuple(out) + tuple(p for p in map(self._managed, arns) if p), boundary

        if ":role/" in principal:
            got = self._fetch(("identity", principal), f"IAM policies of {principal}", role)
        elif ":user/" in principal:
            got = self._fetch(("identity", principal), f"IAM policies of {principal}", user)
        else:
            got = None
        if not got:
            return (), None
        policies, boundary_arn = got
        return policies, self._managed(boundary_arn) if boundary_arn else None

    # ---------------------------------------------------------------- organizations

    def _org_levels(self, account: str, kind: str) -> tuple[tuple[NamedPolicy, ...], ...]:
        org = self._client("organizations")

        def levels() -> tuple[tuple[NamedPolicy, ...], ...]:
            chain = [account]
            child = account
            while True:
                parents = org.list_parents(ChildId=child)["Parents"]
                if not parents:
                    break
                child = parents[0]["Id"]
                chain.append(child)
                if parents[0]["Type"] == "ROOT":
                    break
            out = []
            for target in reversed(chain):  # root first
                summaries = org.list_policies_for_target(TargetId=target, Filter=kind)["Policies"]
                level = []
                for s in summaries:
                    content = org.describe_policy(PolicyId=s["Id"])["Policy"]["Content"]
                    level.append(NamedPolicy(name=s.get("Arn") or s["Id"], document=_doc(content) or {}))
                out.append(tuple(level))
            return tuple(out)

        return self._fetch(("org", account, kind), f"Organizations {kind} for {account}", levels) or ()

    def _organization(self) -> Mapping[str, Any] | None:
        org = self._client("organizations")
        return self._fetch(("org",), "organizations:DescribeOrganization",
                           lambda: org.describe_organization()["Organization"])

    # ---------------------------------------------------------------- resource side

    def _resource(self, request: Request) -> tuple[NamedPolicy | None, str | None]:
        arn = request.resource
        parts = arn.split(":", 5)
        if len(parts) != 6:
            return None, None
        service, region, account, rest = parts[2], parts[3] or None, parts[4], parts[5]
        if service == "iam" and rest.startswith("role/") and request.action.lower().startswith("sts:assumerole"):
            iam = self._client("iam")
            name = rest.rsplit("/", 1)[-1]
            doc = self._fetch(("trust", arn), f"iam:GetRole {arn}",
                              lambda: iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"])
            return (NamedPolicy(name=f"{arn}/trust", document=_doc(doc)) if doc else None), "role-trust"
        if service == "s3":
            bucket = rest.split("/", 1)[0]
            s3 = self._client("s3")
            doc = self._fetch(("s3", bucket), f"s3:GetBucketPolicy {bucket}",
                              lambda: s3.get_bucket_policy(Bucket=bucket)["Policy"])
            return (NamedPolicy(name=f"arn:aws:s3:::{bucket}/policy", document=_doc(doc)) if doc else None), "s3-bucket"
        if service == "kms":
            kms = self._client("kms", region)
            doc = self._fetch(("kms", arn), f"kms:GetKeyPolicy {arn}",
                              lambda: kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
            return (NamedPolicy(name=f"{arn}/default", document=_doc(doc)) if doc else None), "kms-key"
        if service == "sqs":
            sqs = self._client("sqs", region)
            url = f"https://sqs.{region}.amazonaws.com/{account}/{rest}"
            doc = self._fetch(("sqs", arn), f"sqs:GetQueueAttributes {arn}",
                              lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
                              .get("Attributes", {}).get("Policy"))
            return (NamedPolicy(name=f"{arn}/policy", document=_doc(doc)) if doc else None), "sqs-queue"
        if service == "sns":
            sns = self._client("sns", region)
            doc = self._fetch(("sns", arn), f"sns:GetTopicAttributes {arn}",
                              lambda: sns.get_topic_attributes(TopicArn=arn)["Attributes"].get("Policy"))
            return (NamedPolicy(name=f"{arn}/policy", document=_doc(doc)) if doc else None), "sns-topic"
        if service == "secretsmanager":
            sm = self._client("secretsmanager", region)
            doc = self._fetch(("sm", arn), f"secretsmanager:GetResourcePolicy {arn}",
                              lambda: sm.get_resource_policy(SecretId=arn).get("ResourcePolicy"))
            return (NamedPolicy(name=f"{arn}/policy", document=_doc(doc)) if doc else None), "secretsmanager-secret"
        if service == "lambda":
            lam = self._client("lambda", region)
            fn = rest.split(":")[1] if rest.startswith("function:") else rest
            doc = self._fetch(("lambda", arn), f"lambda:GetPolicy {arn}", lambda: lam.get_policy(FunctionName=fn)["Policy"])
            return (NamedPolicy(name=f"{arn}/policy", document=_doc(doc)) if doc else None), "lambda-function"
        return None, service

    # ---------------------------------------------------------------- the store interface

    def policies_for(self, request: Request) -> Policies:
        self._current = []
        identity, boundary = self._identity(request.principal)
        resource, kind = self._resource(request)
        scps: tuple[tuple[NamedPolicy, ...], ...] = ()
        rcps: tuple[tuple[NamedPolicy, ...], ...] = ()
        org = self._organization()
        resource_account = request.resource_account or request.principal_account
        if org:
            scps = self._org_levels(request.principal_account, "SERVICE_CONTROL_POLICY")
            rcps = self._org_levels(resource_account, "RESOURCE_CONTROL_POLICY")
        management = org.get("MasterAccountId") if org else None
        self._gaps[(request.principal, request.action, request.resource)] = list(self._current)
        # SCPs do not apply to the management account, RCPs not to its resources (orgs_manage_policies_scps.html).
        return Policies(identity=identity, boundary=boundary, scps=scps, rcps=rcps, resource=resource,
                        resource_kind=kind, service_linked_role="/aws-service-role/" in request.principal,
                        management_account=management == request.principal_account,
                        resource_management_account=management == resource_account)

    def account_of(self, arn: str) -> str | None:
        """The owner of a bucket the credentials' account holds (S3 ARNs carry no account)."""
        if ":s3:::" not in arn:
            return None
        bucket = arn.split(":::", 1)[1].split("/", 1)[0]
        sts, s3 = self._client("sts"), self._client("s3")
        me = self._fetch(("me",), "sts:GetCallerIdentity", lambda: sts.get_caller_identity()["Account"])
        names = self._fetch(("buckets",), "s3:ListAllMyBuckets", lambda: {b["Name"] for b in s3.list_buckets()["Buckets"]})
        return me if names and bucket in names else None

    def object_ownership(self, bucket: str, key: str) -> tuple[str, str, str] | None:
        """(object owner id, bucket owner id, ObjectOwnership setting), or None when unreadable."""
        s3 = self._client("s3")
        obj = self._fetch(("oacl", bucket, key), f"s3:GetObjectAcl {bucket}/{key}",
                          lambda: s3.get_object_acl(Bucket=bucket, Key=key)["Owner"]["ID"])
        own = self._fetch(("bacl", bucket), f"s3:GetBucketAcl {bucket}",
                          lambda: s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"])
        ctl = self._fetch(("octl", bucket), f"s3:GetBucketOwnershipControls {bucket}",
                          lambda: s3.get_bucket_ownership_controls(Bucket=bucket)
                          ["OwnershipControls"]["Rules"][0]["ObjectOwnership"])
        if obj is None or own is None:
            return None
        # No ownership controls: the pre-2023 default, object writer owns (s3-ug__about-object-ownership.md).
        return obj, own, ctl or "ObjectWriter"

    def decode(self, encoded: str) -> Mapping[str, Any] | None:
        """EC2's "Encoded authorization failure message", decoded by sts:DecodeAuthorizationMessage."""
        sts = self._client("sts")
        text = self._fetch(("decode", encoded), "sts:DecodeAuthorizationMessage",
                           lambda: sts.decode_authorization_message(EncodedMessage=encoded)["DecodedMessage"])
        if not text:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, Mapping) else None
