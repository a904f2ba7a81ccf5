"""The ``rolesmith`` command line: parse options, call one library function, print its result.

Nothing here knows IAM. Every command's work is a plain-Python function in the library; this module
only turns options into arguments, ``RolesmithError`` into a one-line ``click.ClickException`` with
the error's exit code, and configures logging (the library never prints).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import click

from rolesmith import __version__
from rolesmith.errors import RolesmithError


class _Failure(click.ClickException):
    def __init__(self, err: RolesmithError) -> None:
        super().__init__(str(err))
        self.exit_code = err.exit_code


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except RolesmithError as err:
        raise _Failure(err) from err


def _key_value(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        out[key] = value
    return out


class _OSFailure(click.ClickException):
    """A file or directory rolesmith was told to read or write could not be used (or the disk is full)."""

    exit_code = 1

    def __init__(self, err: OSError) -> None:
        where = f"{err.filename}: " if err.filename else "output: "
        super().__init__(f"{where}{err.strerror or err}; fix: check that the path exists, is a directory where one"
                         " is expected, is writable, and that the disk has space")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # a closed pipe (| head) is not an error to report
        except OSError as err:
            logging.getLogger(__name__).debug("I/O error", exc_info=True)
            if err.errno == errno.ENOSPC and err.filename is None:
                # stdout itself is full: point it at /dev/null so exiting does not print the error again
                with contextlib.suppress(OSError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise _OSFailure(err) from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rolesmith")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """Least-privilege AWS policies from what a workload actually does."""
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="rolesmith: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def _echo_outputs(outputs: dict[str, str], out_dir: Path | None) -> None:
    """Print one rendered document, or write one file per document under ``out_dir``."""
    if out_dir is None:
        for text in outputs.values():
            click.echo(text, nl=not text.endswith("\n"))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in outputs.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        click.echo(str(out_dir / name), err=True)


TRAIL_ARG = click.argument("trails", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
SKIP_BAD = click.option(
    "--skip-bad", is_flag=True, help="Skip malformed records and report counts per problem instead of stopping."
)
FORMATS = ["json", "cloudformation", "cloudformation-json"]


@main.command()
@TRAIL_ARG
@click.option("--principal", "principals", multiple=True, metavar="ARN", help="Only policies for this principal (repeatable).")
@click.option("--generalize", type=click.Choice(["safe", "none"]), default="safe", show_default=True,
              help="safe: widen only ids the evidence shows are generated per run; none: exact ARNs.")
@click.option("--include-denied", is_flag=True, help="Also grant calls that were denied in the trail.")
@click.option("--account-of", multiple=True, callback=_key_value, metavar="BUCKET=ACCOUNT",
              help="Owning account of a bucket the trail cannot tell (repeatable).")
@click.option("--key-admin", "key_admins", multiple=True, metavar="ARN",
              help="Key-administration principal for generated KMS key policies (default: the key account's root).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True, help="Output format.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write one file per policy into this directory instead of printing.")
@SKIP_BAD
def build(trails: tuple[Path, ...], principals: tuple[str, ...], generalize: str, include_denied: bool,
          account_of: dict[str, str], key_admins: tuple[str, ...], fmt: str, out_dir: Path | None,
          skip_bad: bool) -> None:
    """Minimal identity, bucket, key and trust policies from CloudTrail TRAILS (files or directories)."""
    from rolesmith.policies import BuildOptions, build_policies
    from rolesmith.render import render

    options = BuildOptions(principals=principals, generalize=generalize, include_denied=include_denied,  # type: ignore[arg-type]
                           account_of=account_of, key_admins=key_admins, skip_bad=skip_bad)
    with _errors():
        result = build_policies(list(trails), options)
        outputs = render(result.policies, fmt=fmt, split=out_dir is not None)
    _echo_outputs(outputs, out_dir)
    for line in result.report_lines():
        click.echo(line, err=True)


@main.command()
@TRAIL_ARG
@click.option("--format", "fmt", type=click.Choice(["json", "dot", "mermaid"]), default="json", show_default=True,
              help="Export format of the usage graph.")
@SKIP_BAD
def graph(trails: tuple[Path, ...], fmt: str, skip_bad: bool) -> None:
    """Export the usage graph (principals, uses, resources, invoked-by and assumes edges)."""
    from rolesmith.graph import export_graph, graph_from_paths

    with _errors():
        usage, report = graph_from_paths(list(trails), skip_bad=skip_bad)
        click.echo(export_graph(usage, fmt=fmt))
    for line in report.lines():
        click.echo(line, err=True)


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Directory for recording.jsonl, policies.json and the rendered policies.")
@click.option("--capture", type=click.Choice(["auto", "hook", "proxy", "csm"]), default="auto", show_default=True,
              help="auto = hook (botocore in Python children) + proxy (any SDK); csm: actions only, no resources.")
@click.option("--cloudtrail/--no-cloudtrail", default=None,
              help="After the run, merge the run's events from CloudTrail LookupEvents, with the calls AWS services "
                   "made for it under their own sessions. Default: on with --sandbox (the sandbox's trail is "
                   "immediate), off against AWS.")
@click.option("--cloudtrail-wait", type=click.FloatRange(min=0), default=15.0, show_default=True, metavar="MINUTES",
              help="How long to poll LookupEvents for late events.")
@click.option("--cloudtrail-bucket", metavar="S3URL", default=None,
              help="Read the run's events from a trail's log files (s3://bucket/prefix) instead of LookupEvents.")
@click.option("--access-advisor", is_flag=True,
              help="Report services/actions Access Advisor saw each role use during the run that the recording missed.")
@click.option("--sandbox", is_flag=True,
              help="Run the command against the local sandbox on 127.0.0.1; without --scenario, as a user "
                   "allowed everything in one account.")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sandbox scenario file (implies --sandbox).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="Also render the policies in this format into the output directory.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def record(out_dir: Path, capture: str, cloudtrail: bool | None, cloudtrail_wait: float, cloudtrail_bucket: str | None,
           access_advisor: bool, sandbox: bool, scenario: Path | None, fmt: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (after `--`), record every AWS call it makes, and build its minimal policies.

    The command's stdin/stdout/stderr pass through and its exit code is returned; Ctrl-C and SIGTERM
    reach its whole process group. Calls are appended to OUT/recording.jsonl as they happen. Then the
    policies (OUT/policies.json) go to stdout, a summary to stderr. Run from an unactivated virtualenv,
    the command finds that venv's `python` first on its PATH.
    """
    from rolesmith.record import RecordOptions
    from rolesmith.record import record as run_record

    bar: list = []  # the progress bar, opened on the first CloudTrail poll

    def progress(fraction: float, label: str) -> None:
        if not bar:
            bar.append(click.progressbar(length=1000, label="waiting for CloudTrail", file=sys.stderr))
            bar[0].__enter__()
        bar[0].label = f"waiting for CloudTrail ({label})"
        bar[0].update(int(fraction * 1000) - bar[0].pos)

    options = RecordOptions(out_dir=out_dir, capture=capture, cloudtrail=bool(cloudtrail),  # type: ignore[arg-type]
                            sandbox_trail=cloudtrail is not False,
                            cloudtrail_wait=cloudtrail_wait * 60, cloudtrail_bucket=cloudtrail_bucket,
                            access_advisor=access_advisor, sandbox=sandbox, scenario=scenario, fmt=fmt,
                            progress=progress)
    try:
        with _errors():
            result = run_record(list(command), options)
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
    if result.outputs:  # the policies first, so the summary (and where they are) is what the user sees last
        click.echo(result.outputs[0].read_text(encoding="utf-8"), nl=False)
    for line in result.summary_lines():
        click.echo(line, err=True)
    if result.signal is not None:
        import signal as _signal

        click.echo(f"Error: the command was killed by {_signal.Signals(result.signal).name}; "
                   f"the calls it made before are in {result.recording}", err=True)
    sys.exit(result.exit_code)


