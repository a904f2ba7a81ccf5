"""The converge loop: run, explain every denial, apply the smallest fixes, wait, run again."""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from rolesmith.converge import docs
from rolesmith.converge.model import (INLINE_NAME, AppliedFix, ConvergeError, ConvergeOptions, ConvergeResult, Denial,
                                      RunReport, StopReason)
from rolesmith.explain.model import Explanation, Fix
from rolesmith.policies.model import PolicySet
from rolesmith.trail.model import Event

# Layers converge never edits: the change belongs to the organization or the role's administrators.
GUARDRAILS = frozenset({"scp", "rcp", "boundary", "session", "vpc-endpoint"})
RESOURCE_LAYERS = frozenset({"resource", "key-policy", "trust-policy"})


class Backend(Protocol):
    """Where the role lives: the sandbox (``converge.sandbox``) or an AWS account (``converge.aws``)."""

    role_arn: str

    def prepare(self, initial: Mapping[str, Any] | None, start_from: str) -> None: ...
    def identity_document(self) -> Mapping[str, Any] | None: ...
    def put_identity(self, document: Mapping[str, Any]) -> None: ...
    def resource_document(self, layer: str, target: str) -> Mapping[str, Any] | None: ...
    def put_resource(self, layer: str, target: str, document: Mapping[str, Any]) -> None: ...
    def put_ownership(self, bucket: str, ownership: str) -> None: ...
    def run(self, command: Sequence[str], run_dir: Path) -> tuple[int, int | None, Path]: ...
    def store(self) -> Any: ...
    def bucket_key(self, bucket: str) -> str | None: ...
    def wait(self, statements: Sequence[Mapping[str, Any]]) -> None: ...
    def finish(self, converged: bool) -> bool: ...
    def close(self) -> None: ...


class Interrupted(ConvergeError):
    exit_code = 130


def _is_ours(arn: str | None, role_arn: str) -> bool:
    if not arn:
        return False
    if arn == role_arn:
        return True
    # arn:aws:sts::ACCT:assumed-role/NAME/session is a session of arn:aws:iam::ACCT:role[/path]/NAME
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        name = parts[5].split("/")[1]
        return role_arn.startswith(f"arn:aws:iam::{parts[4]}:role/") and role_arn.rsplit("/", 1)[-1] == name
    return False


def _denial(ex: Explanation) -> Denial:
    return Denial(event=ex.event, principal=ex.principal, resource=ex.request.resource if ex.request else None,
                  reason=ex.reason, summary=ex.summary)


# S3 object actions that make S3 call KMS with the caller's permissions on an SSE-KMS bucket
# (shared/reference/s3_kms: "Permissions to use an AWS KMS key for SSE-KMS"): writes need
# GenerateDataKey, reads (and a copy's source) need Decrypt.
_S3_KMS = {"s3:PutObject": "kms:GenerateDataKey", "s3:GetObject": "kms:Decrypt",
           "s3:GetObjectVersion": "kms:Decrypt"}


def _anticipated(event: Event, bucket_key: BucketKey) -> list[dict[str, Any]]:
    """Identity statements for every use the denied call implies, observed and inferred (the KMS key
    behind an SSE-KMS put, PassRole behind RunInstances): granted now, they never fail the next run.
    Where the request names no key, the bucket's default encryption key (``bucket_key``) stands in
    for the one S3 will use."""
    from rolesmith.actions import uses_for

    out = []
    uses = uses_for(event)
    for use in (*uses.uses, *uses.inferred):
        if use.partial or (use.resource == "*" and use.inferred_by):
            continue  # a guessed ARN widens the grant; let the next run name it
        out.append(docs.statement_for_use(use.action, use.resource, use.conditions))
        kms_action = _S3_KMS.get(use.action)
        if kms_action and use.resource.startswith("arn:aws:s3:::") and "/" in use.resource:
            key = bucket_key(use.resource[13:].split("/", 1)[0])
            if key and ":alias/aws/" not in key:  # an AWS managed key needs no caller statement
                via = f"s3.{event.region or key.split(':')[3]}.amazonaws.com"
                out.append(docs.statement_for_use(kms_action, key, [("StringEquals", "kms:ViaService", via)]))
    return out


BucketKey = Callable[[str], "str | None"]


# An id AWS generates: a short type prefix and a long random part (j-2AXXXXXXGAPLF, i-0abc…, sg-…).
# Names people choose (a bucket "acme-service-reports") have no such shape and are never widened.
_GENERATED_ID = re.compile(r"[a-z]{1,5}-[A-Za-z0-9]{8,40}")


