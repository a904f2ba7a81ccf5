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


if __name__ == "__main__":  # pragma: no cover
    main()
