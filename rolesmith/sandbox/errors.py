"""Protocol-correct error responses, as each AWS protocol shapes them.

- rest-xml (S3): ``<Error><Code>AccessDenied</Code><Message>Access Denied</Message>…`` (S3 keeps its
  bare message for its own refusals), HTTP 403, no body for HEAD.
- query (STS, IAM): ``<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>…``, 403.
- ec2: ``<Response><Errors><Error><Code>UnauthorizedOperation</Code>`` "You are not authorized to
  perform this operation. …", 403 (CloudTrail logs ``Client.UnauthorizedOperation``).
- json (KMS, EMR, SQS, CloudTrail): ``{"__type": "AccessDeniedException", "message": …}``, 400.
- rest-json (Lambda): 403 with ``x-amzn-ErrorType: AccessDeniedException``.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from rolesmith.trail.wire import Call

_XML = "text/xml"


@dataclass(frozen=True, kw_only=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _rid() -> str:
    return uuid.uuid4().hex[:16].upper()


def code_for(protocol: str) -> str:
    """The errorCode CloudTrail logs for an authorisation failure under this protocol."""
    return {"ec2": "Client.UnauthorizedOperation", "json": "AccessDeniedException",
            "rest-json": "AccessDeniedException"}.get(protocol, "AccessDenied")


def _resp(status: int, body: bytes, ctype: str, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status=status, headers=(("Content-Type", ctype), ("x-amzn-RequestId", _rid())) + extra, body=body)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def client_error(call: Call, method: str, status: int, code: str, message: str) -> Response:
    proto = call.protocol
    if proto == "rest-xml":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{_esc(message)}'
                f"</Message><RequestId>{_rid()}</RequestId><HostId>{uuid.uuid4().hex}</HostId></Error>").encode()
        return _resp(status, b"" if method == "HEAD" else body, "application/xml")
    if proto == "query":
        ns = f"https://{call.model.endpoint_prefix}.amazonaws.com/doc/{call.model.api_version}/"
        body = (f'<ErrorResponse xmlns="{ns}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{_esc(message)}</Message></Error><RequestId>{_rid()}</RequestId></ErrorResponse>").encode()
        return _resp(status, body, _XML)
    if proto == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{_esc(message)}</Message></Error></Errors><RequestID>{_rid()}</RequestID></Response>").encode()
        return _resp(status, body, _XML)
    if proto == "rest-json":
        return _resp(status, json.dumps({"Type": "User", "Message": message}).encode(), "application/json",
                     (("x-amzn-ErrorType", code),))
    extra: tuple[tuple[str, str], ...] = ()
    if call.model.metadata.get("awsQueryCompatible") is not None and code == "AccessDeniedException":
        # SQS's JSON protocol keeps its query-era code for SDKs that read it.
        extra = (("x-amzn-query-error", "AccessDenied;Sender"),)
    body = json.dumps({"__type": code, "message": message}).encode()
    return _resp(status, body, f"application/x-amz-json-{call.model.metadata.get('jsonVersion', '1.0')}", extra)


def denied(call: Call, method: str, message: str, *, s3_bare: bool) -> Response:
    proto = call.protocol
    if proto == "rest-xml":
        return client_error(call, method, 403, "AccessDenied", "Access Denied" if s3_bare else message)
    if proto == "ec2":
        return client_error(call, method, 403, "UnauthorizedOperation",
                            f"You are not authorized to perform this operation. {message}")
    if proto in ("json", "rest-json"):
        return client_error(call, method, 400 if proto == "json" else 403, "AccessDeniedException", message)
    return client_error(call, method, 403, "AccessDenied", message)


def invalid_credentials(call: Call, method: str) -> Response:
    if call.protocol == "rest-xml":
        return client_error(call, method, 403, "InvalidAccessKeyId",
                            "The AWS Access Key Id you provided does not exist in our records.")
    if call.protocol == "ec2":
        return client_error(call, method, 401, "AuthFailure", "AWS was not able to validate the provided access credentials")
    code = "UnrecognizedClientException" if call.protocol in ("json", "rest-json") else "InvalidClientTokenId"
    return client_error(call, method, 403, code, "The security token included in the request is invalid.")


def bad_signature(call: Call, method: str) -> Response:
    if call.protocol in ("json", "rest-json"):
        return client_error(call, method, 400, "InvalidSignatureException",
                            "The request signature we calculated does not match the signature you provided.")
    return client_error(call, method, 403, "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you provided. "
                        "Check your key and signing method.")


def bad_request(message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidRequest</Code><Message>{_esc(message)}'
            f"</Message><RequestId>{_rid()}</RequestId></Error>").encode()
    return _resp(400, body, "application/xml")


def json_response(call: Call, doc: Mapping[str, Any]) -> Response:
    return _resp(200, json.dumps(doc).encode(), f"application/x-amz-json-{call.model.metadata.get('jsonVersion', '1.0')}")


_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_MSG = re.compile(rb"<Message>([^<]*)</Message>")


def parse_error(protocol: str, status: int, body: bytes) -> tuple[str, str] | None:
    """(errorCode, errorMessage) of a moto error response, for the record."""
    if protocol in ("json", "rest-json"):
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        code = str(doc.get("__type") or doc.get("code") or f"HTTP{status}").rpartition("#")[2]
        return code, str(doc.get("message") or doc.get("Message") or "")
    m = _CODE.search(body or b"")
    msg = _MSG.search(body or b"")
    code = m.group(1).decode() if m else f"HTTP{status}"
    if protocol == "ec2" and not code.startswith(("Client.", "Server.")):
        code = f"Client.{code}"
    return code, msg.group(1).decode() if msg else ""
