"""An HTTP request to an AWS endpoint → a CloudTrail-shaped call, with botocore's service models.

The one decoder of rolesmith: the sandbox (which answers the request) and ``rolesmith record``'s proxy
(which only sees bytes on the wire) both use it. The SigV4 credential scope (header or presigned
query) names the access key, region and signing name; the protocol then gives the operation:
``query``/``ec2`` forms (``Action=``), ``json`` (``X-Amz-Target``), ``smithy-rpc-v2-cbor`` paths, and
``rest-json``/``rest-xml`` (method + URI template + query keys + required headers; S3 path style and
virtual-hosted buckets). Parameters come out in botocore's casing (``Bucket``, ``SSEKMSKeyId``);
``cloudtrail_parameters``/``request_parameters`` turn them into CloudTrail's ``requestParameters``
casing (the trail stage owns the record format).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from rolesmith.errors import RolesmithError

# eventSource prefix / signing name where it differs from botocore's service name.
_SIGNING_TO_SERVICE = {"elasticmapreduce": "emr", "monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions",
                       "es": "opensearch", "execute-api": "apigateway", "runtime.sagemaker": "sagemaker-runtime",
                       "streams.dynamodb": "dynamodbstreams"}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_SIGNATURE = re.compile(r"Signature=([0-9a-f]+)")
_RPC_V2 = re.compile(r"^/service/[^/]+/operation/([A-Za-z0-9]+)$")
_S3_HOST = re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-](?:[a-z0-9-]+\.)*?)?(?:dualstack\.)?(?:[a-z0-9-]*\.)?amazonaws\.com(?:\.cn)?$")
# Headers that never become request parameters: transport, signing, secrets.
_S3_HEADER_SKIP = frozenset({"x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "x-amz-user-agent",
                             "x-amz-decoded-content-length", "x-amz-trailer", "x-amz-sdk-checksum-algorithm",
                             "x-moto-account-id", "authorization"})


class DecodeError(RolesmithError):
    """The request is not an AWS API call the models describe."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Call:
    """One decoded API call."""

    service: str  # botocore service name: "s3", "kms", "emr"
    operation: str  # botocore operation name: "PutObject"
    params: Mapping[str, Any]  # botocore casing
    access_key: str | None
    region: str
    model: ServiceModel
    event_source: str  # "s3.amazonaws.com"
    protocol: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-cased names
    host: str = ""
    signature: str | None = None  # SigV4 signature: the same request seen twice (hook and proxy) is one call


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def service_model(name: str) -> ServiceModel:
    return _session().get_service_model(name)


def find_service_model(name: str) -> ServiceModel | None:
    """``service_model`` or None for a name botocore does not know."""
    try:
        return service_model(name)
    except Exception:  # UnknownServiceError and data errors alike: not a service we can decode
        return None


@cache
def available_services() -> tuple[str, ...]:
    return tuple(_session().get_available_services())


@cache
def service_for_signing_name(signing_name: str) -> ServiceModel | None:
    """botocore service whose requests are signed with ``signing_name`` (the SigV4 scope)."""
    for candidate in (signing_name, _SIGNING_TO_SERVICE.get(signing_name, "")):
        model = find_service_model(candidate) if candidate else None
        if model is not None and signing_name in (model.signing_name, model.endpoint_prefix):
            return model
    # Rare mismatch: scan every model once (slow, cached).
    for name in available_services():
        model = find_service_model(name)
        if model is not None and model.signing_name == signing_name:
            return model
    return None


def operation_model(service: str, operation: str) -> OperationModel | None:
    model = find_service_model(service)
    if model is None:
        return None
    try:
        return model.operation_model(operation)
    except Exception:
        return None


def event_source(model: ServiceModel) -> str:
    return f"{model.endpoint_prefix}.amazonaws.com"


_HEADER = "\0header:"  # marks a required header among a route's required query keys


