"""Alert once per incident: the state machine and its stored form."""

from __future__ import annotations

import datetime as dt

from taskflow_jobs.monitoring.incidents import (
    HealthState,
    Problem,
    advance,
    alert_text,
    resolved_text,
)

T0 = dt.datetime(2024, 4, 1, 10, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DB_DOWN = Problem("database_unreachable", "Database unreachable: connection refused")
DEEP = Problem("queue_depth:email_notifications", "Queue email_notifications holds 5,000")


def test_a_problem_alerts_once_then_resolves_once() -> None:
    state = HealthState()
    state, first = advance(state, [DB_DOWN], T0)
    state, second = advance(state, [DB_DOWN], T0 + HOUR)
    state, third = advance(state, [DB_DOWN], T0 + 2 * HOUR)
    state, fourth = advance(state, [], T0 + 3 * HOUR)
    state, fifth = advance(state, [], T0 + 4 * HOUR)

    assert [i.key for i in first.opened] == ["database_unreachable"]
    assert not second.changed and not third.changed
    assert [i.key for i in third.ongoing] == ["database_unreachable"]
    assert [i.key for i in fourth.resolved] == ["database_unreachable"]
    assert fourth.resolved[0].opened_at == T0
    assert not fifth.changed
    assert state.open == {} and state.last_checked_at == T0 + 4 * HOUR


def test_a_second_problem_during_an_incident_alerts_for_itself_only() -> None:
    state, _ = advance(HealthState(), [DB_DOWN], T0)
    state, change = advance(state, [DB_DOWN, DEEP], T0 + HOUR)
    assert [i.key for i in change.opened] == [DEEP.key]
    assert [i.key for i in change.ongoing] == [DB_DOWN.key]
    text = alert_text(change, T0 + HOUR)
    assert "1 new problem" in text and DEEP.summary in text and "Still open" in text

    state, change = advance(state, [DEEP], T0 + 3 * HOUR)
    assert [i.key for i in change.resolved] == [DB_DOWN.key]
    assert "open for 3 h 0 min" in resolved_text(change, T0 + 3 * HOUR)
    assert "1 problem(s) still open" in resolved_text(change, T0 + 3 * HOUR)


def test_state_survives_its_json_form() -> None:
    state, _ = advance(HealthState(), [DB_DOWN, DEEP], T0)
    restored = HealthState.from_json(state.to_json())
    assert restored == state
    _, change = advance(restored, [DB_DOWN, DEEP], T0 + HOUR)
    assert not change.changed


def test_unreadable_state_counts_as_no_open_incident() -> None:
    for junk in (
        None,
        "text",
        {"open": {"x": {"summary": "s"}}},
        {"open": {"x": {"opened_at": 5}}},
    ):
        assert HealthState.from_json(junk) == HealthState()


def test_long_summaries_are_cut_so_the_state_fits_a_prefect_variable() -> None:
    long = Problem("x", "y" * 10_000)
    state, _ = advance(HealthState(), [long], T0)
    assert len(str(state.to_json())) < 1000
