"""Render an ``ExplainResult``: a text block per denial a person can act on, or the documented JSON."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from rolesmith.explain.model import ExplainResult, Explanation, Fix

_WHERE = {
    "identity": "an identity policy of",
    "resource": "the resource policy of",
    "key-policy": "the key policy of",
    "trust-policy": "the trust policy of",
    "scp": "the SCP",
    "rcp": "the RCP",
    "boundary": "the permissions boundary",
    "session": "the session policy of",
    "vpc-endpoint": "the VPC endpoint policy of",
}


def render_json(result: ExplainResult) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n"


def _indent(text: str, pad: str) -> str:
    return "\n".join(pad + line for line in text.splitlines())


def _fix_lines(n: int, fix: Fix) -> list[str]:
    target = fix.target or "<unknown: see missing>"
    if fix.op == "add-statements":
        head = f"add to {_WHERE.get(fix.layer, fix.layer)} {target}"
    elif fix.op == "change-statement":
        head = f"change the Deny {('Sid ' + fix.sid) if fix.sid else ('#' + str(fix.index)) if fix.index is not None else ''}"
        head = head.rstrip() + f" in {fix.policy or _WHERE.get(fix.layer, fix.layer)} ({target})"
    elif fix.op == "put-ownership-controls":
        bucket = target.split(":::", 1)[-1]
        head = f"set Object Ownership of {target}:"
        body = (f"aws s3api put-bucket-ownership-controls --bucket {bucket} "
                f"--ownership-controls '{json.dumps(fix.document, separators=(',', ':'))}'")
        return [f"  fix {n}  {head}", f"         ({fix.summary})", _indent(body, "         ")]
    else:
        head = f"upload as {target} with x-amz-acl: bucket-owner-full-control"
        return [f"  fix {n}  {head}", f"         ({fix.summary})"]
    lines = [f"  fix {n}  {head}", f"         ({fix.summary})"]
    body = fix.document if fix.op == "add-statements" else fix.statement
    if body is not None:
        lines.append(_indent(json.dumps(body, indent=2), "         "))
    return lines


def _block(e: Explanation) -> list[str]:
    when = ""
    if e.time is not None:
        when = "  " + datetime.fromtimestamp(e.time, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"DENIED {e.event}{when}  {e.origin}"]
    if e.principal or e.caller:
        lines.append(f"  who    {e.principal or 'unnamed caller: userIdentity ' + str(e.caller)}")
    if e.request is not None:
        acct = f" (account {e.request.resource_account})" if e.request.resource_account else ""
        lines.append(f"  what   {e.request.action} on {e.request.resource}{acct}")
    layer = f" [{e.layer}]" if e.layer else ""
    hint = f" ({e.hint})" if e.hint else ""
    lines.append(f"  why    {e.reason}{layer}{hint}: {e.summary}")
    lines.append(f"         decided from: {e.basis}")
    for s in e.statements:
        lines.append(f"  stmt   {s.effect} {s.sid or '#' + str(s.index)} in {s.layer} policy {s.policy}")
    for note in e.notes:
        lines.append(f"  note   {note}")
    for n, fix in enumerate(e.fixes, 1):
        lines += _fix_lines(n, fix)
    for m in e.missing:
        lines.append(f"  needs  {m}")
    return lines


def render_text(result: ExplainResult) -> str:
    if not result.explanations:
        return f"no denied events in {result.events_read} events\n"
    counts: dict[str, int] = {}
    for e in result.explanations:
        counts[e.reason] = counts.get(e.reason, 0) + 1
    out = [f"{len(result.explanations)} denied of {result.events_read} events: "
           + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    for e in result.explanations:
        out += _block(e) + [""]
    return "\n".join(out)
