"""One recording run: start the captures, run the child, gather the server side, build policies."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from rolesmith.errors import RolesmithError
from rolesmith.policies.model import BuildOptions, Finding, PolicySet
from rolesmith.record.collector import Collector, call_from_hook
from rolesmith.record.identity import IdentityResolver
from rolesmith.record.recording import Recorder, RecordingWriter
from rolesmith.record.runner import run
from rolesmith.trail.secrets import scrub_record

log = logging.getLogger(__name__)
# Seconds a proxy call waits for the hook's copy of the same request (the hook's parameters are
# exact). The hook reports after the response, so on a loaded machine its copy can trail by a second.
_HOOK_HOLD = 2.0
Capture = Literal["auto", "hook", "proxy", "csm"]
HOOK_DIR = Path(__file__).parent / "hook"
OWN_USER_AGENT = "rolesmith-record"
_CA_VARS = ("AWS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class RecordError(RolesmithError):
    exit_code = 2


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordOptions:
    out_dir: Path = Path("out")
    capture: Capture = "auto"
    cloudtrail: bool = False
    cloudtrail_wait: float = 900.0  # seconds; CloudTrail's typical delivery delay
    cloudtrail_bucket: str | None = None  # s3://bucket/prefix of a trail's log files
    # With a scenario sandbox, merge its CloudTrail (immediate, so no wait) even without ``cloudtrail``.
    sandbox_trail: bool = True
    access_advisor: bool = False
    sandbox: bool = False
    scenario: Path | None = None
    fmt: str = "json"  # json | cloudformation | cloudformation-json
    build: BuildOptions = field(default_factory=BuildOptions)
    env: Mapping[str, str] | None = None  # the child's environment; default os.environ
    cwd: Path | None = None
    # Seams: progress of the CloudTrail wait (fraction, label); AWS clients rolesmith itself uses
    # (service, env) -> client (tests pass botocore Stubber-backed clients); sleep/clock for polling;
    # where the MITM proxy sends an AWS host (tests route it to moto).
    progress: Callable[[float, str], None] | None = None
    client_factory: Callable[[str, Mapping[str, str]], Any] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    poll_interval: float = 30.0
    proxy_route: Callable[[str, int], tuple[str, str, int]] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordResult:
    exit_code: int  # the child's (128 + N when signal N killed it)
    signal: int | None
    recording: Path
    outputs: tuple[Path, ...] = ()
    calls_by_method: Mapping[str, int] = field(default_factory=dict)  # "cloudtrail": seen by the server only
    denied: tuple[str, ...] = ()  # "s3:GetObject by ARN (AccessDenied)"
    principals: tuple[str, ...] = ()
    indirect: tuple[str, ...] = ()  # "kms:GenerateDataKey invoked by s3.amazonaws.com"
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    policies: PolicySet | None = None

    def summary_lines(self) -> list[str]:
        by = ", ".join(f"{n} by {m}" for m, n in sorted(self.calls_by_method.items())) or "none"
        lines = [f"calls captured: {sum(self.calls_by_method.values())} ({by})"]
        lines.append("principals: " + (", ".join(self.principals) or "none attributable"))
        if self.denied:
            lines.append(f"denied calls: {len(self.denied)}; see `rolesmith explain {self.recording}`")
            lines += [f"  {d}" for d in self.denied[:10]]
        if self.indirect:
            lines.append(f"indirect uses: {len(self.indirect)}")
            lines += [f"  {d}" for d in self.indirect[:10]]
        unobserved = [f for f in self.findings if f.code == "UNOBSERVED_USE"]
        lines.append(f"unobserved services/actions (Access Advisor): {len(unobserved)}")
        lines += [f"  {f.message}" for f in unobserved]
        lines += list(self.notes)
        lines += [f"wrote {p}" for p in self.outputs]
        return lines


def _default_client(service: str, env: Mapping[str, str]) -> Any:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"), profile_name=env.get("AWS_PROFILE") or None,
        region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")
    from botocore.config import Config

    # The user agent marks rolesmith's own calls (GetCallerIdentity with the workload's key) so the
    # server-side trail can leave them out of the workload's policies.
    return session.client(service, endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
                          config=Config(user_agent_extra=OWN_USER_AGENT))


def _own_key(env: Mapping[str, str]) -> str | None:
    if env.get("AWS_ACCESS_KEY_ID"):
        return env["AWS_ACCESS_KEY_ID"]
    with contextlib.suppress(Exception):  # no credentials configured: nothing to resolve
        import boto3

        creds = boto3.session.Session(profile_name=env.get("AWS_PROFILE") or None).get_credentials()
        return creds.access_key if creds else None
    return None


def record(command: Sequence[str], options: RecordOptions) -> RecordResult:
    """Run ``command``, write ``out_dir/recording.jsonl`` as calls happen, then build its policies.

    Raises ``RecordError`` for an empty command, ``CommandNotFound`` when it cannot run; a child
    that fails or is killed is not an error here (``exit_code``/``signal`` say so).
    """
    if not command:
        raise RecordError("no command to record: put it after `--`, e.g. `rolesmith record -- python app.py`")
    if options.cloudtrail_bucket:  # say so before the workload runs, not after
        from rolesmith.record.cloudtrail import bucket_location

        bucket_location(options.cloudtrail_bucket)
    from rolesmith.record.endpoint import start_endpoint

    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recording.jsonl"
    path.write_text("", encoding="utf-8")
    env = _venv_first(dict(options.env if options.env is not None else os.environ))
    client_factory = options.client_factory or _default_client
    endpoint = None
    with contextlib.ExitStack() as stack:
        if options.sandbox or options.scenario is not None:
            endpoint = start_endpoint(options.scenario)
            stack.callback(endpoint.stop)
            for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SECURITY_TOKEN"):
                env.pop(var, None)
            env.update(endpoint.env)
        workload_env = dict(env)  # the workload's credentials, without the proxy in between
        aws_env = {**workload_env, **(endpoint.operator_env or {})} if endpoint is not None else workload_env
        # GetCallerIdentity must be signed with the very key it resolves.
        resolver = IdentityResolver(_own_key(env), lambda: client_factory("sts", workload_env).get_caller_identity())
        methods = {"auto": ("hook", "proxy")}.get(options.capture, (options.capture,))
        writer = RecordingWriter(path)
        # Proxy calls wait for the hook's copy of the same request only when both capture.
        recorder = Recorder(writer, resolver, hold=_HOOK_HOLD if {"hook", "proxy"} <= set(methods) else 0.0)
        recorder.start()
        try:
            with contextlib.ExitStack() as captures:
                child_env = _start_captures(methods, env, recorder, resolver, options, captures)
                started = options.clock()
                child = run(command, child_env, options.cwd)
                ended = options.clock()
        finally:
            # Captures are closed (hook connections drained): write what the proxy still holds.
            recorder.stop()
            writer.close()
        records = list(recorder.records)
        counts = dict(recorder.counts)
        findings: list[Finding] = []
        notes: list[str] = []
        # The sandbox's CloudTrail is written as the calls happen: read it by default, without waiting.
        sandbox_trail = endpoint is not None and endpoint.operator_env is not None and options.sandbox_trail
        if options.cloudtrail or options.cloudtrail_bucket or sandbox_trail:
            wait = 0.0 if endpoint is not None else options.cloudtrail_wait
            records = _server_side(records, started, ended, options, client_factory, aws_env, wait)
            if sandbox_trail and endpoint is not None and endpoint.operator_env_for is not None:
                records = _other_accounts(records, started, ended, client_factory, workload_env, endpoint.operator_env_for)
            _rewrite(path, records)
            counts["cloudtrail"] = sum(1 for r in records
                                       if (r.get("additionalEventData") or {}).get("rolesmith") == "cloudtrail")
        if options.access_advisor:
            from rolesmith.record.advisor import roles_of, unobserved_use

            findings += unobserved_use(client_factory("iam", aws_env), roles_of(records), records, started - 60,
                                       options.clock(), sleep=options.sleep)
        if "csm" in methods:
            notes.append("note: csm captures actions only, no resources: policies for csm calls cannot name resources")
        policies, outputs, note = _build(path, options, findings)
        notes += note
    return RecordResult(
        exit_code=child.returncode, signal=child.signal, recording=path, outputs=tuple(outputs),
        calls_by_method=counts, denied=tuple(_denied(records)), principals=tuple(_principals(records)),
        indirect=tuple(_indirect(records)), findings=tuple(findings), notes=tuple(notes), policies=policies,
    )


def _venv_first(env: dict[str, str]) -> dict[str, str]:
    """When rolesmith runs from a virtualenv that is not activated (``.venv/bin/rolesmith record --
    python app.py``), put the venv's bin first on the child's PATH: its ``python`` has boto3 (the
    ``sandbox`` extra) and the hook, where the system ``python`` may have neither. An absolute
    interpreter path in the command is not affected."""
    if sys.prefix == sys.base_prefix or env.get("VIRTUAL_ENV"):
        return env  # not in a venv, or the user activated one: their PATH is what they meant
    bindir = os.path.dirname(sys.executable)
    path = env.get("PATH", os.defpath).split(os.pathsep)
    if path and path[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir, *(p for p in path if p != bindir)])
    return env


def _start_captures(methods: Sequence[str], env: dict[str, str], recorder: Recorder, resolver: IdentityResolver,
                    options: RecordOptions, stack: contextlib.ExitStack) -> dict[str, str]:
    child_env = dict(env)
    if "hook" in methods:
        token = secrets.token_hex(16)

        def on_message(msg: dict[str, Any]) -> None:
            issued = msg.get("issued")
            if isinstance(issued, dict) and issued.get("akid") and issued.get("arn"):
                resolver.learn(issued["akid"], issued["arn"], issued.get("principalId"))
            if msg.get("kind") == "call":
                recorder.add(call_from_hook(msg))

        collector = Collector(token, on_message)
        collector.start()
        stack.callback(collector.close)
        stack.callback(collector.drain, 2.0)  # runs first: let exited children's last lines arrive
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOK_DIR), env.get("PYTHONPATH", "")) if p)
        child_env["ROLESMITH_RECORD_ADDR"] = collector.address
        child_env["ROLESMITH_RECORD_TOKEN"] = token
    if "proxy" in methods:
        from rolesmith.record.proxy import RecordingProxy

        upstream = env.get("AWS_ENDPOINT_URL")
        if upstream:
            proxy = RecordingProxy(recorder.add, endpoint=upstream)
            child_env["AWS_ENDPOINT_URL"] = proxy.url
        else:
            from rolesmith.record.ca import RunCA

            ca = RunCA()
            stack.callback(ca.close)
            proxy = RecordingProxy(recorder.add, ca=ca, route=options.proxy_route)
            for var in ("HTTPS_PROXY", "https_proxy"):
                child_env[var] = proxy.url
            for var in _CA_VARS:
                child_env[var] = str(ca.bundle)
        proxy.start()
        stack.callback(proxy.close)
    if "csm" in methods:
        from rolesmith.record.csm import CsmListener

        listener = CsmListener(recorder.add)
        listener.start()
        stack.callback(listener.close)
        child_env.update(listener.env())
    return child_env


def _server_side(records: list[dict[str, Any]], started: float, ended: float,
                 options: RecordOptions, client_factory: Callable[[str, Mapping[str, str]], Any],
                 env: Mapping[str, str], wait: float) -> list[dict[str, Any]]:
    from rolesmith.record.cloudtrail import (is_service_assume_role, lookup_events, merge, read_bucket,
                                             roles_handed_over, service_session_keys)

    keys = sorted({(r.get("userIdentity") or {}).get("accessKeyId") for r in records} - {None})
    if options.cloudtrail_bucket:
        s3 = client_factory("s3", env)
        server = _not_own(read_bucket(s3, options.cloudtrail_bucket, started, ended, keys))
        session_keys = [k for k in service_session_keys(server, roles_handed_over([*records, *server])) if k not in keys]
        if session_keys:
            server += _not_own(read_bucket(s3, options.cloudtrail_bucket, started, ended, session_keys))
        # A service's AssumeRole carries the session's token: it only served to find the keys.
        return merge(records, [r for r in server if not is_service_assume_role(r)])
    wanted = {r.get("requestID") for r in records if r.get("managementEvent") and r.get("requestID")}

    def complete(found: Mapping[str, dict[str, Any]]) -> bool:
        return wanted <= {r.get("requestID") for r in found.values()}

    client = client_factory("cloudtrail", env)
    poll = dict(sleep=options.sleep, clock=options.clock, interval=options.poll_interval)
    server = lookup_events(client, keys, started, ended, wait=wait, expected=complete,
                           progress=options.progress if wait > 0 else None, **poll)  # type: ignore[arg-type]
    server = _not_own(server)
    # Calls services made for the run under their own sessions (EMR's service role launching the
    # cluster's instances): the service's AssumeRole names the role as a resource, so one lookup by
    # ResourceName per role the run handed over yields the session keys, and a second by AccessKeyId
    # their calls. By then the first lookup has waited out CloudTrail's delivery delay.
    roles = roles_handed_over([*records, *server])
    if roles:
        assumed = lookup_events(client, roles, started, ended, wait=0.0, expected=lambda _: True,
                                attribute="ResourceName", **poll)  # type: ignore[arg-type]
        session_keys = [k for k in service_session_keys(assumed, roles) if k not in keys]
        if session_keys:
            server += lookup_events(client, session_keys, started, ended, wait=0.0, expected=lambda _: True,
                                    **poll)  # type: ignore[arg-type]
    return merge(records, server)


def _other_accounts(records: list[dict[str, Any]], started: float, ended: float,
                    client_factory: Callable[[str, Mapping[str, str]], Any], env: Mapping[str, str],
                    operator_env_for: Callable[[str], dict[str, str]]) -> list[dict[str, Any]]:
    """Calls the run made in other accounts of the sandbox (a role it assumed there) are in those
    accounts' trails: look their keys up there, as an administrator of each."""
    from rolesmith.record.cloudtrail import lookup_events, merge

    pending: dict[str, set[str]] = {}
    for rec in records:
        ui = rec.get("userIdentity") or {}
        if "cloudtrail" not in str((rec.get("additionalEventData") or {}).get("rolesmith", "")) \
                and ui.get("accountId") and ui.get("accessKeyId"):
            pending.setdefault(ui["accountId"], set()).add(ui["accessKeyId"])
    for account, keys in sorted(pending.items()):
        client = client_factory("cloudtrail", {**env, **operator_env_for(account)})
        server = _not_own(lookup_events(client, sorted(keys), started, ended, wait=0.0, expected=lambda _: True,
                                        sleep=time.sleep, clock=time.time))
        records = merge(records, server)
    return records


