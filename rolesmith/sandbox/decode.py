"""An HTTP request to an AWS endpoint → service, operation and parameters, with botocore's models.

Every protocol botocore serialises is read back: ``query``/``ec2`` forms (``Action=``), ``json``
(``X-Amz-Target``), and ``rest-json``/``rest-xml`` (method + URI template + query keys, S3 path
style). Parameters come out in botocore's casing (``Bucket``, ``SSEKMSKeyId``) for the sandbox's own
logic, and ``cloudtrail_parameters`` turns them into CloudTrail's ``requestParameters`` casing.
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

# Signing names (SigV4 credential scope) that differ from botocore's service names.
_SIGNING_TO_SERVICE = {"elasticmapreduce": "emr", "monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions"}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
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


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def service_model(name: str) -> ServiceModel:
    return _session().get_service_model(name)


def event_source(model: ServiceModel) -> str:
    return f"{model.endpoint_prefix}.amazonaws.com"


@cache
def _target_index(name: str) -> Mapping[str, str]:
    return {op: op for op in service_model(name).operation_names}


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
        # Required query-string members tell apart operations on the same URI (UploadPart vs PutObject).
        shape = model.operation_model(op_name).input_shape
        if shape is not None:
            query += tuple((m.serialization.get("name", n), None) for n, m in shape.members.items()
                           if n in shape.required_members and m.serialization.get("location") == "querystring")
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


def decode(method: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Call:
    """Decode one request. ``headers`` must have lower-cased names."""
    split = urlsplit(raw_path)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    access_key, region, signing = credential_scope(headers, query)
    if signing is None:
        if "AWSAccessKeyId" in query or headers.get("authorization", "").startswith("AWS "):
            raise DecodeError("signature version 2 is not supported: sign with SigV4 (signature_version='s3v4')")
        raise DecodeError("unsigned request: sign it with SigV4 (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)")
    name = _SIGNING_TO_SERVICE.get(signing, signing)
    target = headers.get("x-amz-target")
    try:
        model = service_model(name)
    except Exception as err:  # botocore's UnknownServiceError and friends
        raise DecodeError(f"unknown service {signing!r}") from err
    protocol = model.protocol
    region = region or "us-east-1"
    common = dict(access_key=access_key, region=region, model=model, event_source=event_source(model),
                  protocol=protocol, query=query, headers=headers, host=headers.get("host", ""))
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
        return Call(service=name, operation=op_name, params=params, **common)
    # rest-json / rest-xml
    path = split.path or "/"
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
        if any(k not in query or (v is not None and query[k] != v) for k, v in required):
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
            key = f"{prefix}{wire}"
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


def _lower(name: str) -> str:
    return name[:1].lower() + name[1:]


def _camel(shape: Shape | None, value: Any) -> Any:
    """botocore casing → CloudTrail's lowerCamel casing; map keys (tags, contexts) stay as sent."""
    if shape is None:
        return value
    if shape.type_name == "structure" and isinstance(value, Mapping):
        return {_lower(k): _HIDDEN if _sensitive(k, shape.members.get(k)) else _camel(shape.members.get(k), v)
                for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_camel(shape.member, v) for v in value]
    if shape.type_name == "map" and isinstance(value, Mapping):
        return {k: _camel(shape.value, v) for k, v in value.items()}
    if shape.type_name == "blob":
        return _HIDDEN
    return value


_HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
# Members CloudTrail hides although botocore does not mark them sensitive (message and secret bodies).
_SENSITIVE_MEMBERS = frozenset({"MessageBody", "Plaintext", "SecretString", "SecretBinary", "Password",
                                "NewPassword", "OldPassword", "PrivateKey", "SessionToken"})


def _sensitive(name: str, shape: Shape | None) -> bool:
    return name in _SENSITIVE_MEMBERS or bool(shape is not None and shape.metadata.get("sensitive"))


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
    op = service_model(service).operation_model(operation)
    value = _camel(op.input_shape, dict(params))
    return value if isinstance(value, dict) else {}


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
            out["iamInstanceProfile"] = {_lower(k): v for k, v in profile.items()}
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
    for k, v in p.items():
        out[_lower(k)] = _camel(service_model("ec2").operation_model(operation).input_shape.members.get(k), v)
    return {k: v for k, v in out.items() if v is not None}
