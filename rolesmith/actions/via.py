"""Calls an AWS service made on a principal's behalf: ``via`` and the condition that scopes them.

* KMS: ``kms:ViaService = <service>.<region>.amazonaws.com`` for the services that support it
  (the table "Services that support the kms:ViaService condition key" in
  ../shared/reference/s3_kms/kms-dg__conditions-kms.md, section kms:ViaService).
* Elsewhere: ``aws:CalledVia`` (``ForAnyValue:StringEquals``, service principal name) only for the
  services that populate it — Athena, CloudFormation, DynamoDB and KMS — per the IAM User Guide
  (CloudFormation excepted, see ``CALLED_VIA_SERVICES``),
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-calledvia
  and https://docs.aws.amazon.com/athena/latest/ug/security-iam-athena-calledvia.html.
* A service acting under its *own* service role (EMR's EC2/SQS calls with ``invokedBy
  elasticmapreduce.amazonaws.com``) gets ``via`` only: the principal is the service role and no
  condition key describes that (../shared/reference/EMR_MINIMAL_PERMISSIONS.md).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from rolesmith.actions.model import Condition

AWS_INTERNAL = "AWS Internal"

# "AWS KMS ViaService name" column of the kms:ViaService table (first label of each name).
KMS_VIA_SERVICES = frozenset(
    """apprunner appflow mgn athena auditmanager rds backup backup-gateway codeartifact
    codeguru-reviewer comprehend connect profile wisdom dms directoryservice dynamodb ssm ec2 ecr
    elasticfilesystem eks elasticache es mediatailor finspace forecast fsx glue groundstation
    malware-protection healthlake iotsitewise kendra cassandra kinesis firehose kinesisvideo lambda
    lex license-manager geo lookoutequipment lookoutmetrics lookoutvision macie managedblockchain
    kafka airflow memorydb monitron mq nimble omics proton qldb redshift sqlworkbench
    redshift-serverless rekognition sagemaker secretsmanager ses sns sqs s3 importexport
    storagegateway ssm-incidents ssm-contacts timestream translate workmail workspaces
    workspaces-web xray""".split()
)

_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+")

# CloudFormation also populates aws:CalledVia, but only when it acts with the caller's credentials;
# with a stack service role its calls come from that role's own session and look the same in
# CloudTrail (invokedBy cloudformation.amazonaws.com). A wrong condition would break the role, a
# missing one only widens it a little, so CloudFormation-invoked calls get ``via`` only.
CALLED_VIA_SERVICES = frozenset({"athena", "dynamodb", "kms"})

# Encryption-context keys that identify which service called KMS when CloudTrail only says
# "AWS Internal" (kms-dg__ct-decrypt.md / kms-dg__ct-generatedatakey.md examples: aws:s3:arn,
# aws:ebs:id, aws:workmail:arn; Secrets Manager's SecretARN and Parameter Store's PARAMETER_ARN are
# the contexts documented in "How AWS Secrets Manager uses AWS KMS" / "How Parameter Store uses KMS").
_CONTEXT_SERVICE: Mapping[str, str] = {
    "aws:s3:arn": "s3",
    "aws:ebs:id": "ec2",
    "aws:workmail:arn": "workmail",
    "secretarn": "secretsmanager",
    "parameter_arn": "ssm",
    "aws:lambda:functionarn": "lambda",
}


def service_name(invoked_by: str | None) -> str | None:
    """``s3.amazonaws.com`` → ``s3``; None for a missing value, ``AWS Internal`` or a non-service."""
    if not invoked_by or invoked_by == AWS_INTERNAL:
        return None
    host = invoked_by.strip().lower()
    for suffix in (".amazonaws.com.cn", ".amazonaws.com"):
        if host.endswith(suffix):
            name = host[: -len(suffix)]
            # Regional service hosts (workmail.eu-west-1.amazonaws.com in kms-dg__services-wm examples).
            first, _, rest = name.partition(".")
            if rest and _REGION.fullmatch(rest):
                return first
            return name or None
    return None


def context_service(request: Mapping[str, Any]) -> str | None:
    """The calling service named by a KMS request's encryption context, if any."""
    ctx = request.get("encryptionContext") if isinstance(request, Mapping) else None
    if not isinstance(ctx, Mapping):
        return None
    for key in ctx:
        svc = _CONTEXT_SERVICE.get(str(key).lower())
        if svc:
            return svc
    return None


def kms_via_condition(service: str | None, region: str | None) -> tuple[Condition, ...]:
    if service is None or region is None or service not in KMS_VIA_SERVICES:
        return ()
    return (("StringEquals", "kms:ViaService", f"{service}.{region}.amazonaws.com"),)


def called_via_condition(service: str | None) -> tuple[Condition, ...]:
    if service is None or service not in CALLED_VIA_SERVICES:
        return ()
    return (("ForAnyValue:StringEquals", "aws:CalledVia", f"{service}.amazonaws.com"),)


def is_service_call(invoked_by: str | None) -> bool:
    return invoked_by == AWS_INTERNAL or service_name(invoked_by) is not None
