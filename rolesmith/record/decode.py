"""What the proxy keeps of a request it forwards: ``rolesmith.trail.wire.decode``, or None for a
request that is not a SigV4-signed AWS call (it is forwarded all the same)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rolesmith.trail.wire import DecodeError
from rolesmith.trail.wire import decode as decode_call


@dataclass(frozen=True, kw_only=True, slots=True)
class Decoded:
    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    region: str | None = None
    access_key_id: str | None = None
    signature: str | None = None


def decode(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes) -> Decoded | None:
    """``headers`` keys lower-cased; ``target`` the request-target (path and query)."""
    try:
        call = decode_call(method, target, headers, body, host=host)
    except DecodeError:
        return None
    return Decoded(service=call.service, operation=call.operation, params=call.params, region=call.region,
                   access_key_id=call.access_key, signature=call.signature)
