"""Benchmark: daily-stats on 10 million tasks and 1 million users.

Ours: the day as a [local midnight, next local midnight) `timestamptz` range, counted and
upserted by one statement with an index range scan per table (`stats.refresh`).
Baseline: the original design's `DATE(created_at) = CURRENT_DATE - 1` counts, measured on
the same data in the same run, warm caches for both. Goal: >= 20x faster.

Runs on its own embedded PostgreSQL under /tmp (deleted afterwards). Last line: JSON.
Options: --tasks N --users N (defaults 10,000,000 / 1,000,000), --repeat N.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

# bench/ holds queue.py, which would shadow the stdlib `queue` module: take bench/ off the
# import path and put the project root there instead (for `bench._scratch`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._scratch import migrated_database, scratch_postgres  # noqa: E402
from taskflow_jobs import db
from taskflow_jobs.reports import stats

# The original design: one INSERT of three counts, each over every row of its table.
BASELINE = """
INSERT INTO public.daily_stats (date, new_tasks, completed_tasks, new_users)
SELECT CURRENT_DATE - 1,
       (SELECT count(*) FROM public.tasks WHERE DATE(created_at) = CURRENT_DATE - 1),
       (SELECT count(*) FROM public.tasks WHERE DATE(completed_at) = CURRENT_DATE - 1),
       (SELECT count(*) FROM auth.users WHERE DATE(created_at) = CURRENT_DATE - 1)
ON CONFLICT (date) DO UPDATE
SET new_tasks = EXCLUDED.new_tasks, completed_tasks = EXCLUDED.completed_tasks,
    new_users = EXCLUDED.new_users, computed_at = now()
RETURNING date, new_tasks, completed_tasks, new_users
"""

# Bulk load without the app's triggers (no welcome emails for a million fake users),
# indexes rebuilt afterwards, as one would restore a dump.
LOAD_USERS = """
INSERT INTO auth.users (id, email, created_at)
SELECT gen_random_uuid(), 'user' || i || '@example.com',
       now() - interval '730 days' * random()
FROM generate_series(1, %(users)s) AS i
"""
LOAD_TASKS = """
INSERT INTO public.tasks (title, status, created_at, completed_at)
SELECT 'task ' || i,
       CASE WHEN done THEN 'completed' ELSE 'todo' END,
       created,
       CASE WHEN done THEN least(created + interval '10 days' * random(), now()) END
FROM (
    SELECT i, now() - interval '365 days' * random() AS created, random() < 0.6 AS done
    FROM generate_series(1, %(tasks)s) AS i
) AS g
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(url: str, tasks: int, users: int) -> None:
    with db.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute(
            "SELECT schemaname, indexname, indexdef FROM pg_indexes"
            " WHERE (schemaname, tablename) IN (('public', 'tasks'), ('auth', 'users'))"
            " AND indexname NOT LIKE '%%_pkey'"
        ).fetchall()
        for index in indexes:
            conn.execute(f'DROP INDEX {index["schemaname"]}."{index["indexname"]}"')
        started = time.perf_counter()
        conn.execute(LOAD_USERS, {"users": users})
        log(f"  {users:,} users in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        conn.execute(LOAD_TASKS, {"tasks": tasks})
        log(f"  {tasks:,} tasks in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        for index in indexes:
            conn.execute(index["indexdef"])
        conn.execute("VACUUM (ANALYZE) public.tasks")
        conn.execute("VACUUM (ANALYZE) auth.users")
        log(f"  indexes and VACUUM ANALYZE in {time.perf_counter() - started:.0f} s")


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median milliseconds over `repeat` runs after one warm-up run, and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with scratch_postgres("bench-daily-stats-") as (embedded, root):
        url = migrated_database(embedded, "bench")
        log(f"loading data into {root} …")
        load(url, args.tasks, args.users)

        tz = ZoneInfo("UTC")
        with db.connect(url, autocommit=True) as conn:
            conn.execute("SET TimeZone = 'UTC'")  # the baseline's DATE() uses the session zone
            yesterday = stats.today(tz) - dt.timedelta(days=1)
            week = [yesterday - dt.timedelta(days=i) for i in range(6, -1, -1)]

            ours_ms, ours = timed(lambda: stats.refresh(conn, [yesterday], tz), args.repeat)
            catch_up_ms, _ = timed(lambda: stats.refresh(conn, week, tz), args.repeat)
            base_ms, base = timed(
                lambda: conn.execute(BASELINE).fetchone(), max(1, args.repeat // 2)
            )
        (mine,) = ours
        same = (mine.new_tasks, mine.completed_tasks, mine.new_users) == (
            base["new_tasks"],
            base["completed_tasks"],
            base["new_users"],
        )
        log(f"ours {ours_ms:.1f} ms (7 days: {catch_up_ms:.1f} ms), original {base_ms:.0f} ms")
        result = {
            "bench": "daily_stats",
            "tasks": args.tasks,
            "users": args.users,
            "day": yesterday.isoformat(),
            "counts": {
                "new_tasks": mine.new_tasks,
                "completed_tasks": mine.completed_tasks,
                "new_users": mine.new_users,
            },
            "counts_match_baseline": same,
            "ours_ms": round(ours_ms, 2),
            "ours_catch_up_7_days_ms": round(catch_up_ms, 2),
            "baseline": "original design: DATE(created_at) = CURRENT_DATE - 1, one day",
            "baseline_ms": round(base_ms, 1),
            "ratio": round(base_ms / ours_ms, 1),
            "catch_up_ratio": round(7 * base_ms / catch_up_ms, 1),
            "goal": "ratio >= 20",
            "machine": "2 shared cores: figures are indicative",
        }
        print(json.dumps(result))
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