def _created_ids(events: Sequence[Event]) -> set[str]:
    """Ids the run's own successful calls returned (a cluster's j-…, an instance's i-…): a new one each run."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and _GENERATED_ID.fullmatch(value) and any(c.isdigit() or c.isupper() for c in value):
            out.add(value)

    for ev in events:
        if not ev.denied:
            walk(ev.response)
    return out


def _widen(fix: AppliedFix, ids: set[str]) -> AppliedFix:
    """A grant on a resource this run created would name next run's resource wrongly: its id becomes ``*``."""
    if fix.layer != "identity" or not ids:
        return fix
    text = json.dumps(list(fix.statements))
    for rid in sorted(ids, key=len, reverse=True):
        text = re.sub(rf"(?<=[/:]){re.escape(rid)}(?=\"|/)", "*", text)
    return replace(fix, statements=tuple(json.loads(text)))


def _plan(explanations: Sequence[Explanation], events: Sequence[Event], role_arn: str,
          bucket_key: BucketKey, store: Any = None, created: set[str] | None = None,
          anticipate: bool = True) -> list[AppliedFix]:
    plan: list[AppliedFix] = []
    for ex in explanations:
        for fix in ex.fixes:
            plan.append(_widen(_classify(fix, role_arn), created or set()))
    for ev in events if anticipate else ():
        if ev.denied and _is_ours(_principal_of(ev), role_arn):
            stmts = _anticipated(ev, bucket_key)
            if stmts:
                plan.append(_widen(AppliedFix(
                    layer="identity", target=role_arn, op="add-statements", source="anticipated", applied=False,
                    summary=f"grant every use {ev.source.split('.', 1)[0]}:{ev.name} implies",
                    statements=tuple(stmts)), created or set()))
                plan += _key_policy_gaps(stmts, role_arn, store)
    return plan


def _key_policy_gaps(stmts: Sequence[Mapping[str, Any]], role_arn: str, store: Any) -> list[AppliedFix]:
    """Another account's bucket or key must allow the role in its own policy too (cross-account access
    needs both sides): when it does not, the fix for the resource's owner is planned now rather than
    one run later."""
    from rolesmith.evaluator import NamedPolicy, Request, evaluate
    from rolesmith.explain import fixes as fx

    out: list[AppliedFix] = []
    account = role_arn.split(":")[4]
    account_of = getattr(store, "account_of", None)
    for st in stmts:
        resource = str(st.get("Resource", ""))
        if resource.startswith("arn:aws:kms:"):
            owner, layer, kind = resource.split(":")[4], "key-policy", "kms-key"
        elif resource.startswith("arn:aws:s3:::") and callable(account_of):
            owner, layer, kind = account_of(resource), "resource", "s3-bucket"
        else:
            continue
        if store is None or not owner or owner == account:
            continue
        cond = {k: dict(v) for k, v in (st.get("Condition") or {}).items()}
        context = {k: v for c in cond.values() for k, v in c.items()}
        context.update({"kms:CallerAccount": account, "aws:PrincipalArn": role_arn, "aws:PrincipalAccount": account})
        req = Request(principal=role_arn, principal_account=account, action=str(st["Action"]), resource=resource,
                      resource_account=owner, context=context)
        pol = replace(store.policies_for(req), identity=(NamedPolicy(name=INLINE_NAME, document={
            "Version": "2012-10-17", "Statement": [dict(st)]}),))
        gaps = getattr(store, "gaps_for", None)
        if callable(gaps) and gaps(req):
            continue  # the other account's policy could not be read: let a denial say whether it refuses
        if evaluate(req, pol).decision == "Allowed":
            continue
        fix = fx.add_resource(resource, role_arn, [str(st["Action"])],
                              f"account {owner} must let {role_arn} {st['Action']} in its {kind} policy",
                              layer=layer, kind=kind, conditions=cond or None)
        out.append(replace(_classify(fix, role_arn), source="anticipated"))
    return out


def _principal_of(ev: Event) -> str | None:
    p = getattr(ev, "principal", None)
    return getattr(p, "arn", None) if p is not None else None


def _classify(fix: Fix, role_arn: str) -> AppliedFix:
    stmts = tuple((fix.document or {}).get("Statement") or ()) if fix.op == "add-statements" else ()
    layer = fix.layer
    if fix.op in ("put-ownership-controls", "use-canned-acl"):
        layer = "ownership"
    elif layer == "identity" and not _is_ours(fix.target, role_arn):
        layer = "identity-other"  # another principal's policy: not converge's to change
    return AppliedFix(layer=layer, target=fix.target, op=fix.op, summary=fix.summary, statements=stmts,
                      document=fix.document, applied=False)