@main.command()
@click.argument("role")
@click.option("--trail", "trails", multiple=True, type=click.Path(exists=True, path_type=Path), metavar="PATH",
              help="CloudTrail files/directories or rolesmith recordings of the role's workload (repeatable).")
@click.option("--cloudtrail", is_flag=True, help="Read the role's management events with CloudTrail LookupEvents.")
@click.option("--cloudtrail-bucket", metavar="BUCKET[/PREFIX]", default=None,
              help="Read the trail's log files from this bucket instead (AWSLogs/ACCOUNT/CloudTrail/...).")
@click.option("--days", type=click.IntRange(min=1), default=90, show_default=True,
              help="How many days of CloudTrail and Access Advisor history to read.")
@click.option("--access-advisor", is_flag=True,
              help="Also report IAM Access Advisor's last-accessed data (action level where AWS gives it).")
@click.option("--current-policies", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              default=None, help="Read the role's policies from DIR (layout of `explain --policies`), not from IAM.")
@click.option("--generalize", type=click.Choice(["safe", "none"]), default="safe", show_default=True,
              help="As for build: safe widens only ids the evidence shows are generated per run.")
@click.option("--format", "fmt", type=click.Choice(["text", *FORMATS]), default="text", show_default=True,
              help="text/json: the report; cloudformation(-json): the replacement as a template.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the replacement, one file per policy, into this directory.")
@click.option("--apply", "do_apply", is_flag=True,
              help="Write the replacement to IAM (new policy version or inline policy) after writing a backup.")