@cache
def _rest_routes(name: str) -> tuple[tuple[str, re.Pattern[str], tuple[str, ...], tuple[tuple[str, str | None], ...], str], ...]:
    """(method, path regex, label names, required query (key, value|None), operation) per operation."""
    routes = []
    model = service_model(name)
    for op_name in model.operation_names:
        http = model.operation_model(op_name).http
        uri = http.get("requestUri", "/")
        path, _, qs = uri.partition("?")
        labels: list[str] = []

        def label(m: re.Match[str]) -> str:
            raw = m.group(1).replace("\\", "")
            greedy = raw.endswith("+")
            labels.append(raw.rstrip("+"))
            return "(.+)" if greedy else "([^/]+)"

        body = re.sub(r"\\\{([^}]+)\\\}", label, re.escape(path))
        rx = re.compile("^" + body + ("$" if "(.+)" in body else "/?$"))
        query = tuple((k, v or None) for k, _, v in (part.partition("=") for part in qs.split("&") if part))
        # Required query-string members and headers tell apart operations on the same URI (UploadPart
        # vs PutObject, CopyObject vs PutObject).
        shape = model.operation_model(op_name).input_shape
        if shape is not None:
            query += tuple((m.serialization.get("name", n), None) for n, m in shape.members.items()
                           if n in shape.required_members and m.serialization.get("location") == "querystring")
            query += tuple((_HEADER + m.serialization.get("name", n).lower(), None) for n, m in shape.members.items()
                           if n in shape.required_members and m.serialization.get("location") == "header")
        routes.append((http.get("method", "GET"), rx, tuple(labels), query, op_name))
    return tuple(routes)


