"""Create the scenario's resources in moto, each in its owner's account.

moto runs in this process, so the resources are created through its backends directly (the same
objects its server answers from): an HTTP round trip and a boto3 client per service would triple
the sandbox's start time. KMS keys get the scenario's deterministic key ids so policies in the YAML
can name their ARNs.
"""

from __future__ import annotations

import json

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
        from moto.kms.models import kms_backends

        for k in scenario.keys:
            kms = kms_backends[k.account][region]
            key = kms.create_key(json.dumps(k.policy), "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT",
                                 f"rolesmith sandbox key {k.name}", None)
            kms.keys.pop(key.id)
            key.id = k.key_id
            key.arn = k.arn
            kms.keys[key.id] = key
            for alias in k.aliases:
                kms.create_alias(key.id, alias)
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
