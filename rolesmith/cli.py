"""The ``rolesmith`` command line: parse options, call one library function, print its result.

Nothing here knows IAM. Every command's work is a plain-Python function in the library; this module
only turns options into arguments, ``RolesmithError`` into a one-line ``click.ClickException`` with
the error's exit code, and configures logging (the library never prints).
"""

from __future__ import annotations

import contextlib
import logging
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--cloudtrail", is_flag=True, help="After the run, merge the run's events from CloudTrail LookupEvents.")
@click.option("--cloudtrail-wait", type=click.FloatRange(min=0), default=15.0, show_default=True, metavar="MINUTES",
              help="How long to poll LookupEvents for late events.")
@click.option("--cloudtrail-bucket", metavar="S3URL", default=None,
              help="Read the run's events from a trail's log files (s3://bucket/prefix) instead of LookupEvents.")
@click.option("--access-advisor", is_flag=True,
              help="Report services/actions Access Advisor saw each role use during the run that the recording missed.")
@click.option("--sandbox", is_flag=True, help="Run the command against a local endpoint on 127.0.0.1 (dummy credentials).")
@click.option("--scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sandbox scenario file (implies --sandbox).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True,
              help="Also render the policies in this format into the output directory.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def record(out_dir: Path, capture: str, cloudtrail: bool, cloudtrail_wait: float, cloudtrail_bucket: str | None,
           access_advisor: bool, sandbox: bool, scenario: Path | None, fmt: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (after `--`), record every AWS call it makes, and build its minimal policies.

    The command's stdin/stdout/stderr pass through and its exit code is returned; Ctrl-C and SIGTERM
    reach its whole process group. Calls are appended to OUT/recording.jsonl as they happen.
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

    options = RecordOptions(out_dir=out_dir, capture=capture, cloudtrail=cloudtrail,  # type: ignore[arg-type]
                            cloudtrail_wait=cloudtrail_wait * 60, cloudtrail_bucket=cloudtrail_bucket,
                            access_advisor=access_advisor, sandbox=sandbox, scenario=scenario, fmt=fmt,
                            progress=progress)
    try:
        with _errors():
            result = run_record(list(command), options)
    finally:
        if bar:
            bar[0].__exit__(None, None, None)
    for line in result.summary_lines():
        click.echo(line, err=True)
    if result.signal is not None:
        import signal as _signal

        click.echo(f"Error: the command was killed by {_signal.Signals(result.signal).name}; "
                   f"the calls it made before are in {result.recording}", err=True)
    sys.exit(result.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