def credential_scope(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(access key id, region, signing name) from the Authorization header or a presigned URL."""
    auth = headers.get("authorization", "")
    m = _CREDENTIAL.search(auth)
    if m:
        return m.group(1), m.group(3), m.group(4)
    cred = query.get("X-Amz-Credential")
    if cred:
        parts = cred.split("/")
        if len(parts) >= 5:
            return parts[0], parts[2], parts[3]
    return None, None, None


def _signature(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    m = _SIGNATURE.search(headers.get("authorization", ""))
    return m.group(1) if m else query.get("X-Amz-Signature")


def decode(method: str, raw_path: str, headers: Mapping[str, str], body: bytes, *, host: str | None = None) -> Call:
    """Decode one request. ``headers`` must have lower-cased names; ``raw_path`` is the request-target
    (path and query); ``host`` defaults to the Host header (a proxy passes the CONNECT target)."""
    split = urlsplit(raw_path)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    access_key, region, signing = credential_scope(headers, query)
    if signing is None:
        if "AWSAccessKeyId" in query or headers.get("authorization", "").startswith("AWS "):
            raise DecodeError("signature version 2 is not supported: sign with SigV4 (signature_version='s3v4')")
        raise DecodeError("unsigned request: sign it with SigV4 (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    model = service_for_signing_name(signing)
    if model is None:
        raise DecodeError(f"unknown service {signing!r}")
    name = model.service_name
    target = headers.get("x-amz-target")
    host = headers.get("host", "") if host is None else host
    protocols = set(model.metadata.get("protocols") or ()) | {model.protocol}
    form_body = bool(body) and "x-www-form-urlencoded" in headers.get("content-type", "")
    rpc = _RPC_V2.match(split.path)
    if target and "json" in protocols:
        protocol = "json"
    elif rpc and "smithy-rpc-v2-cbor" in protocols:
        protocol = "smithy-rpc-v2-cbor"
    elif protocols & {"query", "ec2"} and (form_body or "Action" in query or not protocols & {"rest-json", "rest-xml"}):
        protocol = "ec2" if "ec2" in protocols else "query"
    else:
        protocol = model.protocol
    region = region or "us-east-1"
    common = dict(access_key=access_key, region=region, model=model, event_source=event_source(model),
                  protocol=protocol, query=query, headers=headers, host=host,
                  signature=_signature(headers, query))
    if protocol in ("query", "ec2"):
        form = dict(query)
        if body and "x-www-form-urlencoded" in headers.get("content-type", "x-www-form-urlencoded"):
            form.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        op_name = form.get("Action", "")
        if op_name not in model.operation_names:
            raise DecodeError(f"{name}: unknown Action {op_name!r}")
        op = model.operation_model(op_name)
        params = _parse_form(op.input_shape, form, "", protocol == "ec2") if op.input_shape else {}
        return Call(service=name, operation=op_name, params=params or {}, **common)
    if protocol == "json":
        op_name = (target or "").rpartition(".")[2]
        if op_name not in model.operation_names:
            raise DecodeError(f"{name}: unknown X-Amz-Target {target!r}")
        try:
            params = json.loads(body or b"{}")
        except ValueError as err:
            raise DecodeError(f"{name}.{op_name}: body is not JSON") from err
        return Call(service=name, operation=op_name, params=params if isinstance(params, dict) else {}, **common)
    if protocol == "smithy-rpc-v2-cbor":
        op_name = rpc.group(1) if rpc else ""
        if op_name not in model.operation_names:
            raise DecodeError(f"{name}: unknown operation path {split.path!r}")
        return Call(service=name, operation=op_name, params={}, **common)  # CBOR body: the operation only
    # rest-json / rest-xml
    path = split.path or "/"
    if name == "s3":
        m = _S3_HOST.match(host.split(":", 1)[0])
        if m and not m.group("bucket").startswith("s3"):
            path = "/" + m.group("bucket") + path  # virtual-hosted bucket: decode as path style
    op_name, labels = _match_rest(name, method, path, query, headers)
    op = model.operation_model(op_name)
    params = _rest_params(op, labels, query, headers, body, protocol)
    return Call(service=name, operation=op_name, params=params, **common)


def _match_rest(name: str, method: str, path: str, query: Mapping[str, str],
                headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    best: tuple[int, str, dict[str, str]] | None = None
    for m, rx, labels, required, op_name in _rest_routes(name):
        if m != method:
            continue
        hit = rx.match(path)
        if not hit:
            continue
        if any(k[len(_HEADER):] not in headers if k.startswith(_HEADER)
               else k not in query or (v is not None and query[k] != v) for k, v in required):
            continue
        score = 10 * len(required) + len(labels)
        # CopyObject / UploadPartCopy share their URI with PutObject / UploadPart: the header decides.
        if name == "s3" and op_name in ("CopyObject", "UploadPartCopy"):
            if "x-amz-copy-source" not in headers:
                continue
            score += 5
        if best is None or score > best[0]:
            best = (score, op_name, {lab: unquote(v) for lab, v in zip(labels, hit.groups())})
    if best is None:
        raise DecodeError(f"{name}: no operation matches {method} {path}")
    return best[1], best[2]


def _scalar(shape: Shape, value: str) -> Any:
    t = shape.type_name
    if t in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            return value
    if t == "boolean":
        return value.lower() == "true"
    return value


def _rest_params(op: OperationModel, labels: Mapping[str, str], query: Mapping[str, str],
                 headers: Mapping[str, str], body: bytes, protocol: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    shape = op.input_shape
    if shape is None:
        return params
    payload = shape.serialization.get("payload")
    for member, mshape in shape.members.items():
        loc = mshape.serialization.get("location")
        wire = mshape.serialization.get("name", member)
        if loc == "uri" and wire in labels:
            params[member] = labels[wire]
        elif loc == "querystring" and wire in query:
            params[member] = _scalar(mshape, query[wire])
        elif loc == "header" and wire.lower() in headers:
            params[member] = _scalar(mshape, headers[wire.lower()])
        elif loc == "headers":
            prefix = wire.lower()
            found = {k[len(prefix):]: v for k, v in headers.items() if k.startswith(prefix)}
            if found:
                params[member] = found
    if protocol == "rest-json" and not payload and body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for member in shape.members:
                if member in doc:
                    params[member] = doc[member]
    return params


def _parse_form(shape: Shape, form: Mapping[str, str], prefix: str, ec2: bool) -> Any:
    t = shape.type_name
    if t == "structure":
        out: dict[str, Any] = {}
        for member, mshape in shape.members.items():
            if ec2:
                wire = mshape.serialization.get("queryName") or _cap(mshape.serialization.get("name", member))
            else:
                wire = mshape.serialization.get("name", member)
            key = f"{prefix}.{wire}" if prefix else wire
            if key in form or any(k.startswith(key + ".") for k in form):
                value = _parse_form(mshape, form, key, ec2)
                if value is not None:
                    out[member] = value
        return out
    if t == "list":
        items = []
        if ec2 or shape.serialization.get("flattened"):
            base = prefix
        else:
            base = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        i = 1
        while f"{base}.{i}" in form or any(k.startswith(f"{base}.{i}.") for k in form):
            items.append(_parse_form(shape.member, form, f"{base}.{i}", ec2))
            i += 1
        return items
    if t == "map":
        out_map: dict[str, Any] = {}
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        kname = shape.key.serialization.get("name", "key")
        vname = shape.value.serialization.get("name", "value")
        i = 1
        while f"{base}.{i}.{kname}" in form:
            out_map[form[f"{base}.{i}.{kname}"]] = _parse_form(shape.value, form, f"{base}.{i}.{vname}", ec2)
            i += 1
        return out_map
    value = form.get(prefix)
    return None if value is None else _scalar(shape, value)


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def cloudtrail_parameters(call: Call) -> dict[str, Any]:
    """``requestParameters`` as CloudTrail writes them for this call.

    S3 is the odd one: CloudTrail keeps ``bucketName``, ``key``, ``Host`` and the wire names of
    headers (``x-amz-server-side-encryption``, ``x-amz-copy-source``) and query keys (``list-type``)
    (shared/reference/s3_kms/s3-ug__cloudtrail-logging-s3-info.md). Others use the API member names
    with a lower-case first letter. Object data and blobs never appear.
    """
    if call.service == "s3":
        out: dict[str, Any] = {}
        if "Bucket" in call.params:
            out["bucketName"] = call.params["Bucket"]
        if "Key" in call.params:
            out["key"] = call.params["Key"]
        out["Host"] = call.host
        for k, v in call.query.items():
            if not k.startswith("X-Amz-"):
                out[k] = v
        for k, v in call.headers.items():
            if k.startswith("x-amz-") and k not in _S3_HEADER_SKIP and not k.startswith("x-amz-checksum") \
                    and not k.startswith("x-amz-meta-") and "customer-key" not in k:
                out[k] = v
        return out
    return api_parameters(call.service, call.operation, call.params)


def api_parameters(service: str, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """CloudTrail casing of a non-S3 call's parameters (also used for service-made calls)."""
    if service == "ec2":
        return ec2_parameters(operation, params)
    return to_request_parameters(service, operation, params)


def _items(values: Any, fn: Any) -> dict[str, Any]:
    return {"items": [fn(v) for v in values or []]}


def _ec2_tags(tags: Any) -> list[dict[str, Any]]:
    return [{"key": t.get("Key"), "value": t.get("Value", "")} for t in tags or [] if isinstance(t, Mapping)]


def ec2_parameters(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """EC2's CloudTrail shapes: sets are ``{"items": [...]}`` under ``…Set`` names
    (``instancesSet``, ``groupSet``, ``resourcesSet``, ``tagSet``, ``tagSpecificationSet``), as in the
    EC2 events of shared/data/cloudtrail/ (e.g. the EMR CreateFleet/RunInstances records)."""
    p = dict(params)
    if operation == "RunInstances":
        out: dict[str, Any] = {"instancesSet": {"items": [{k: v for k, v in (
            ("imageId", p.pop("ImageId", None)), ("minCount", p.pop("MinCount", None)),
            ("maxCount", p.pop("MaxCount", None))) if v is not None}]}}
        groups = p.pop("SecurityGroupIds", None)
        if groups:
            out["groupSet"] = _items(groups, lambda g: {"groupId": g})
        profile = p.pop("IamInstanceProfile", None)
        if isinstance(profile, Mapping):
            out["iamInstanceProfile"] = {lower_camel(k): v for k, v in profile.items()}
        specs = p.pop("TagSpecifications", None)
        if specs:
            out["tagSpecificationSet"] = _items(specs, lambda s: {"resourceType": s.get("ResourceType"),
                                                                  "tags": _ec2_tags(s.get("Tags"))})
    elif operation == "CreateTags" or operation == "DeleteTags":
        out = {"resourcesSet": _items(p.pop("Resources", None), lambda r: {"resourceId": r}),
               "tagSet": _items(_ec2_tags(p.pop("Tags", None)), lambda t: t)}
    elif operation == "CreateSecurityGroup":
        out = {"groupName": p.pop("GroupName", None), "groupDescription": p.pop("Description", None)}
    else:
        out = {}
    shape = service_model("ec2").operation_model(operation).input_shape
    for k, v in p.items():
        out[lower_camel(k)] = _convert(v, shape.members.get(k) if shape is not None else None)
    return {k: v for k, v in out.items() if v is not None}


# -- requestParameters of a call seen from the client side (rolesmith record) -----------------------
REDACTED = "HIDDEN_DUE_TO_SECURITY_REASONS"  # the placeholder CloudTrail itself writes
# Members CloudTrail never logs and botocore does not always mark `sensitive`.
_SECRET_NAMES = re.compile(
    r"(?i)(password|secret|(?<!next)(?<!continuation)(?<!client)(?<!idempotency)(?<!pagination)token|privatekey"
    r"|plaintext|credentials?$)"
)

# Members that carry the workload's data rather than describe the call: redacted (object bodies and
# other blobs are dropped).
_DATA_MEMBERS = {
    "sqs": frozenset({"MessageBody", "MessageAttributes", "MessageSystemAttributes"}),
    "sns": frozenset({"Message", "MessageAttributes"}),
    "dynamodb": frozenset({"Item", "Items", "AttributeUpdates", "ExpressionAttributeValues", "Expected",
                           "TransactItems", "RequestItems", "Parameters", "Statements"}),
    "kinesis": frozenset({"Data", "Records"}),
    "firehose": frozenset({"Record", "Records"}),
    "logs": frozenset({"logEvents"}),
}



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
    model = find_service_model(service)
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
            if key in drop:  # the workload's data: CloudTrail shows that it was sent, never what
                out[lower_camel(str(key))] = REDACTED
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
