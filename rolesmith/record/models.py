"""botocore service models: which service a signing name means, CloudTrail casing, redaction.

Everything is loaded lazily and cached: a recording touches a handful of services.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

REDACTED = "HIDDEN_DUE_TO_SECURITY_REASONS"  # the placeholder CloudTrail itself writes
# Members CloudTrail never logs and botocore does not always mark `sensitive`.
_SECRET_NAMES = re.compile(
    r"(?i)(password|secret|(?<!next)(?<!continuation)(?<!client)(?<!idempotency)(?<!pagination)token|privatekey"
    r"|plaintext|credentials?$)"
)

# Members that carry the workload's data rather than describe the call: dropped like object bodies.
_DATA_MEMBERS = {
    "sqs": frozenset({"MessageBody", "MessageAttributes", "MessageSystemAttributes"}),
    "sns": frozenset({"Message", "MessageAttributes"}),
    "dynamodb": frozenset({"Item", "Items", "AttributeUpdates", "ExpressionAttributeValues", "Expected",
                           "TransactItems", "RequestItems", "Parameters", "Statements"}),
    "kinesis": frozenset({"Data", "Records"}),
    "firehose": frozenset({"Record", "Records"}),
    "logs": frozenset({"logEvents"}),
}

# eventSource prefix (= endpoint prefix) where it differs from botocore's service name.
_SOURCE_ALIASES = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions",
                   "elasticmapreduce": "emr", "es": "opensearch", "execute-api": "apigateway",
                   "runtime.sagemaker": "sagemaker-runtime", "streams.dynamodb": "dynamodbstreams"}


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def service_model(name: str) -> ServiceModel | None:
    try:
        return _session().get_service_model(name)
    except Exception:  # UnknownServiceError and data errors alike: not a service we can decode
        return None


@functools.cache
def available_services() -> tuple[str, ...]:
    return tuple(_session().get_available_services())


@functools.cache
def service_for_signing_name(signing_name: str) -> ServiceModel | None:
    """botocore service whose requests are signed with ``signing_name`` (the SigV4 scope)."""
    for candidate in (signing_name, _SOURCE_ALIASES.get(signing_name, "")):
        model = service_model(candidate) if candidate else None
        if model is not None and signing_name in (model.signing_name, model.endpoint_prefix):
            return model
    # Rare mismatch: scan every model once (slow, cached).
    for name in available_services():
        model = service_model(name)
        if model is not None and model.signing_name == signing_name:
            return model
    return None


def event_source(model: ServiceModel) -> str:
    return f"{model.endpoint_prefix}.amazonaws.com"


def lower_camel(name: str) -> str:
    if not name:
        return name
    # "SSEKMSKeyId" -> "sSEKMSKeyId" is what CloudTrail writes for S3 too: only the first letter changes.
    return name[0].lower() + name[1:]


def to_request_parameters(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """API parameters in CloudTrail's ``requestParameters`` casing, sensitive members redacted.

    CloudTrail lower-camels structure member names (``keyId``, ``encryptionContext``, ``tags`` →
    ``tagKey``) but keeps map keys; S3 names the bucket ``bucketName``. See the KMS/S3 examples
    in shared/data/cloudtrail/awsdocs_examples.
    """
    model = service_model(service)
    shape: Shape | None = None
    if model is not None:
        try:
            shape = model.operation_model(operation).input_shape
        except Exception:
            shape = None
    data = _DATA_MEMBERS.get(service, frozenset())
    out = _convert(params, shape, data)
    if service == "s3" and isinstance(out, dict) and "bucket" in out:
        out["bucketName"] = out.pop("bucket")
    return out if isinstance(out, dict) else {}


def _convert(value: Any, shape: Shape | None, drop: frozenset[str] = frozenset()) -> Any:
    if shape is not None and (shape.serialization.get("streaming") or shape.type_name == "blob"):
        return None
    if shape is not None and shape.metadata.get("sensitive"):
        return REDACTED
    if isinstance(value, Mapping):
        if shape is not None and shape.type_name == "map":
            return {str(k): _convert(v, shape.value, drop) for k, v in value.items()}
        members = shape.members if shape is not None and shape.type_name == "structure" else {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in drop:
                continue
            member = members.get(key)
            if member is None and _SECRET_NAMES.search(str(key)):
                out[lower_camel(str(key))] = REDACTED
                continue
            if member is not None and (_SECRET_NAMES.search(key) and member.type_name == "string"):
                out[lower_camel(key)] = REDACTED
                continue
            converted = _convert(item, member, drop)
            if converted is not None:
                out[lower_camel(str(key)) if members or shape is None else str(key)] = converted
        return out
    if isinstance(value, (list, tuple)):
        inner = shape.member if shape is not None and shape.type_name == "list" else None
        return [_convert(v, inner, drop) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return None
    return value


def operation_model(service: str, operation: str) -> OperationModel | None:
    model = service_model(service)
    if model is None:
        return None
    try:
        return model.operation_model(operation)
    except Exception:
        return None
