"""The one table of per-service exceptions, keyed by IAM service prefix.

Each module holds the documented exceptions of one service, each with a fixture case under
``fixtures/events/<service>/`` citing the AWS documentation. Everything not listed here goes
through the generic eventName → action mapping (``rolesmith.actions.builder``).
"""

from __future__ import annotations

from typing import Mapping

from rolesmith.actions.services import (
    cloudformation,
    dynamodb,
    ec2,
    emr,
    iam,
    kms,
    lambda_,
    s3,
    secretsmanager,
    sqs,
    ssm,
    sts,
)
from rolesmith.actions.services._rules import ServiceRules

REGISTRY: Mapping[str, ServiceRules] = {
    "s3": s3.RULES,
    "kms": kms.RULES,
    "sts": sts.RULES,
    "iam": iam.RULES,
    "lambda": lambda_.RULES,
    "ec2": ec2.RULES,
    "elasticmapreduce": emr.RULES,
    "cloudformation": cloudformation.RULES,
    "sqs": sqs.RULES,
    "dynamodb": dynamodb.RULES,
    "secretsmanager": secretsmanager.RULES,
    "ssm": ssm.RULES,
}

__all__ = ["REGISTRY", "ServiceRules"]
