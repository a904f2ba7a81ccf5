"""The per-run report converge prints: text for people, JSON (``ConvergeResult.to_dict``) for tools."""

from __future__ import annotations

import json

from rolesmith.converge.model import ConvergeResult


def render_json(result: ConvergeResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=str) + "\n"


def render_text(result: ConvergeResult) -> str:
    lines = [f"converge {result.role}: {result.stopped_reason}: {result.message}"]
    for run in result.runs:
        reasons = ", ".join(f"{k} x{v}" for k, v in run.reasons().items()) or "no denials"
        lines.append(f"run {run.number}: exit {run.exit_code}, {len(run.denials)} denied ({reasons}), "
                     f"{sum(f.applied for f in run.fixes)} fix(es) applied, {run.seconds:.1f} s")
        for d in run.denials:
            lines.append(f"  denied {d.event} on {d.resource or '?'}: {d.reason}")
        for f in run.fixes:
            state = "applied" if f.applied else "not applied"
            lines.append(f"  fix ({state}, {f.source}) {f.layer} {f.target or '?'}: {f.summary}")
    if result.handoff:
        lines.append("for the resources' owners (statements to add to their policies):")
        for f in result.handoff:
            lines.append(f"  {f.layer} of {f.target or '?'}:")
            lines += ["    " + line for line in json.dumps(list(f.statements), indent=2).splitlines()]
    if result.restored:
        lines.append("the role's original policies were restored")
    lines += [str(p) for p in result.outputs]
    return "\n".join(lines) + "\n"
