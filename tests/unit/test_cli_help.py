"""`--help` describes every command and option and names only settings that exist."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from taskflow_jobs.cli import app
from taskflow_jobs.cli import help as command_help
from taskflow_jobs.settings import Settings

ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def _env_names() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(str(alias if isinstance(alias, str) else name).upper())
    return names | {"PREFECT_API_URL"}


def test_every_setting_named_in_help_exists() -> None:
    named = {
        m for lines in command_help.SETTINGS.values() for m in ENV_NAME.findall(" ".join(lines))
    }
    assert named - _env_names() == set()


def _commands() -> list[tuple[str, object]]:
    root = get_command(app)
    found = []
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(cmd, "commands", None)
        found += [(f"{name} {s}", c) for s, c in subs.items()] if subs else [(name, cmd)]
    return found


@pytest.mark.parametrize(
    ("name", "cmd"), _commands(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_command_and_option_is_described(name: str, cmd: object) -> None:
    assert cmd.help and cmd.help.strip().endswith("."), name  # type: ignore[attr-defined]
    for param in cmd.params:  # type: ignore[attr-defined]
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"{name} {param.opts}"


def test_help_renders_without_type_noise() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "--verbose" in result.output
    assert "Log debug lines" in result.output
    consume = CliRunner().invoke(app, ["consume", "--help"])
    assert "Settings that matter here" in consume.output and "DATABASE_URL" in consume.output
