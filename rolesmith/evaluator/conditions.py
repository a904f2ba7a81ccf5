"""Condition operators, compiled once per statement.

Docs: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
(operators, ``...IfExists``, ``Null``; a negated operator is true when the key is absent),
.../reference_policies_condition-single-vs-multi-valued-context-keys.html (``ForAnyValue:`` /
``ForAllValues:``: ForAllValues is true for an absent key, ForAnyValue false) and
.../reference_policies_condition-logic-multiple-context-keys-or-values.html (values OR'd, keys and
operators AND'd). Condition key names are case-insensitive; string values are not.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from datetime import datetime, timezone
from collections.abc import Callable, Mapping
from typing import Any

from rolesmith.evaluator.match import glob_match, parts_match, substitute
from rolesmith.evaluator.model import PolicyError

Context = Mapping[str, Any]


class Unresolved(Exception):
    """A policy variable without a value: "If AWS cannot resolve a variable, this might cause the
    entire statement to be invalid" (reference_policies_variables.html), so the statement does not
    apply. Raised while matching, caught per statement by the engine; never escapes the package."""
Check = Callable[[Context], bool]

# base operator (lower case) -> (family, negated)
_OPERATORS: dict[str, tuple[str, bool]] = {
    "stringequals": ("string", False), "stringnotequals": ("string", True),
    "stringequalsignorecase": ("stringi", False), "stringnotequalsignorecase": ("stringi", True),
    "stringlike": ("like", False), "stringnotlike": ("like", True),
    "numericequals": ("num=", False), "numericnotequals": ("num=", True),
    "numericlessthan": ("num<", False), "numericlessthanequals": ("num<=", False),
    "numericgreaterthan": ("num>", False), "numericgreaterthanequals": ("num>=", False),
    "dateequals": ("date=", False), "datenotequals": ("date=", True),
    "datelessthan": ("date<", False), "datelessthanequals": ("date<=", False),
    "dategreaterthan": ("date>", False), "dategreaterthanequals": ("date>=", False),
    "bool": ("bool", False), "binaryequals": ("binary", False),
    "ipaddress": ("ip", False), "notipaddress": ("ip", True),
    "arnequals": ("arn", False), "arnlike": ("arn", False),
    "arnnotequals": ("arn", True), "arnnotlike": ("arn", True),
}
OPERATOR_NAMES = ("Null",) + tuple(
    n for n in (
        "StringEquals StringNotEquals StringEqualsIgnoreCase StringNotEqualsIgnoreCase StringLike StringNotLike "
        "NumericEquals NumericNotEquals NumericLessThan NumericLessThanEquals NumericGreaterThan "
        "NumericGreaterThanEquals DateEquals DateNotEquals DateLessThan DateLessThanEquals DateGreaterThan "
        "DateGreaterThanEquals Bool BinaryEquals IpAddress NotIpAddress ArnEquals ArnLike ArnNotEquals ArnNotLike"
    ).split()
)


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _policy_values(values: Any, where: str) -> list[str]:
    vals = values if isinstance(values, list) else [values]
    out = []
    for v in vals:
        t = _text(v)
        if t is None:
            raise PolicyError(f"{where}: condition values must be strings, numbers or booleans, got {v!r}")
        out.append(t)
    return out


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    t = text.strip()
    if t.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(t), tz=timezone.utc)
    try:
        d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _b64(text: str) -> bytes | str:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text


def _comparer(family: str, raw: list[str], where: str, variables: bool) -> Callable[[str, Context], bool]:
    """A function telling whether one request value matches ANY of the policy values."""
    if family in ("string", "stringi", "like", "arn"):
        ignore = family == "stringi"
        wild = family in ("like", "arn")

        def cmp(r: str, ctx: Context) -> bool:
            for v in raw:
                parts = substitute(v, ctx) if variables else [(False, v)]
                if parts is None:
                    raise Unresolved(v)
                if wild:
                    if parts_match(parts, r, arn=family == "arn"):
                        return True
                else:
                    lit = "".join(p for _, p in parts)
                    if (lit.lower() == r.lower()) if ignore else (lit == r):
                        return True
            return False

        return cmp
    if family.startswith("num"):
        nums = [_number(v) for v in raw]
        if any(n is None for n in nums):
            raise PolicyError(f"{where}: numeric condition value is not a number: {raw!r}")
        op = family[3:]
        return lambda r, ctx: (lambda x: x is not None and any(_ORDER[op](x, n) for n in nums))(_number(r))  # type: ignore[arg-type]
    if family.startswith("date"):
        dates = [_date(v) for v in raw]
        if any(d is None for d in dates):
            raise PolicyError(f"{where}: date condition value is not ISO 8601 or epoch seconds: {raw!r}")
        op = family[4:]
        return lambda r, ctx: (lambda x: x is not None and any(_ORDER[op](x, d) for d in dates))(_date(r))  # type: ignore[arg-type]
    if family == "bool":
        low = [v.lower() for v in raw]
        if any(v not in ("true", "false") for v in low):
            raise PolicyError(f"{where}: Bool condition values must be true or false, got {raw!r}")
        return lambda r, ctx: r.lower() in low
    if family == "binary":
        wanted = [_b64(v) for v in raw]
        return lambda r, ctx: _b64(r) in wanted
    if family == "ip":
        try:
            nets = [ipaddress.ip_network(v.strip(), strict=False) for v in raw]
        except ValueError as err:
            raise PolicyError(f"{where}: IP condition value is not an address or CIDR: {err}") from None

        def ip_cmp(r: str, ctx: Context) -> bool:
            try:
                addr = ipaddress.ip_address(r.strip())
            except ValueError:
                return False
            return any(addr.version == n.version and addr in n for n in nets)

        return ip_cmp
    raise AssertionError(family)  # pragma: no cover


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _request_values(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [t for t in (_text(v) for v in value) if t is not None]
    t = _text(value)
    return None if t is None else [t]


def compile_condition(operator: str, key: str, values: Any, where: str, variables: bool = True) -> Check:
    """One (operator, key, values) triple as a function of the (lower-cased) request context.
    ``variables``: resolve ``${...}`` in values (policy Version 2012-10-17 only)."""
    op = operator
    set_op = None
    low = op.lower()
    for prefix in ("foranyvalue:", "forallvalues:"):
        if low.startswith(prefix):
            set_op, op, low = prefix[:-1], op[len(prefix):], low[len(prefix):]
    if_exists = low.endswith("ifexists") and low != "ifexists"
    base = low[: -len("ifexists")] if if_exists else low
    lkey = key.lower()
    if base == "null":
        if if_exists or set_op:
            raise PolicyError(f"{where}: unknown condition operator {operator!r} (Null takes no IfExists or set prefix)")
        wanted = [v.lower() for v in _policy_values(values, where)]
        if any(v not in ("true", "false") for v in wanted):
            raise PolicyError(f"{where}: Null condition values must be true or false, got {values!r}")

        def null_check(ctx: Context) -> bool:
            v = ctx.get(lkey)
            absent = v is None
            return any((w == "true") == absent for w in wanted)

        return null_check
    if base not in _OPERATORS:
        raise PolicyError(f"{where}: unknown condition operator {operator!r}; see "
                          "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html")
    family, negated = _OPERATORS[base]
    raw = _policy_values(values, where)
    cmp = _comparer(family, raw, where, variables)

    def check(ctx: Context) -> bool:
        req = _request_values(ctx.get(lkey))
        if req is None:
            if if_exists or set_op == "forallvalues":
                return True
            if set_op == "foranyvalue":
                return False
            return negated
        if set_op == "forallvalues":
            return all(cmp(r, ctx) != negated for r in req)
        if set_op == "foranyvalue":
            return any(cmp(r, ctx) != negated for r in req)
        hit = any(cmp(r, ctx) for r in req)
        return hit != negated

    return check


def compile_conditions(block: Any, where: str, variables: bool = True) -> tuple[Check, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise PolicyError(f"{where}: Condition must be an object of operator -> {{key: values}}")
    checks: list[Check] = []
    for operator, keys in block.items():
        if not isinstance(keys, Mapping):
            raise PolicyError(f"{where}: Condition {operator!r} must map condition keys to values")
        for key, values in keys.items():
            checks.append(compile_condition(str(operator), str(key), values, where, variables))
    return tuple(checks)


__all__ = ["compile_condition", "compile_conditions", "OPERATOR_NAMES", "glob_match"]
