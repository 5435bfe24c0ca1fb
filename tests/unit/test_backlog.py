"""Which due cron runs the backlog pruner keeps, and how it says what it skipped."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

from taskflow_jobs.monitoring.backlog import Due, Skipped, max_lateness_of, plan

NOW = dt.datetime(2026, 12, 2, 7, 20, tzinfo=dt.UTC)


def hourly(*hours: int) -> list[Due]:
    return [Due(uuid.uuid4(), NOW.replace(hour=h, minute=0)) for h in hours]


def test_the_newest_due_run_is_kept_and_the_older_ones_go() -> None:
    due = hourly(5, 2, 7, 3)
    decided = plan(due, NOW, dt.timedelta(minutes=30))
    assert decided.keep == due[2]
    assert [r.expected.hour for r in decided.delete] == [2, 3, 5]


def test_one_due_run_is_left_alone_and_none_is_nothing() -> None:
    [only] = hourly(7)
    assert plan([only], NOW, None).keep == only and plan([only], NOW, None).delete == []
    assert plan([], NOW, None).keep is None


def test_a_newest_run_later_than_its_flow_allows_goes_too() -> None:
    due = hourly(5, 6)
    decided = plan(due, NOW, dt.timedelta(minutes=30))
    assert decided.keep is None and decided.delete == due
    assert plan(due, NOW, None).keep == due[1], "no limit: the newest runs however late"


def test_the_skip_is_said_in_one_line_and_survives_a_round_trip() -> None:
    runs = hourly(2, 3, 4, 5, 6)
    skipped = Skipped.of("health-check", runs)
    assert skipped.text() == "skipped 5 health-check runs scheduled 2026-12-02 02:00–06:00 UTC"
    assert Skipped.from_json(skipped.to_json()) == skipped
    assert Skipped.from_json("not json") is None
    one = Skipped.of("daily-stats", [Due(uuid.uuid4(), NOW.replace(second=7))])
    assert one.text() == "skipped 1 daily-stats run scheduled 2026-12-02 07:20:07 UTC"


def test_notes_carried_from_deleted_runs_add_up() -> None:
    earlier = Skipped.of("health-check", hourly(3, 4))
    later = Skipped.of("health-check", hourly(5))
    merged = later.merge(earlier).merge(None)
    assert (merged.count, merged.first.hour, merged.last.hour) == (3, 3, 5)
    overnight = Skipped("weekly-summary", 2, NOW - dt.timedelta(days=1), NOW)
    assert "2026-12-01 07:20 – 2026-12-02 07:20 UTC" in overnight.text()


def test_the_lateness_limit_comes_from_the_deployment_or_the_flow_default() -> None:
    schema = {"properties": {"max_lateness_minutes": {"default": 30}}}
    flow_default = SimpleNamespace(parameters={}, parameter_openapi_schema=schema)
    assert max_lateness_of(flow_default) == dt.timedelta(minutes=30)
    overridden = SimpleNamespace(
        parameters={"max_lateness_minutes": 5}, parameter_openapi_schema=schema
    )
    assert max_lateness_of(overridden) == dt.timedelta(minutes=5)
    assert max_lateness_of(SimpleNamespace(parameters={}, parameter_openapi_schema={})) is None
    off = SimpleNamespace(parameters={"max_lateness_minutes": 0}, parameter_openapi_schema=None)
    assert max_lateness_of(off) is None
