"""Converge against an AWS account: the role's policies are snapshotted before the first change and
put back exactly (inline documents, attached managed policies, edited bucket/key policies) on an
abort — Ctrl-C, an error, ``--max-runs`` exhausted — unless ``--keep``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote

from rolesmith.converge.model import INLINE_NAME, ConvergeError, ConvergeOptions


def _doc(value: Any) -> dict[str, Any]:
    # IAM returns documents URL-encoded through the raw API; boto3 decodes JSON for most, not all.
    if isinstance(value, str):
        return json.loads(unquote(value))
    return dict(value)


class AwsBackend:
    def __init__(self, options: ConvergeOptions) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors = (ClientError, BotoCoreError)
        self._options = options
        if options.session is not None:
            self._session = options.session
        else:
            from rolesmith.explain.live import session_for

            self._session = session_for(options.profile)
        self._iam = self._session.client("iam")
        name = options.role.rsplit("/", 1)[-1] if options.role.startswith("arn:") else options.role
        try:
            role = self._iam.get_role(RoleName=name)["Role"]
        except self._errors as err:
            raise ConvergeError(f"--role {options.role}: cannot read the role ({_code(err)}); give a role name or "
                                "ARN the profile's credentials may read with iam:GetRole") from None
        self.role_name: str = role["RoleName"]
        self.role_arn: str = role["Arn"]
        self._inline: dict[str, dict[str, Any]] | None = None
        self._attached: list[str] | None = None
        self._resources: dict[tuple[str, str], str | None] = {}  # original resource policies (JSON text)
        self._current: dict[str, Any] | None = None
        self._simulate = True  # until SimulatePrincipalPolicy proves unavailable
        self._sleep = options.sleep or time.sleep
        self._clock = options.clock or time.monotonic

    # -- snapshot / restore ------------------------------------------------------------------
    def _snapshot(self) -> None:
        inline: dict[str, dict[str, Any]] = {}
        for page in self._iam.get_paginator("list_role_policies").paginate(RoleName=self.role_name):
            for pname in page["PolicyNames"]:
                doc = self._iam.get_role_policy(RoleName=self.role_name, PolicyName=pname)["PolicyDocument"]
                inline[pname] = _doc(doc)
        attached: list[str] = []
        for page in self._iam.get_paginator("list_attached_role_policies").paginate(RoleName=self.role_name):
            attached += [p["PolicyArn"] for p in page["AttachedPolicies"]]
        self._inline, self._attached = inline, attached

    def prepare(self, initial: Mapping[str, Any] | None, start_from: str) -> None:
        self._snapshot()  # before the first change, always
        assert self._inline is not None and self._attached is not None
        if start_from in ("empty", "recording"):
            for pname in self._inline:
                self._iam.delete_role_policy(RoleName=self.role_name, PolicyName=pname)
            for arn in self._attached:
                self._iam.detach_role_policy(RoleName=self.role_name, PolicyArn=arn)
        else:
            self._current = self._inline.get(INLINE_NAME)
        if initial is not None:
            self.put_identity(initial)

    def finish(self, converged: bool) -> bool:
        if converged or self._options.keep or self._inline is None or self._attached is None:
            return False
        self.restore()
        return True

    def restore(self) -> None:
        """Put the snapshot back exactly: drop what converge added, re-put every original document."""
        assert self._inline is not None and self._attached is not None
        now = set(self._iam.list_role_policies(RoleName=self.role_name)["PolicyNames"])
        for pname in sorted(now - set(self._inline)):
            self._iam.delete_role_policy(RoleName=self.role_name, PolicyName=pname)
        for pname, doc in self._inline.items():
            self._iam.put_role_policy(RoleName=self.role_name, PolicyName=pname, PolicyDocument=json.dumps(doc))
        attached = {p["PolicyArn"] for p in self._iam.list_attached_role_policies(RoleName=self.role_name)["AttachedPolicies"]}
        for arn in sorted(attached - set(self._attached)):
            self._iam.detach_role_policy(RoleName=self.role_name, PolicyArn=arn)
        for arn in self._attached:
            if arn not in attached:
                self._iam.attach_role_policy(RoleName=self.role_name, PolicyArn=arn)
        for (layer, target), text in self._resources.items():
            self._put_resource_text(layer, target, text)

    # -- identity ------------------------------------------------------------------------------
    def identity_document(self) -> Mapping[str, Any] | None:
        return self._current

    def put_identity(self, document: Mapping[str, Any]) -> None:
        self._iam.put_role_policy(RoleName=self.role_name, PolicyName=INLINE_NAME, PolicyDocument=json.dumps(document))
        self._current = dict(document)

    def wait(self, statements: Sequence[Mapping[str, Any]]) -> None:
        """Poll until IAM serves the new document and (where the API exists) SimulatePrincipalPolicy
        allows each added action on its resource: IAM is eventually consistent
        (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency)."""
        deadline = self._clock() + self._options.propagation_timeout
        pairs = sorted({(str(a), str(r)) for st in statements for a in _list(st.get("Action"))
                        for r in _list(st.get("Resource"))})
        while True:
            served = _doc(self._iam.get_role_policy(RoleName=self.role_name, PolicyName=INLINE_NAME)["PolicyDocument"])
            ok = served == self._current
            if ok and self._simulate and pairs:
                try:
                    ok = self._simulated(pairs)
                except (*self._errors, NotImplementedError):  # moto in-process raises NotImplementedError
                    # No simulator here (or no right to call it): the served document is the probe.
                    self._simulate = False  # no simulator (or no right to it): the served document is the probe
            if ok:
                return
            if self._clock() >= deadline:
                raise ConvergeError(f"{self.role_arn}: {INLINE_NAME} not in effect after "
                                    f"{self._options.propagation_timeout:.0f} s; retry, or raise the wait")
            self._sleep(self._options.poll_interval)

    def _simulator(self) -> Any:
        from botocore.config import Config

        # An optional confirmation: one attempt, no retries (the served document is the fallback probe).
        return self._session.client("iam", config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    def _simulated(self, pairs: Sequence[tuple[str, str]]) -> bool:
        conditional = {(str(a), str(r)) for st in (self._current or {}).get("Statement", []) if "Condition" in st
                       for a in _list(st.get("Action")) for r in _list(st.get("Resource"))}
        for action, resource in pairs:
            res = self._simulator().simulate_principal_policy(PolicySourceArn=self.role_arn, ActionNames=[action],
                                                      ResourceArns=[resource])
            # The simulator is not given condition keys such as kms:ViaService, so it answers
            # implicitDeny for a conditional statement that will allow: the served document decides those.
            if (action, resource) not in conditional and not all(
                    r["EvalDecision"] == "allowed" for r in res["EvaluationResults"]):
                return False
        return True

    # -- resource policies (only with --apply-resource-policies) -------------------------------
    def resource_document(self, layer: str, target: str) -> Mapping[str, Any] | None:
        text = self._resource_text(layer, target)
        self._resources.setdefault((layer, target), text)
        return json.loads(text) if text else None

    def _resource_text(self, layer: str, target: str) -> str | None:
        if target.startswith("arn:aws:s3:::"):
            try:
                return str(self._session.client("s3").get_bucket_policy(Bucket=target[13:].split("/")[0])["Policy"])
            except self._errors as err:
                if _code(err) == "NoSuchBucketPolicy":
                    return None
                raise
        if target.startswith("arn:aws:kms:"):
            kms = self._session.client("kms", region_name=target.split(":")[3])
            return str(kms.get_key_policy(KeyId=target, PolicyName="default")["Policy"])
        if layer == "trust-policy":
            return json.dumps(_doc(self._iam.get_role(RoleName=target.rsplit("/", 1)[-1])["Role"]["AssumeRolePolicyDocument"]))
        raise ConvergeError(f"{target}: converge edits bucket, key and trust policies only; hand this fix to its owner")

    def _put_resource_text(self, layer: str, target: str, text: str | None) -> None:
        if target.startswith("arn:aws:s3:::"):
            s3 = self._session.client("s3")
            bucket = target[13:].split("/")[0]
            if text is None:
                s3.delete_bucket_policy(Bucket=bucket)
            else:
                s3.put_bucket_policy(Bucket=bucket, Policy=text)
        elif target.startswith("arn:aws:kms:"):
            if text is not None:
                kms = self._session.client("kms", region_name=target.split(":")[3])
                kms.put_key_policy(KeyId=target, PolicyName="default", Policy=text)
        elif layer == "trust-policy" and text is not None:
            self._iam.update_assume_role_policy(RoleName=target.rsplit("/", 1)[-1], PolicyDocument=text)

    def put_resource(self, layer: str, target: str, document: Mapping[str, Any]) -> None:
        # docs.merge keeps every existing statement, so a key policy keeps its administration statement.
        self._resources.setdefault((layer, target), self._resource_text(layer, target))
        self._put_resource_text(layer, target, json.dumps(document))

    def put_ownership(self, bucket: str, ownership: str) -> None:
        raise ConvergeError(f"bucket {bucket}: converge does not change Object Ownership on AWS; ask the bucket's "
                            f"owner to set {ownership}")

    def bucket_key(self, bucket: str) -> str | None:
        try:
            rules = self._session.client("s3").get_bucket_encryption(Bucket=bucket)[
                "ServerSideEncryptionConfiguration"]["Rules"]
        except self._errors:
            return None  # not ours to read, or no default encryption: the next run names the key
        for rule in rules:
            key = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("KMSMasterKeyID")
            if key and key.startswith("arn:aws:kms:"):
                return str(key)
        return None

    # -- runs ----------------------------------------------------------------------------------
    def _credentials(self) -> dict[str, str]:
        sts = self._session.client("sts")
        try:
            creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="rolesmith-converge")["Credentials"]
        except self._errors as err:
            raise ConvergeError(f"{self.role_arn}: sts:AssumeRole failed ({_code(err)}); the profile's principal "
                                "must be trusted by the role") from None
        region = self._session.region_name or "us-east-1"
        return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"], "AWS_REGION": region, "AWS_DEFAULT_REGION": region}

    def run(self, command: Sequence[str], run_dir: Path) -> tuple[int, int | None, Path]:
        from rolesmith.record import RecordOptions, record

        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self._options.env if self._options.env is not None else os.environ)
        for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"):
            env.pop(var, None)
        env.update(self._credentials())  # the child gets the role's session and nothing else
        result = record(command, RecordOptions(out_dir=run_dir, env=env, cwd=self._options.cwd,
                                               capture=self._options.capture or "auto",  # type: ignore[arg-type]
                                               build=self._options.build))
        return result.exit_code, result.signal, result.recording

    def store(self) -> Any:
        from rolesmith.explain.live import LiveStore

        return LiveStore(self._session)

    def close(self) -> None:
        return None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]


def _code(err: Exception) -> str:
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, Mapping) else type(err).__name__
