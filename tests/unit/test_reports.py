"""The daily and weekly reports (pure pandas): numbers, changes, trend, missing days."""

from __future__ import annotations

import datetime as dt

from taskflow_jobs.reports import render
from taskflow_jobs.reports.stats import DayStats, EmailTotals

DAY = dt.date(2024, 4, 14)


def rows(values: dict[int, tuple[int, int, int]]) -> list[DayStats]:
    """{days before DAY: (new tasks, completed, new users)}."""
    return [DayStats(DAY - dt.timedelta(days=k), *v) for k, v in sorted(values.items())]


def test_daily_report_shows_the_day_the_change_and_the_trend() -> None:
    history = {k: (10, 5, 2) for k in range(7, 14)}  # the week before: 10 new tasks a day
    history |= {k: (20, 5, 2) for k in range(1, 7)}
    history[0] = (30, 6, 1)
    report = render.daily_report(
        rows(history), DAY, "Europe/Berlin", filled=[DAY - dt.timedelta(days=2)]
    )

    assert report.title == "Daily stats for Sun 14 Apr 2024 (Europe/Berlin)"
    summary = report.markdown.splitlines()[4]
    # new tasks 30, +10 vs 20 the day before, 7-day average (6*20+30)/7, trend vs 10/day
    assert summary == "| New tasks | 30 | +10 (+50.0%) | 21.4 | +114.3% |"
    assert "| New users | 1 | -1 (-50.0%) | 1.9 | -7.1% |" in report.markdown
    assert "Caught up missing days: 2024-04-12." in report.markdown
    assert "| 2024-04-08 | 20 | 5 | 2 |" in report.markdown
    assert report.figures == {
        "date": "2024-04-14",
        "new_tasks": 30,
        "completed_tasks": 6,
        "new_users": 1,
        "filled": ["2024-04-12"],
    }
    assert report.slack_text.startswith("*Daily stats for Sun 14 Apr 2024 (Europe/Berlin)*")
    assert "```" in report.slack_text and "New tasks" in report.slack_text


def test_daily_report_without_history_says_so_instead_of_inventing_numbers() -> None:
    report = render.daily_report(rows({0: (3, 0, 0)}), DAY, "UTC")
    assert "| New tasks | 3 | n/a | 3 | n/a |" in report.markdown
    assert "No figures stored for: 2024-04-08, 2024-04-09" in report.markdown


def test_change_from_zero_has_no_percentage() -> None:
    report = render.daily_report(rows({1: (0, 0, 0), 0: (4, 0, 0)}), DAY, "UTC")
    assert "| New tasks | 4 | +4 |" in report.markdown


def test_weekly_report_totals_the_days_and_the_email() -> None:
    first = DAY - dt.timedelta(days=6)
    week = rows({k: (k + 1, 1, 0) for k in range(0, 7) if k != 3})
    email = EmailTotals(sent=120, retried=7, dead_lettered=2)
    report = render.weekly_report(week, first, DAY, "UTC", email)

    assert "| Total | 24 | 6 | 0 |" in report.markdown  # 1+2+3+5+6+7, day 3 missing
    assert "| Sent | 120 |" in report.markdown and "| Dead-lettered | 2 |" in report.markdown
    assert "No figures stored for: 2024-04-11." in report.markdown
    assert report.figures["emails_retried"] == 7
    assert "Weekly summary 2024-04-08 to 2024-04-14" in report.slack_text


def test_text_table_aligns_columns() -> None:
    text = render.text_table(["Metric", "n"], [["a", 1], ["long name", 1000]])
    assert text.splitlines() == [
        "Metric        n",
        "---------  ----",
        "a             1",
        "long name  1000",
    ]