@click.option("--backup", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Backup file for --apply [default: tighten-backup-ROLE-TIME.json].")
@click.option("--rollback", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="BACKUP",
              help="Restore the role exactly as the --apply backup BACKUP recorded it, and nothing else.")
@SKIP_BAD
def tighten(role: str, trails: tuple[Path, ...], cloudtrail: bool, cloudtrail_bucket: str | None, days: int,
            access_advisor: bool, current_policies: Path | None, generalize: str, fmt: str, out_dir: Path | None,
            do_apply: bool, backup: Path | None, rollback: Path | None, skip_bad: bool) -> None:
    """Show what ROLE (name or ARN) uses of what it may do, and write its minimal replacement.

    Read-only unless --apply. Exit code 1 when the replacement would deny a call the role made.
    """
    import datetime as _dt
    import json as _json

    from rolesmith import tighten as lib

    with _errors():
        if rollback is not None:
            if do_apply:
                raise lib.TightenInputError("--apply and --rollback: pass one of them")
            change = lib.rollback_role(role, rollback)
            for line in change.actions or ("nothing to restore: the role already matches the backup",):
                click.echo(line)
            return
        if do_apply and current_policies is not None:
            raise lib.TightenInputError("--apply writes to IAM: drop --current-policies so the role is read from IAM")
        options = lib.TightenOptions(trails=trails, cloudtrail=cloudtrail, days=days, cloudtrail_bucket=cloudtrail_bucket,
                                     access_advisor=access_advisor, current_policies=current_policies,
                                     generalize=generalize, skip_bad=skip_bad)  # type: ignore[arg-type]
        report = lib.tighten(role, options)
        if fmt == "text":
            click.echo(lib.format_text(report), nl=False)
        elif fmt == "json":
            click.echo(_json.dumps(report.to_dict(), indent=2))
        if fmt.startswith("cloudformation") or out_dir is not None:  # the replacement itself, like build
            from rolesmith.render import render

            template_fmt = fmt if fmt.startswith("cloudformation") else "json"
            _echo_outputs(render(report.replacement, fmt=template_fmt, split=out_dir is not None), out_dir)
        if fmt != "text":
            click.echo(lib.summary_line(report), err=True)
        if do_apply:
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            change = lib.apply_replacement(report, backup or Path(f"tighten-backup-{report.current.name}-{stamp}.json"))
            for line in change.actions:
                click.echo(line, err=True)
            click.echo(f"backup: {change.backup} (undo with: rolesmith tighten {role} --rollback {change.backup})", err=True)
    if not report.verification.ok:
        sys.exit(1)


@main.command()
@TRAIL_ARG
@click.option("--policies", "policies_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Evaluate the policies in this directory (layout: see rolesmith simulate).")
@click.option("--live", is_flag=True,
              help="Fetch the policies read-only from AWS with boto3 (SecurityAudit suffices) and decode EC2's "
                   "encoded messages.")
@click.option("--profile", default=None, help="AWS profile for --live.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
@SKIP_BAD
def explain(trails: tuple[Path, ...], policies_dir: Path | None, live: bool, profile: str | None, fmt: str,
            skip_bad: bool) -> None:
    """Why each AccessDenied in TRAILS happened, and the smallest fix (policy to add or Deny to change)."""
    from rolesmith.explain import explain_paths
    from rolesmith.explain.render import render_json, render_text

    with _errors():
        session = None
        if live and profile:
            from rolesmith.explain.live import session_for

            session = session_for(profile)
        result = explain_paths(list(trails), policies_dir=policies_dir, live=live, session=session, skip_bad=skip_bad)
    click.echo(render_json(result) if fmt == "json" else render_text(result), nl=False)
    for line in result.report_lines():
        click.echo(line, err=True)


@main.command()
@click.option("--policies", "policies_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Policies directory (layout in the README); inline policies in --requests override it.")
@click.option("--principal", metavar="ARN", help="Caller: user, role or assumed-role session ARN.")
@click.option("--action", metavar="SERVICE:ACTION", help="Action to evaluate, e.g. s3:PutObject.")
@click.option("--resource", metavar="ARN", help="Resource ARN, or * for actions without a resource type.")
@click.option("--resource-account", metavar="ID", help="Account owning the resource (default: from the ARN or accounts.yaml, else the caller's).")
@click.option("--context", "context_items", multiple=True, metavar="KEY=VALUE",
              help="Condition key value (repeatable; a repeated key is multivalued).")
@click.option("--requests", "requests_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL file of requests (shape in the README) instead of --principal/--action/--resource.")
def simulate(policies_dir: Path | None, principal: str | None, action: str | None, resource: str | None,
             resource_account: str | None, context_items: tuple[str, ...], requests_file: Path | None) -> None:
    """Evaluate requests offline against identity, boundary, session, SCP, RCP and resource policies.

    Prints one JSON line per request: {"decision", "layer", "statements", "layers"}.
    """
    import json as _json

    from rolesmith.simulate import simulate as _simulate
    from rolesmith.simulate import simulate_jsonl

    single = (principal, action, resource)
    if requests_file is not None and any(v is not None for v in (*single, resource_account)):
        raise click.UsageError("use either --requests FILE or --principal/--action/--resource, not both")
    if requests_file is None and not all(single):
        raise click.UsageError("give --principal, --action and --resource (or --requests FILE)")
    with _errors():
        if requests_file is not None:
            for answer in simulate_jsonl(requests_file, policies_dir=policies_dir):
                click.echo(_json.dumps(answer))
        else:
            answer = _simulate(principal=principal, action=action, resource=resource,  # type: ignore[arg-type]
                               resource_account=resource_account, context=context_items, policies_dir=policies_dir)
            click.echo(_json.dumps(answer))


@main.command()
@click.option("--scenario", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scenario YAML: accounts, users/roles and their policies, buckets, keys, queues.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True, metavar="N",
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Write CloudTrail log files under DIR/AWSLogs/ACCOUNT/CloudTrail/REGION/….")
def sandbox(scenario: Path, port: int, log_dir: Path | None) -> None:
    """Serve a local multi-account AWS endpoint on 127.0.0.1 that enforces the scenario's IAM, bucket
    and key policies (moto keeps the state) and writes CloudTrail, until Ctrl-C.

    Prints the endpoint and, per principal, the AWS_* variables to run as it (sandbox-only
    credentials).
    """
    import signal as _signal
    import threading

    from rolesmith.sandbox import start_sandbox
    from rolesmith.sandbox.server import describe

    with _errors():
        handle = start_sandbox(scenario, port=port, log_dir=log_dir, warm=True)  # its clients are other processes
    done = threading.Event()
    _signal.signal(_signal.SIGTERM, lambda *_: done.set())
    _signal.signal(_signal.SIGHUP, lambda *_: done.set())  # a closed terminal: stop cleanly, log files written
    try:
        for line in describe(handle):
            click.echo(line)
        click.echo("\nServing until Ctrl-C.", err=True)
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--role", required=True, metavar="ROLE",
              help="The role (name or ARN; in the sandbox also ACCOUNT/NAME) to run the command as.")
@click.option("--sandbox", is_flag=True, help="Run against the local sandbox (needs --scenario).")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sandbox scenario file (implies --sandbox); never modified.")
@click.option("--profile", default=None, help="AWS profile that may assume ROLE and edit its policies (real AWS).")
@click.option("--start-from", "start_from", nargs=1, type=click.Choice(["empty", "recording", "current"]),
              default="empty", show_default=True,
              help="Start from an empty identity policy, a recording's policies (with --recording) or the current ones.")
@click.option("--recording", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="The recording (or trail) for --start-from recording.")
@click.option("--max-runs", type=click.IntRange(min=1), default=10, show_default=True, help="Stop after this many runs.")
@click.option("--apply-resource-policies", is_flag=True,
              help="Also edit bucket and key policies; otherwise stop and print the statements for their owners.")
@click.option("--keep", is_flag=True, help="Real AWS: do not restore the role's original policies on abort.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="The per-run report on stdout.")
@click.option("--policy-format", type=click.Choice(FORMATS), default="json", show_default=True,
              help="Format of the final policies written to the output directory (as `rolesmith build`).")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
              show_default=True, help="Directory for each run's recording, the scenario copy and the final policies.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def converge(role: str, sandbox: bool, scenario: Path | None, profile: str | None, start_from: str,
             recording: Path | None, max_runs: int, apply_resource_policies: bool, keep: bool, fmt: str,
             policy_format: str, out_dir: Path, command: tuple[str, ...]) -> None:
    """Run COMMAND (after `--`) as ROLE, explain every denial, apply the smallest fixes, and run again
    until a run has no denials; then write the final policies as `rolesmith build` does.

    Identity fixes go to the inline policy rolesmith-converge on the role. Exit 0 when converged,
    1 when it stopped short (max runs, a resource owner's or guardrail change needed), 130 on Ctrl-C.
    """
    from rolesmith.converge import ConvergeOptions
    from rolesmith.converge import converge as run_converge
    from rolesmith.converge.report import render_json, render_text

    options = ConvergeOptions(role=role, sandbox=sandbox, scenario=scenario, profile=profile,
                              start_from=start_from, recording=recording, max_runs=max_runs,  # type: ignore[arg-type]
                              apply_resource_policies=apply_resource_policies, keep=keep, out_dir=out_dir,
                              fmt=policy_format, progress=lambda line: click.echo(line, err=True))
    with _errors():
        result = run_converge(list(command), options)
    click.echo(render_json(result) if fmt == "json" else render_text(result), nl=False)
    sys.exit(0 if result.stopped_reason == "converged" else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
