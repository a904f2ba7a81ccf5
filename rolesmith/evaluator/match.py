"""Element matching: Action/Resource wildcards, ARNs, policy variables and Principal.

Docs: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
(actions are case-insensitive, ``*``/``?`` wildcards), .../reference_policies_elements_resource.html
(resources are case-sensitive, wildcards within segments), .../reference_policies_variables.html
(``${aws:username}``, ``${*}``, ``${?}``, ``${$}``, defaults ``${key, 'default'}``) and
.../reference_policies_elements_principal.html.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$\{([^}]*)\}")
# Principal kinds a resource-policy statement can match by, strongest first.
DIRECT, ROLE, ACCOUNT = "direct", "role", "account"


@lru_cache(maxsize=8192)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if pattern == "*":
        return True
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def action_matches(pattern: str, action: str) -> bool:
    return glob_match(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str) -> bool:
    """ARN match as for Resource and ArnLike: the first five segments each match on their own, the
    resource part (which may contain ``:``) matches as a whole."""
    if pattern == "*":
        return True
    pp = pattern.split(":", 5)
    ap = arn.split(":", 5)
    if len(pp) != 6 or len(ap) != 6:
        return glob_match(pattern, arn)
    for p, a in zip(pp, ap):
        if not glob_match(p, a):
            return False
    return True


def lookup(context: Mapping[str, Any], key: str) -> Any:
    """Context value for a (case-insensitive) key; ``context`` keys are already lower-cased."""
    return context.get(key.lower())


def substitute(text: str, context: Mapping[str, Any]) -> list[tuple[bool, str]] | None:
    """Split ``text`` into (literal, piece) parts with policy variables resolved.

    ``literal`` pieces came from a variable and must match verbatim (no wildcard meaning). Returns
    None when a variable has no value and no default: the element then matches nothing.
    """
    if "${" not in text:
        return [(False, text)]
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _VAR.finditer(text):
        parts.append((False, text[pos:m.start()]))
        inner = m.group(1).strip()
        if inner in ("*", "?", "$"):
            parts.append((True, inner))
        else:
            key, sep, default = inner.partition(",")
            value = lookup(context, key.strip())
            if isinstance(value, bool):
                value = "true" if value else "false"
            if isinstance(value, (int, float)):
                value = str(value)
            if not isinstance(value, str):
                default = default.strip()
                if sep and len(default) >= 2 and default[0] == default[-1] == "'":
                    value = default[1:-1]
                else:
                    return None
            parts.append((True, value))
        pos = m.end()
    parts.append((False, text[pos:]))
    return parts


def parts_match(parts: list[tuple[bool, str]], value: str, *, ignore_case: bool = False, arn: bool = False) -> bool:
    if all(not lit for lit, _ in parts):
        pattern = "".join(p for _, p in parts)
        return arn_matches(pattern, value) if arn else glob_match(pattern, value, ignore_case=ignore_case)
    # Variable values are literal: mark their wildcard characters so they match only themselves.
    out = []
    for lit, piece in parts:
        for ch in piece:
            out.append(re.escape(ch) if lit else ".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    # With a variable in it, an ARN pattern matches as a whole (variables sit in the resource part).
    return re.fullmatch("".join(out), value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def literal_value(parts: list[tuple[bool, str]]) -> str:
    return "".join(p for _, p in parts)


# --- principals --------------------------------------------------------------------------------

_ACCOUNT_RE = re.compile(r"^\d{12}$")


def principal_identities(principal: str, account: str, session_arn: str | None) -> tuple[set[str], str | None]:
    """The ARNs that name the caller directly, and the role ARN suffix (``:role/NAME``) when the
    caller is a role or a role session (a statement naming the role matches its sessions)."""
    # A role ARN never names the caller directly: grants to it are capped like the role's own
    # permissions (boundary, session policy); only a session ARN or user ARN is "direct".
    direct = {principal} if ":role/" not in principal else set()
    role_name = None
    if session_arn:
        direct.add(session_arn)
    for arn in (principal, session_arn or ""):
        if ":assumed-role/" in arn:
            role_name = arn.split(":assumed-role/", 1)[1].split("/", 1)[0]
        elif ":role/" in arn and arn.startswith("arn:"):
            role_name = arn.rsplit("/", 1)[-1]
    return direct, role_name


def principal_match(element: Any, *, principal: str, account: str, direct: set[str], role_name: str | None,
                    where: str) -> str | None:
    """How a Principal element matches the caller: DIRECT, ROLE, ACCOUNT or None."""
    from rolesmith.evaluator.model import PolicyError

    if element == "*":
        return DIRECT
    if not isinstance(element, Mapping):
        raise PolicyError(f"{where}: Principal must be \"*\" or an object like {{\"AWS\": [...]}}, got {element!r}")
    best: str | None = None
    for kind, values in element.items():
        vals = [values] if isinstance(values, str) else values
        if not isinstance(vals, list) or not all(isinstance(v, str) for v in vals):
            raise PolicyError(f"{where}: Principal {kind} must be a string or a list of strings")
        if kind == "AWS":
            for v in vals:
                got = _aws_principal(v, principal=principal, account=account, direct=direct, role_name=role_name)
                if got == DIRECT:
                    return DIRECT
                if got == ROLE or (got == ACCOUNT and best is None):
                    best = got
        elif kind in ("Service", "Federated", "CanonicalUser"):
            if principal in vals:
                return DIRECT
        else:
            raise PolicyError(f"{where}: unknown Principal type {kind!r} (use AWS, Service, Federated or CanonicalUser)")
    return best


def _aws_principal(value: str, *, principal: str, account: str, direct: set[str], role_name: str | None) -> str | None:
    if value == "*":
        return DIRECT
    if value in direct:
        return DIRECT
    if _ACCOUNT_RE.match(value):
        return ACCOUNT if value == account else None
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) == 6 and parts[5] == "root":
            return ACCOUNT if parts[4] == account else None
        if len(parts) == 6 and parts[2] == "iam" and parts[4] == account and parts[5].startswith("role/"):
            if role_name is not None and parts[5].rsplit("/", 1)[-1] == role_name:
                return ROLE
    return None
