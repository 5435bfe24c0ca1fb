"""The settings `consume` keeps: refreshed when readable, the last known ones otherwise."""

from __future__ import annotations

import logging

import pytest

from blocks.keeper import SettingsKeeper
from taskflow_jobs.settings import load_settings


def test_a_failed_refresh_keeps_the_last_known_settings_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = load_settings(email_provider="smtp", smtp_host="a.example.com")
    answers: list = [RuntimeError("Prefect frozen"), RuntimeError("still frozen")]
    keeper = SettingsKeeper(lambda: _next(answers), first)
    with caplog.at_level(logging.INFO, logger="blocks.keeper"):
        assert keeper.refresh() is first
        assert keeper.refresh() is first
        edited = load_settings(email_provider="smtp", smtp_host="b.example.com")
        answers.append(edited)
        assert keeper.refresh() is edited
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keeping the last known ones" in warnings[0].message
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "settings readable again" in infos
    assert "settings changed: smtp_host" in infos
    assert not any("b.example.com" in m for m in infos), "names, never values"


def test_an_unchanged_read_keeps_the_same_object() -> None:
    first = load_settings(email_provider="console")
    keeper = SettingsKeeper(lambda: load_settings(email_provider="console"), first)
    assert keeper.refresh() is first


def _next(answers: list):
    answer = answers.pop(0)
    if isinstance(answer, Exception):
        raise answer
    return answer
