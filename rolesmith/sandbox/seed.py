"""Create the scenario's resources in moto, each in its owner's account.

moto runs in this process, so the resources are created through its backends directly (the same
objects its server answers from): an HTTP round trip and a boto3 client per service would triple
the sandbox's start time. KMS keys get the scenario's deterministic key ids so policies in the YAML
can name their ARNs.
"""

from __future__ import annotations

import json
from typing import Any

from rolesmith.sandbox.scenario import Scenario


def seed(scenario: Scenario) -> None:
    region = scenario.region
    if scenario.principals:
        from moto.iam.models import iam_backends

        for p in scenario.principals:
            iam = iam_backends[p.account]["aws"]
            if p.kind == "role":
                iam.create_role(p.name, json.dumps(p.trust), p.path, None, "", [], None)
                if p.instance_profile:
                    iam.create_instance_profile(p.name, p.path, [p.name])
            else:
                iam.create_user(region, p.name, p.path)
    if scenario.keys:
        import moto.kms.models as kms_models

        # moto draws an RSA-2048 key pair for every key, symmetric ones included (~0.2 s each), used
        # only by asymmetric Sign/Verify/GetPublicKey: defer it to first use.
        real = kms_models.generate_private_key
        kms_models.generate_private_key = lambda spec: _Deferred(real, spec)  # type: ignore[assignment]
        try:
            for k in scenario.keys:
                kms = kms_models.kms_backends[k.account][region]
                key = kms.create_key(json.dumps(k.policy), "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT",
                                     f"rolesmith sandbox key {k.name}", None)
                kms.keys.pop(key.id)
                key.id = k.key_id
                key.arn = k.arn
                kms.keys[key.id] = key
                for alias in k.aliases:
                    kms.create_alias(key.id, alias)
        finally:
            kms_models.generate_private_key = real  # type: ignore[assignment]
    if scenario.buckets:
        from moto.s3.models import s3_backends

        for b in scenario.buckets:
            s3 = s3_backends[b.account]["aws"]
            s3.create_bucket(b.name, region)
            s3.put_bucket_ownership_controls(b.name, b.object_ownership)  # type: ignore[arg-type]
            if b.policy:
                s3.put_bucket_policy(b.name, json.dumps(b.policy).encode())
            if b.encryption:
                rule = {"SSEAlgorithm": "AES256"} if b.encryption == "AES256" else {
                    "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": b.encryption}
                s3.put_bucket_encryption(b.name, {"Rule": {"ApplyServerSideEncryptionByDefault": rule}})
    if scenario.queues:
        from moto.sqs.models import sqs_backends

        for q in scenario.queues:
            attrs = {"Policy": json.dumps(q.policy)} if q.policy else {}
            sqs_backends[q.account][region].create_queue(q.name, **attrs)


class _Deferred:
    """A moto private key generated on first use."""

    def __init__(self, make: Any, spec: str) -> None:
        self._make, self._spec, self._key = make, spec, None

    def __getattr__(self, name: str) -> Any:
        if self._key is None:
            self._key = self._make(self._spec)
        return getattr(self._key, name)
