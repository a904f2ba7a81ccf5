"""The terminal report of ``rolesmith tighten``: what a reviewer reads before approving the change."""

from __future__ import annotations

import textwrap

from rolesmith.tighten.model import RiskyGrant, TightenReport

_WIDTH = 100
_PER_CODE = 3  # findings shown per code: the JSON report has them all


def _names(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=_WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_on_hyphens=False, break_long_words=False) or [indent]


def _risky(title: str, grants: tuple[RiskyGrant, ...]) -> list[str]:
    gone = [g for g in grants if g.status != "kept"]
    lines = [f"{title} ({len(gone)} of {len(grants)} go away):" if grants else f"{title}: none"]
    for g in grants:
        cond = " (conditional)" if g.conditional else ""
        if g.status == "removed":
            verdict = "removed"
        elif g.status == "defused":
            verdict = "defused (still granted on " + _names(list(g.now), 2) + ", without the grant that made it risky)"
        elif g.status == "narrowed":
            verdict = "narrowed to " + _names(list(g.now), 3)
        else:
            verdict = "KEPT on " + _names(list(g.now), 3)
        lines += _wrap(f"{g.action} on {_names(list(g.resources), 3)}{cond} [{g.policy}] ({g.why}): {verdict}", "  ")
    return lines


def format_text(report: TightenReport) -> str:
    cur = report.current
    lines = [f"Role {report.role}"]
    for p in cur.policies:
        version = f", {p.version_id}" if p.version_id else ""
        lines.append(f"  policy    {p.name} ({p.kind}{version})")
    lines.append(f"  boundary  {cur.boundary.name if cur.boundary else 'none'} (kept as is)")
    for src in report.usage.sources:
        lines += _wrap(src, "  usage     ")
    total, used = report.granted_total, report.used_total
    share = 100 * used / total if total else 0.0
    pct = "" if not total else (" (<0.1%)" if 0 < share < 0.1 else f" ({share:.1f}%)")
    lines += ["", f"{used} of {total} granted actions used{pct}", ""]
    active = [s for s in report.services if s.used or s.used_not_granted or s.evidence != "none"]
    idle = [s for s in report.services if s not in active]
    width = max((len(s.service) for s in active), default=7)
    for s in active:
        res = f"resources: {len(s.resources_granted)} granted, {len(s.resources_used)} used"
        if s.resources_granted == ("*",):
            res = f"resources: * granted, {len(s.resources_used)} used"
        evidence = "" if s.evidence == "call" else f" [evidence: Access Advisor, {s.evidence} level]"
        lines.append(f"  {s.service:<{width}}  {len(s.used)} of {s.granted} actions used  {res}{evidence}")
        if s.used:
            lines += _wrap("used: " + _names([a.split(":", 1)[1] for a in s.used]), "      ")
        if s.used_not_granted:
            lines += _wrap("used, not granted by these policies: " + _names(list(s.used_not_granted)), "      ")
    if idle:
        idle_actions = sum(s.granted for s in idle)
        lines += [""] + _wrap(
            f"Granted, never used: {len(idle)} services, {idle_actions} actions ({_names([s.service for s in idle], 10)})", ""
        )
    lines += [""] + _risky("Escalation-capable grants", report.escalation)
    lines += [""] + _risky("Data-access grants on every resource", report.data_access)
    doc = next((p.policy for p in report.replacement.identity_policies), {"Statement": []})
    statements = doc.get("Statement", [])
    v = report.verification
    lines += ["", f"Replacement: {len(statements)} statements (render with --format json or cloudformation)"]
    if v.ok:
        lines.append(f"Verified with the evaluator: {v.checked} used calls still allowed")
    else:
        lines.append(f"VERIFICATION FAILED: {len(v.failures)} of {v.checked} used calls would be denied:")
        lines += [f"  {c.action} on {c.resource}: {c.decision}" for c in v.failures]
    if report.findings:
        lines += ["", "Findings:"]
        by_code: dict[str, list[str]] = {}
        for f in report.findings:
            by_code.setdefault(f.code, []).append(f.message)
        for code, messages in by_code.items():
            for message in messages[:_PER_CODE]:
                lines += _wrap(f"{code}: {message}", "  ")
            if len(messages) > _PER_CODE:
                lines.append(f"  {code}: … {len(messages) - _PER_CODE} more (--format json lists all)")
    return "\n".join(lines) + "\n"
