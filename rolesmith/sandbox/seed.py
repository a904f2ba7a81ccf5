"""Create the scenario's resources in moto, each in its owner's account, service by service on first need.

moto runs in this process, so the resources are created through its backends directly (the same
objects its server answers from): an HTTP round trip and a boto3 client per service would triple
the sandbox's start time. KMS keys get the scenario's deterministic key ids so policies in the YAML
can name their ARNs.

Enforcement never reads moto: it reads the ``World`` built from the scenario. moto's copy is only
needed when a request is forwarded to a moto service that reads it, so each service is seeded just
before the first such request (``Seeder.ensure_for``). Seeding everything at start cost more than
the rest of the start together: moto's IAM models import ``cryptography.x509`` and every regional
backend (KMS, SQS) resolves botocore's endpoint data for its region list.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from rolesmith.errors import RolesmithError
from rolesmith.sandbox.scenario import Scenario

SERVICES = ("iam", "kms", "s3", "sqs")  # the moto services a scenario declares resources in

# moto backends a forwarded request may read besides its own service's. S3 delivers event
# notifications to SQS queues. Services not listed here (and not in SERVICES) get every backend
# seeded first: EC2 reads IAM instance profiles, EMR roles, CloudFormation anything.
_ALSO_READS = {"s3": ("sqs",)}


class SeedError(RolesmithError):
    """moto refused to create a scenario resource (the scenario itself was validated on load)."""


def needs(service: str) -> tuple[str, ...]:
    """The seeded moto services a request forwarded to ``service`` may read."""
    if service in SERVICES:
        return (service, *_ALSO_READS.get(service, ()))
    return SERVICES


class Seeder:
    """Seeds each moto service once, the first time a forwarded request needs it. Thread-safe: a
    request waits only for the services it needs, never for another service's seeding."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._locks = {s: threading.Lock() for s in SERVICES}
        self._done: set[str] = set()

    def ensure_for(self, service: str) -> None:
        self.ensure(needs(service))

    def ensure(self, services: tuple[str, ...] = SERVICES) -> None:
        for name in services:
            if name in self._done:
                continue
            with self._locks[name]:  # one lock at a time: no ordering to get wrong
                if name not in self._done:
                    try:
                        _SEED[name](self.scenario)
                    except Exception as err:  # moto's own error: name the scenario and the service
                        raise SeedError(f"{self.scenario.source}: cannot create the scenario's {name} resources in "
                                        f"moto ({type(err).__name__}: {err}); check the moto version") from err
                    finally:
                        self._done.add(name)  # a second attempt would only fail on what the first created


def _seed_iam(scenario: Scenario) -> None:
    if not scenario.principals:
        return
    from moto.iam.models import iam_backends

    for p in scenario.principals:
        iam = iam_backends[p.account]["aws"]
        if p.kind == "role":
            iam.create_role(p.name, json.dumps(p.trust), p.path, None, "", [], None)
            if p.instance_profile:
                iam.create_instance_profile(p.name, p.path, [p.name])
        else:
            iam.create_user(scenario.region, p.name, p.path)
        # As inline policies, the form the sandbox reports them in: so that a forwarded
        # DeleteRolePolicy of a scenario policy finds it.
        for name, doc in p.policies.items():
            if p.kind == "role":
                iam.put_role_policy(p.name, name, json.dumps(doc))
            else:
                iam.put_user_policy(p.name, name, json.dumps(doc))


def _seed_kms(scenario: Scenario) -> None:
    if not scenario.keys:
        return
    import moto.kms.models as kms_models

    # moto draws an RSA-2048 key pair for every key, symmetric ones included (~0.2 s each), used
    # only by asymmetric Sign/Verify/GetPublicKey: defer it to first use.
    real = kms_models.generate_private_key
    kms_models.generate_private_key = lambda spec: _Deferred(real, spec)  # type: ignore[assignment]
    try:
        for k in scenario.keys:
            kms = kms_models.kms_backends[k.account][scenario.region]
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


def _seed_s3(scenario: Scenario) -> None:
    if not scenario.buckets:
        return
    from moto.s3.models import s3_backends

    for b in scenario.buckets:
        s3 = s3_backends[b.account]["aws"]
        s3.create_bucket(b.name, scenario.region)
        s3.put_bucket_ownership_controls(b.name, b.object_ownership)  # type: ignore[arg-type]
        if b.policy:
            s3.put_bucket_policy(b.name, json.dumps(b.policy).encode())
        if b.encryption:
            rule = {"SSEAlgorithm": "AES256"} if b.encryption == "AES256" else {
                "SSEAlgorithm": "aws:kms", "KMSMasterKeyID": b.encryption}
            s3.put_bucket_encryption(b.name, {"Rule": {"ApplyServerSideEncryptionByDefault": rule}})


def _seed_sqs(scenario: Scenario) -> None:
    if not scenario.queues:
        return
    from moto.sqs.models import sqs_backends

    for q in scenario.queues:
        attrs = {"Policy": json.dumps(q.policy)} if q.policy else {}
        sqs_backends[q.account][scenario.region].create_queue(q.name, **attrs)


_SEED: dict[str, Callable[[Scenario], None]] = {"iam": _seed_iam, "kms": _seed_kms, "s3": _seed_s3, "sqs": _seed_sqs}


class _Deferred:
    """A moto private key generated on first use."""

    def __init__(self, make: Any, spec: str) -> None:
        self._make, self._spec, self._key = make, spec, None

    def __getattr__(self, name: str) -> Any:
        if self._key is None:
            self._key = self._make(self._spec)
        return getattr(self._key, name)
