"""The daily and weekly reports, built with pandas from `daily_stats` rows.

Each report comes in two renderings of the same numbers: markdown for the Prefect
artifact, and Slack mrkdwn (a monospace table in a code block, since Slack renders no
markdown tables).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import pandas as pd

from taskflow_jobs.reports.stats import DayStats, EmailTotals

METRICS = {"new_tasks": "New tasks", "completed_tasks": "Completed tasks", "new_users": "New users"}


@dataclass(frozen=True)
class Report:
    title: str
    markdown: str
    slack_text: str
    figures: dict[str, object]


History: TypeAlias = Sequence[DayStats] | pd.DataFrame


def frame(rows: History, first: dt.date, last: dt.date) -> pd.DataFrame:
    """One row per day in [first, last]; days without a stored row are NaN.

    `rows` are `daily_stats` rows, or the frame `stats.history_frame` read with pandas.
    """
    days = pd.Index([first + dt.timedelta(days=i) for i in range((last - first).days + 1)])
    if isinstance(rows, pd.DataFrame):
        data = rows[["date", *METRICS]]
    else:
        data = pd.DataFrame(
            [{"date": r.date, **{m: getattr(r, m) for m in METRICS}} for r in rows],
            columns=["date", *METRICS],
        )
    return data.set_index("date").reindex(days).astype("float64")


def _number(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _change(new: float, old: float) -> str:
    """'+20 (+20.0%)'; 'n/a' when either side is unknown."""
    if any(v is None or math.isnan(v) for v in (new, old)):
        return "n/a"
    diff = new - old
    pct = f" ({diff / old:+.1%})" if old else ""
    return f"{diff:+,.0f}{pct}" if float(diff).is_integer() else f"{diff:+,.1f}{pct}"


def _percent(new: float, base: float) -> str:
    if any(v is None or math.isnan(v) for v in (new, base)) or not base:
        return "n/a"
    return f"{(new - base) / base:+.1%}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width table for a Slack code block."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _day_name(day: dt.date) -> str:
    return day.strftime("%a %d %b %Y")


Section = tuple[str | None, list[str], list[list[str]]]  # (heading, headers, rows)


def render(
    title: str,
    sections: Sequence[Section],
    notes: Sequence[str],
    *,
    slack_notes: Sequence[str] | None = None,
) -> tuple[str, str]:
    """The same tables as a markdown artifact and as a Slack message (monospace blocks)."""
    markdown, slack = [f"# {title}"], [f"*{title}*"]
    for heading, headers, rows in sections:
        if heading:
            markdown.append(f"## {heading}")
            slack.append(f"*{heading}*")
        markdown.append(markdown_table(headers, rows))
        slack.append("```" + text_table(headers, rows) + "```")
    markdown += notes
    slack += [f"_{n}_" for n in (notes if slack_notes is None else slack_notes)]
    return "\n\n".join(markdown), "\n".join(slack)


def daily_report(
    rows: History, day: dt.date, timezone: str, filled: Sequence[dt.date] = ()
) -> Report:
    """The day's figures, the change versus the day before and the 7-day trend.

    `rows` should cover the 14 days ending at `day`: the trend compares the 7-day average
    with the average of the 7 days before.
    """
    data = frame(rows, day - dt.timedelta(days=13), day)
    week = data.loc[day - dt.timedelta(days=6) : day]
    week_before = data.loc[day - dt.timedelta(days=13) : day - dt.timedelta(days=7)]
    today, yesterday = data.loc[day], data.loc[day - dt.timedelta(days=1)]
    average, average_before = week.mean(), week_before.mean()

    headers = ["Metric", _day_name(day), "vs day before", "7-day avg", "7-day trend"]
    summary = [
        [
            label,
            _number(today[m]),
            _change(today[m], yesterday[m]),
            _number(round(average[m], 1)),
            _percent(average[m], average_before[m]),
        ]
        for m, label in METRICS.items()
    ]
    trend_headers = ["Date", *METRICS.values()]
    trend = [[d.isoformat(), *(_number(week.loc[d, m]) for m in METRICS)] for d in week.index]
    title = f"Daily stats for {_day_name(day)} ({timezone})"
    notes = []
    if filled:
        notes.append("Caught up missing days: " + ", ".join(d.isoformat() for d in filled) + ".")
    missing = [d.isoformat() for d in week.index if week.loc[d].isna().all()]
    if missing:
        notes.append("No figures stored for: " + ", ".join(missing) + ".")

    markdown, slack = render(
        title,
        [(None, headers, summary), ("Last 7 days", trend_headers, trend)],
        ["7-day trend: the 7-day average versus the 7 days before.", *notes],
        slack_notes=notes,
    )
    figures = {
        "date": day.isoformat(),
        **{m: int(today[m]) for m in METRICS if not math.isnan(today[m])},
        "filled": [d.isoformat() for d in filled],
    }
    return Report(title, markdown, slack, figures)


def weekly_report(
    rows: Sequence[DayStats], first: dt.date, last: dt.date, timezone: str, email: EmailTotals
) -> Report:
    """The 7 days [first, last] of daily_stats with totals, plus email totals."""
    data = frame(rows, first, last)
    totals = data.sum(min_count=1)
    headers = ["Date", *METRICS.values()]
    table = [
        [d.strftime("%a %Y-%m-%d"), *(_number(data.loc[d, m]) for m in METRICS)] for d in data.index
    ]
    table.append(["Total", *(_number(totals[m]) for m in METRICS)])
    email_headers = ["Email", "Count"]
    email_rows = [
        ["Sent", f"{email.sent:,}"],
        ["Retried", f"{email.retried:,}"],
        ["Dead-lettered", f"{email.dead_lettered:,}"],
    ]
    title = f"Weekly summary {first.isoformat()} to {last.isoformat()} ({timezone})"
    missing = [d.isoformat() for d in data.index if data.loc[d].isna().all()]
    notes = ["No figures stored for: " + ", ".join(missing) + "."] if missing else []
    markdown, slack = render(
        title, [(None, headers, table), ("Email", email_headers, email_rows)], notes
    )
    figures = {
        "first": first.isoformat(),
        "last": last.isoformat(),
        **{m: int(totals[m]) for m in METRICS if not math.isnan(totals[m])},
        "emails_sent": email.sent,
        "emails_retried": email.retried,
        "emails_dead_lettered": email.dead_lettered,
    }
    return Report(title, markdown, slack, figures)
