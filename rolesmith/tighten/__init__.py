"""``rolesmith tighten``: what a broad role uses, what it could do but never does, and its replacement.

``tighten(role, options)`` reads the role's current policies (IAM or a ``--current-policies``
directory), what it used (trails through the ``build`` pipeline, CloudTrail, Access Advisor),
compares both with wildcards expanded against the action dataset, and returns the replacement
``build`` would write — never wider than today's grants, conditions kept — verified with the
evaluator. ``apply_replacement`` / ``rollback`` write it to IAM and restore it from the backup.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rolesmith.tighten.errors import TightenAwsError, TightenInputError, VerificationError
from rolesmith.tighten.model import (
    CurrentPolicy,
    CurrentRole,
    RiskyGrant,
    ServiceSummary,
    TightenOptions,
    TightenReport,
    Usage,
    UsedCall,
    Verification,
)


def read_current(role: str, options: TightenOptions) -> CurrentRole:
    from rolesmith.tighten.current import read_role_dir, read_role_iam

    if options.current_policies is not None:
        return read_role_dir(role, options.current_policies)
    return read_role_iam(role, session=options.session)


def tighten(role: str, options: TightenOptions) -> TightenReport:
    """The tighten report for ``role`` (name or ARN): read-only, nothing is written anywhere."""
    from rolesmith.policies import BuildOptions, UnknownPrincipal, build_policies
    from rolesmith.policies.model import Finding
    from rolesmith.tighten import compare, replace, usage

    if not (options.trails or options.cloudtrail or options.cloudtrail_bucket or options.access_advisor):
        raise TightenInputError(
            f"{role}: no usage source; pass --trail PATH, --cloudtrail, --cloudtrail-bucket BUCKET or --access-advisor"
        )
    if options.cloudtrail_bucket:
        usage.split_bucket(options.cloudtrail_bucket)  # a bad name fails before any AWS call
    current = read_current(role, options)
    sources: list[str] = [str(p) for p in options.trails]
    findings = []
    calls: tuple[UsedCall, ...] = ()
    built = None
    with tempfile.TemporaryDirectory(prefix="rolesmith-tighten-") as tmp:
        paths = [Path(p) for p in options.trails]
        if options.cloudtrail:
            paths.append(usage.lookup_events(current.arn, options.days, Path(tmp), session=options.session,
                                             now=options.now))
            sources.append(f"CloudTrail LookupEvents, last {options.days} days")  # of the session's region only
        if options.cloudtrail_bucket:
            logs = usage.bucket_logs(options.cloudtrail_bucket, current.account or "", options.days, Path(tmp),
                                     session=options.session, now=options.now)
            paths.extend(logs)
            sources.append(f"s3://{options.cloudtrail_bucket.removeprefix('s3://')}: {len(logs)} log files, last {options.days} days")
        if paths:
            build_options = BuildOptions(principals=(current.arn,), generalize=options.generalize, skip_bad=options.skip_bad)
            try:
                result = build_policies(paths, build_options)
            except UnknownPrincipal as err:
                # An idle role is an answer, not an error: nothing used, everything granted can go.
                seen = str(err).rpartition("fix: ")[2]
                findings.append(Finding(code="NO_USE", message=f"the trails hold no call by {current.arn}: check the "
                                        f"role ARN (a role path is part of it) or the time window ({seen})"))
                result = None
            if result is not None:
                built = result.policies
                calls = usage.uses_from_graph(result.graph, current.arn, "trail")
                # The current trust policy is kept, so build's remark that the trail shows none is moot.
                findings.extend(f for f in built.findings if not (current.trust and f.code == "NO_TRUST_EVIDENCE"))
                if not calls:
                    findings.append(Finding(code="NO_USE", message=f"the trails hold no successful call by {current.arn}"))
    advisor: tuple[UsedCall, ...] = ()
    if options.access_advisor:
        advisor, advisor_findings = usage.access_advisor(current.arn, options.days, session=options.session,
                                                         sleep=options.sleep, now=options.now)
        findings.extend(advisor_findings)
        findings.extend(usage.unbacked_advisor(calls, advisor))
        sources.append(f"IAM Access Advisor, last {options.days} days")
    if not paths_given(options):
        findings.append(Finding(code="NO_TRAIL", message="Access Advisor names no resources, so the replacement is "
                                "empty: pass --trail, --cloudtrail or --cloudtrail-bucket to build one"))
    use = usage_of(calls, advisor, sources)
    new, replace_findings = replace.replacement(current, built)
    findings.extend(replace_findings)
    verification = replace.verify(current, new, calls)
    now = compare.granted(current)
    after = compare.granted(_as_role(current, new))
    return TightenReport(
        role=current.arn,
        current=current,
        usage=use,
        services=compare.service_summaries(now, use),
        escalation=compare.risky_grants(now, after, compare.ESCALATION),
        data_access=compare.risky_grants(now, after, compare.DATA_ACCESS),
        replacement=new,
        verification=verification,
        findings=tuple(findings),
    )


def paths_given(options: TightenOptions) -> bool:
    return bool(options.trails or options.cloudtrail or options.cloudtrail_bucket)


def usage_of(calls: tuple[UsedCall, ...], advisor: tuple[UsedCall, ...], sources: list[str]) -> Usage:
    return Usage(calls=calls, advisor=advisor, sources=tuple(sources))


def _as_role(current: CurrentRole, new: object) -> CurrentRole:
    """The role as it would be with only the replacement attached (boundary unchanged)."""
    doc = next(p.policy for p in new.identity_policies if p.principal == current.arn)  # type: ignore[attr-defined]
    return CurrentRole(arn=current.arn, name=current.name, account=current.account, boundary=current.boundary,
                       trust=current.trust, source=current.source,
                       policies=(CurrentPolicy(name="rolesmith-tightened", kind="inline", document=doc),))


def apply_replacement(report: TightenReport, backup: Path, *, session: object = None) -> "object":
    from rolesmith.tighten.apply import apply_replacement as _apply

    return _apply(report, backup, session=session)


def rollback(backup: Path, *, session: object = None) -> "object":
    from rolesmith.tighten.apply import rollback as _rollback

    return _rollback(backup, session=session)


def format_text(report: TightenReport) -> str:
    from rolesmith.tighten.text import format_text as _format

    return _format(report)


__all__ = [
    "CurrentPolicy",
    "CurrentRole",
    "RiskyGrant",
    "ServiceSummary",
    "TightenAwsError",
    "TightenInputError",
    "TightenOptions",
    "TightenReport",
    "Usage",
    "UsedCall",
    "Verification",
    "VerificationError",
    "apply_replacement",
    "format_text",
    "read_current",
    "rollback",
    "rollback_role",
    "summary_line",
    "tighten",
]


def rollback_role(role: str, backup: Path, *, session: object = None) -> "object":
    """``rollback`` after checking ``backup`` is a backup of ``role`` (name or ARN)."""
    from rolesmith.tighten.apply import load_backup
    from rolesmith.tighten.current import parse_role

    record = load_backup(backup)
    if record["role_name"] != parse_role(role)[0]:
        raise TightenInputError(f"{backup}: a backup of role {record['role_name']}, not {role}; pass that role's backup")
    return rollback(backup, session=session)


def summary_line(report: TightenReport) -> str:
    """One line for stderr when stdout carries JSON or a template."""
    gone = sum(1 for g in report.escalation if g.status != "kept")
    v = report.verification
    check = f"{v.checked} used calls still allowed" if v.ok else f"VERIFICATION FAILED for {len(v.failures)} used calls"
    return (f"rolesmith: {report.role}: {report.used_total} of {report.granted_total} granted actions used; "
            f"{gone} escalation-capable grants go away; {check}")