def _stop_for(plan: Sequence[AppliedFix], options: ConvergeOptions) -> tuple[StopReason, str] | None:
    guard = [f for f in plan if f.layer in GUARDRAILS]
    if guard:
        f = guard[0]
        return "guardrail", (f"a {f.layer} refuses the workload ({f.summary}); converge never changes SCPs, "
                             "boundaries or session policies: take the fix to their owner")
    if any(f.op == "use-canned-acl" for f in plan) and not any(f.op == "put-ownership-controls" for f in plan):
        return "no-fix", "the workload must send a canned ACL: change its code (see the fixes)"
    if not options.apply_resource_policies:
        hand = [f for f in plan if f.layer in RESOURCE_LAYERS or f.layer == "ownership"]
        if hand:
            return "resource-owner", (f"{len(hand)} resource-policy change(s) needed: hand the statements to the "
                                      "resources' owners, or rerun with --apply-resource-policies")
    return None


def _apply(backend: Backend, plan: list[AppliedFix], options: ConvergeOptions) -> tuple[list[AppliedFix], list[dict[str, Any]]]:
    """Apply what may be applied; returns the fixes (``applied`` set) and the identity statements added."""
    done: list[AppliedFix] = []
    ident_doc = backend.identity_document()
    added: list[dict[str, Any]] = []
    resource_docs: dict[tuple[str, str], Mapping[str, Any] | None] = {}
    for fix in plan:
        if fix.layer == "identity" and fix.op == "add-statements":
            ident_doc, changed = docs.merge(ident_doc, fix.statements)
            if changed:
                added += [dict(s) for s in fix.statements]
            done.append(replace(fix, applied=changed))
        elif fix.layer in RESOURCE_LAYERS and fix.op == "add-statements" and fix.target:
            key = (fix.layer, fix.target)
            if key not in resource_docs:
                resource_docs[key] = backend.resource_document(*key)
            resource_docs[key], changed = docs.merge(resource_docs[key], fix.statements)
            done.append(replace(fix, applied=changed))
        elif fix.op == "put-ownership-controls" and fix.target:
            rules = ((fix.document or {}).get("Rules") or [{}])
            ownership = rules[0].get("ObjectOwnership", "BucketOwnerEnforced")
            backend.put_ownership(fix.target.rsplit(":", 1)[-1], ownership)
            done.append(replace(fix, applied=True))
        else:
            done.append(fix)
    if added:
        backend.put_identity(ident_doc)  # type: ignore[arg-type]
    for key, doc in resource_docs.items():
        if doc is not None and any(f.applied and (f.layer, f.target) == key for f in done):
            backend.put_resource(key[0], key[1], doc)
    return done, added


def converge(command: Sequence[str], options: ConvergeOptions) -> ConvergeResult:
    """Run ``command`` as ``options.role`` until it runs without a denial (or ``max_runs``); see the README."""
    if not command:
        raise ConvergeError("no command to converge: put it after `--`, e.g. `rolesmith converge --role R -- python app.py`")
    if options.max_runs < 1:
        raise ConvergeError(f"--max-runs {options.max_runs}: give at least 1")
    if options.start_from == "recording" and options.recording is None:
        raise ConvergeError("--start-from recording needs the recording: add --recording FILE, e.g. `--recording out/recording.jsonl`")
    backend = _open(options)
    finished = False
    try:
        result = _loop(backend, command, options)
        finished = True
        restored = backend.finish(result.stopped_reason == "converged")
        return replace(result, restored=restored)
    except BaseException:  # Ctrl-C and errors alike: the role's original policies go back first
        if not finished:
            backend.finish(False)
        raise
    finally:
        backend.close()


def _open(options: ConvergeOptions) -> Backend:
    if options.sandbox or options.scenario is not None:
        if options.scenario is None:
            raise ConvergeError("--sandbox needs --scenario FILE (a sandbox scenario YAML, see `rolesmith sandbox`)")
        from rolesmith.converge.sandbox import SandboxBackend

        return SandboxBackend(options)
    from rolesmith.converge.aws import AwsBackend

    return AwsBackend(options)


def _initial(options: ConvergeOptions, role_arn: str) -> Mapping[str, Any] | None:
    if options.start_from != "recording":
        return None
    from rolesmith.policies import UnknownPrincipal, build_policies

    try:
        built = build_policies([options.recording], replace(options.build, principals=(role_arn,)))  # type: ignore[list-item]
    except UnknownPrincipal:
        raise ConvergeError(f"--recording {options.recording}: no call by {role_arn} in it; fix: record the workload"
                            " as that role, or start from --start-from current") from None
    doc: Mapping[str, Any] | None = None
    for p in built.policies.identity_policies:
        if _is_ours(p.principal, role_arn):
            doc, _ = docs.merge(doc, p.policy.get("Statement") or ())
    return doc or docs.empty()


