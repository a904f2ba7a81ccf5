"""Every command's --help text is documented in the README, verbatim, under its own heading.

Users read the README before they run anything; a flag added to the CLI but not to the README is a
flag nobody finds.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rolesmith.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands() -> list[str]:
    return sorted(main.commands)


def _fold(text: str) -> str:
    # Click wraps to the terminal width; compare with all whitespace folded so wrapping cannot matter.
    return re.sub(r"\s+", " ", text).strip()


@pytest.mark.parametrize("name", _commands())
def test_help_text_is_in_readme(name: str) -> None:
    readme = README.read_text(encoding="utf-8")
    heading = f"### `rolesmith {name}`"
    assert heading in readme, f"README has no section {heading!r}"
    section = readme.split(heading, 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    result = CliRunner().invoke(main, [name, "--help"], prog_name="rolesmith", terminal_width=100)
    assert result.exit_code == 0, result.output
    assert _fold(result.output) in _fold(section), (
        f"README section {heading!r} does not contain the current `rolesmith {name} --help` output"
    )


def test_every_command_has_a_docstring() -> None:
    for name, command in main.commands.items():
        assert isinstance(command, click.Command)
        assert (command.help or "").strip(), f"rolesmith {name} has no help text"
