"""Every command's --help: plain words, no type placeholders after flags."""

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from needlecare.cli.main import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    if hasattr(command, "commands"):  # a group (Typer vendors its own Click)
        for name, sub in command.commands.items():
            found += _paths(sub, (*prefix, name))
    return found


PATHS = _paths(typer.main.get_command(app))


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) or "needlecare" for p in PATHS])
def test_help_names_no_bool_placeholder(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output