def _loop(backend: Backend, command: Sequence[str], options: ConvergeOptions) -> ConvergeResult:
    from rolesmith.explain import explain_event
    from rolesmith.explain.trailindex import TrailIndex
    from rolesmith.trail import read_trail

    clock = options.clock or time.monotonic
    say = options.progress or (lambda _line: None)
    backend.prepare(_initial(options, backend.role_arn), options.start_from)
    runs: list[RunReport] = []
    handoff: list[AppliedFix] = []
    stop: tuple[StopReason, str] | None = None
    last_trail: Path | None = None
    for number in range(1, options.max_runs + 1):
        started = clock()
        run_dir = options.out_dir / f"run-{number}"
        say(f"converge: run {number}: {' '.join(command)}")
        code, sig, trail = backend.run(command, run_dir)
        if sig in (signal.SIGINT, signal.SIGTERM):
            raise Interrupted(f"run {number}: interrupted by signal {sig}; the role's original policies are restored "
                              "unless --keep")
        last_trail = trail
        events = list(read_trail([trail]))
        denied = [e for e in events if e.denied]
        if not denied:
            runs.append(RunReport(number=number, exit_code=code, denials=(), fixes=(), seconds=clock() - started,
                                  trail=trail))
            if code == 0:
                stop = ("converged", f"run {number} made no denied call and the command succeeded")
            else:  # a crash, or a Ctrl-C the child turned into an exit code: not a workload that runs
                stop = ("error", f"run {number}: the command exited with code {code} without a denied call; "
                                 "fix the command, then converge again")
            break
        store = backend.store()
        index = TrailIndex.build(events)
        explanations = [explain_event(e, store, trail=index) for e in denied]
        plan = _plan(explanations, denied, backend.role_arn, backend.bucket_key, store, _created_ids(events),
                     options.anticipate)
        stop = _stop_for(plan, options)
        if stop is not None:
            handoff = [f for f in plan if f.layer not in ("identity",)]
            runs.append(RunReport(number=number, exit_code=code, denials=tuple(_denial(x) for x in explanations),
                                  fixes=tuple(plan), seconds=clock() - started, trail=trail))
            break
        applied, added = _apply(backend, plan, options)
        if not any(f.applied for f in applied):
            handoff = [f for f in applied if not f.applied and f.layer != "identity"]
            stop = ("no-fix", f"run {number}: no fix left to apply for {len(denied)} denied call(s); see the report")
            runs.append(RunReport(number=number, exit_code=code, denials=tuple(_denial(x) for x in explanations),
                                  fixes=tuple(applied), seconds=clock() - started, trail=trail))
            break
        if added:
            say(f"converge: run {number}: waiting for {len(added)} statement(s) to be in effect")
            backend.wait(added)
        runs.append(RunReport(number=number, exit_code=code, denials=tuple(_denial(x) for x in explanations),
                              fixes=tuple(f for f in applied if f.applied or f.source == "explain"),
                              seconds=clock() - started, trail=trail))
    if stop is None:
        stop = ("max-runs", f"still denied after {options.max_runs} runs: raise --max-runs or read the last run's report")
    policies, outputs = _final(options, backend.role_arn, last_trail)
    unique = {json.dumps([f.layer, f.target, list(f.statements)], sort_keys=True, default=str): f for f in handoff}
    return ConvergeResult(role=backend.role_arn, runs=tuple(runs), policies=policies, stopped_reason=stop[0],
                          message=stop[1], handoff=tuple(unique.values()), outputs=tuple(outputs))


def _final(options: ConvergeOptions, role_arn: str, trail: Path | None) -> tuple[PolicySet, list[Path]]:
    """The final policy set, built and rendered exactly as ``rolesmith build`` does from the last run."""
    if trail is None:
        return PolicySet(), []
    from rolesmith.policies import UnknownPrincipal, build_policies
    from rolesmith.render import render

    try:
        built = build_policies([trail], replace(options.build, principals=options.build.principals or (role_arn,)))
    except UnknownPrincipal:
        return PolicySet(), []  # the run made no call as the role (it crashed first): nothing to write
    policies = built.policies
    outputs: list[Path] = []
    options.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render(policies, fmt=options.fmt, split=False).items():
        target = options.out_dir / name
        target.write_text(text, encoding="utf-8")
        outputs.append(target)
    return policies, outputs