def _not_own(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if OWN_USER_AGENT not in str(r.get("userAgent") or "")]


def _rewrite(path: Path, records: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            # LookupEvents hands back STS records with their session tokens: never copied to disk.
            fh.write(json.dumps(scrub_record(rec), separators=(",", ":"), default=str) + "\n")
    tmp.replace(path)


def _build(path: Path, options: RecordOptions, findings: list[Finding]) -> tuple[PolicySet | None, list[Path], list[str]]:
    try:
        from rolesmith.policies import build_policies
        from rolesmith.render import render
    except ImportError as err:
        return None, [], [f"policies not built: {err.name or 'rolesmith.policies'} is not available in this build; "
                          f"run `rolesmith build {path}` once it is"]
    result = build_policies([path], options.build)
    policies = replace(result.policies, findings=tuple(result.policies.findings) + tuple(findings))
    outputs: list[Path] = []
    for fmt in dict.fromkeys(["json", options.fmt]):
        rendered = render(policies, fmt=fmt, split=False)
        for name, text in rendered.items():
            target = options.out_dir / ("policies.json" if fmt == "json" else name)
            target.write_text(text, encoding="utf-8")
            outputs.append(target)
            if fmt == "json":
                break
    return policies, outputs, list(result.report_lines()) if hasattr(result, "report_lines") else []


def _denied(records: Sequence[Mapping[str, Any]]) -> list[str]:
    from rolesmith.trail.model import is_access_denied

    out = []
    for rec in records:
        if is_access_denied(rec.get("errorCode")):
            who = (rec.get("userIdentity") or {}).get("arn") or "unknown principal"
            out.append(f"{rec.get('eventSource', '').split('.', 1)[0]}:{rec.get('eventName')} by {who} ({rec['errorCode']})")
    return out


def _principals(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({(r.get("userIdentity") or {}).get("arn") for r in records} - {None})


def _indirect(records: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for rec in records:
        by = (rec.get("userIdentity") or {}).get("invokedBy")
        if by:
            out.append(f"{rec.get('eventSource', '').split('.', 1)[0]}:{rec.get('eventName')} invoked by {by}")
    return sorted(set(out))
