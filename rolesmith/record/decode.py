"""Decode a signed HTTP request into its AWS operation with botocore's service models.

Used by the proxy, which sees only bytes on the wire: the SigV4 credential scope names the access
key, region and signing name; the protocol then gives the operation (JSON ``X-Amz-Target``, query
``Action``, REST method + path template, incl. virtual-hosted S3 buckets).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.model import ServiceModel

from rolesmith.record import models

_AUTH = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request.*?Signature=([0-9a-f]+)", re.S)
_RPC_V2 = re.compile(r"^/service/[^/]+/operation/([A-Za-z0-9]+)$")
_S3_HOST = re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-](?:[a-z0-9-]+\.)*?)?(?:dualstack\.)?(?:[a-z0-9-]*\.)?amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Decoded:
    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    access_key_id: str | None = None
    signature: str | None = None


def signature_of(headers: Mapping[str, str], query: str) -> tuple[str, str, str, str] | None:
    """(access key id, region, signing name, signature) from a SigV4 header or presigned query."""
    auth = headers.get("authorization") or ""
    m = _AUTH.search(auth)
    if m:
        return m.group(1), m.group(3), m.group(4), m.group(5)
    q = dict(parse_qsl(query))
    cred, sig = q.get("X-Amz-Credential"), q.get("X-Amz-Signature")
    if cred and sig:
        parts = cred.split("/")
        if len(parts) >= 5:
            return parts[0], parts[2], parts[3], sig
    return None


def decode(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes) -> Decoded | None:
    """``headers`` keys lower-cased; ``target`` the request-target (path and query)."""
    split = urlsplit(target)
    sig = signature_of(headers, split.query)
    if sig is None:
        return None
    akid, region, signing_name, signature = sig
    model = models.service_for_signing_name(signing_name)
    if model is None:
        return None
    protocol = model.metadata.get("protocol", "")
    protocols = set(model.metadata.get("protocols") or ()) | {protocol}
    op: str | None = None
    params: dict[str, Any] = {}
    rpc = _RPC_V2.match(split.path)
    if headers.get("x-amz-target"):  # awsJson 1.0/1.1: "TrentService.GenerateDataKey"
        op = headers["x-amz-target"].rsplit(".", 1)[-1] or None
        params = _json(body)
    elif rpc and ("smithy-protocol" in headers or "smithy-rpc-v2-cbor" in protocols):
        op = rpc.group(1)  # CBOR body: the operation, no parameters
    elif protocols & {"query", "ec2"}:
        form = dict(parse_qsl(split.query))
        if body and "x-www-form-urlencoded" in headers.get("content-type", ""):
            form.update(parse_qsl(body.decode("utf-8", "replace")))
        op = form.pop("Action", None)
        form.pop("Version", None)
        params = {k: v for k, v in form.items() if not k.startswith("X-Amz-")}
    elif protocols & {"rest-json", "rest-xml"}:
        path = split.path or "/"
        if model.service_name == "s3":
            m = _S3_HOST.match(host.split(":", 1)[0])
            if m and not m.group("bucket").startswith("s3"):
                path = "/" + m.group("bucket") + path
        found = _match_rest(model, method, path, split.query, headers)
        if found:
            op, params = found
            if "rest-json" in protocols and body:
                for k, v in _json(body).items():
                    params.setdefault(k, v)
    if not op:
        return None
    return Decoded(service=model.service_name, operation=op, params=params, region=region,
                   access_key_id=akid, signature=signature)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    method: str
    path: re.Pattern[str]
    literals: tuple[str, ...]
    static_len: int
    labels: Mapping[str, str]  # label -> member
    queries: Mapping[str, str]  # query key -> member
    headers: Mapping[str, str]  # lower-cased header -> member
    required_queries: tuple[str, ...]
    required_headers: tuple[str, ...]


@functools.cache
def _routes(service: str) -> tuple[_Route, ...]:
    model = models.service_model(service)
    assert model is not None
    routes = []
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        literals = tuple(k for k, _ in parse_qsl(query, keep_blank_values=True) if k != "x-id")
        pattern = "".join(
            (f"(?P<g{i}>.+)" if part.endswith("+}") else f"(?P<g{i}>[^/]+)") if part.startswith("{") else re.escape(part)
            for i, part in enumerate(re.split(r"(\{[^}]+\})", path))
        )
        label_names = [p.strip("{}+") for p in re.findall(r"\{[^}]+\}", path)]
        labels: dict[str, str] = {}
        queries: dict[str, str] = {}
        headers: dict[str, str] = {}
        req_q: list[str] = []
        req_h: list[str] = []
        shape = op.input_shape
        required = set(shape.required_members) if shape is not None else set()
        for member, mshape in (shape.members.items() if shape is not None else ()):
            loc = mshape.serialization.get("location")
            loc_name = mshape.serialization.get("name", member)
            if loc == "uri":
                labels[loc_name] = member
            elif loc == "querystring":
                queries[loc_name] = member
                if member in required:
                    req_q.append(loc_name)
            elif loc == "header":
                headers[loc_name.lower()] = member
                if member in required:
                    req_h.append(loc_name.lower())
        groups = {f"g{i}": label_names[j] for j, i in enumerate(
            i for i, part in enumerate(re.split(r"(\{[^}]+\})", path)) if part.startswith("{"))}
        routes.append(_Route(name, op.http.get("method", "POST"), re.compile(pattern.rstrip("/") + "/?$"),
                             literals, len(re.sub(r"\{[^}]+\}", "", path)), {**groups, **labels},
                             queries, headers, tuple(req_q), tuple(req_h)))
    return tuple(routes)


def _match_rest(model: ServiceModel, method: str, path: str, query: str,
                headers: Mapping[str, str]) -> tuple[str, dict[str, Any]] | None:
    qs = dict(parse_qsl(query, keep_blank_values=True))
    best: tuple[int, _Route, re.Match[str]] | None = None
    for route in _routes(model.service_name):
        if route.method != method:
            continue
        m = route.path.match(path)
        if not m or any(k not in qs for k in route.literals):
            continue
        if any(k not in qs for k in route.required_queries) or any(h not in headers for h in route.required_headers):
            continue
        score = 1000 * len(route.literals) + 10 * (len(route.required_queries) + len(route.required_headers)) + route.static_len
        if best is None or score > best[0]:
            best = (score, route, m)
    if best is None:
        return None
    _, route, m = best
    params: dict[str, Any] = {}
    for group, value in m.groupdict().items():
        label = route.labels.get(group, group)
        params[route.labels.get(label, label)] = unquote(value)
    for key, member in route.queries.items():
        if key in qs:
            params[member] = qs[key]
    for header, member in route.headers.items():
        if header in headers and header not in ("authorization", "x-amz-security-token"):
            params[member] = headers[header]
    return route.name, params
