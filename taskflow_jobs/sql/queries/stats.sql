-- refresh_daily_stats --
-- Count new tasks, completed tasks and new users per local day and upsert them: one index range scan per table over [start, end), grouped by the day in the given time zone.
WITH new_tasks AS (
    SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, count(*) AS n
    FROM public.tasks
    WHERE created_at >= %(start)s AND created_at < %(end)s
    GROUP BY 1
), completed_tasks AS (
    SELECT (completed_at AT TIME ZONE %(tz)s)::date AS day, count(*) AS n
    FROM public.tasks
    WHERE completed_at >= %(start)s AND completed_at < %(end)s
    GROUP BY 1
), new_users AS (
    SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, count(*) AS n
    FROM auth.users
    WHERE created_at >= %(start)s AND created_at < %(end)s
    GROUP BY 1
)
INSERT INTO public.daily_stats AS s (date, new_tasks, completed_tasks, new_users, computed_at)
SELECT d.day, coalesce(t.n, 0), coalesce(c.n, 0), coalesce(u.n, 0), now()
FROM unnest(%(days)s::date[]) AS d (day)
LEFT JOIN new_tasks t ON t.day = d.day
LEFT JOIN completed_tasks c ON c.day = d.day
LEFT JOIN new_users u ON u.day = d.day
ON CONFLICT (date) DO UPDATE
SET new_tasks = EXCLUDED.new_tasks,
    completed_tasks = EXCLUDED.completed_tasks,
    new_users = EXCLUDED.new_users,
    computed_at = EXCLUDED.computed_at
RETURNING s.date, s.new_tasks, s.completed_tasks, s.new_users, s.computed_at;

-- missing_stats_days --
-- Days in [first, last] that have no daily_stats row yet.
SELECT d::date AS date
FROM generate_series(%(first)s::date, %(last)s::date, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM public.daily_stats s WHERE s.date = d::date)
ORDER BY 1;

-- daily_stats_between --
-- The stored rows for [first, last], oldest first.
SELECT date, new_tasks, completed_tasks, new_users, computed_at
FROM public.daily_stats
WHERE date >= %(first)s AND date <= %(last)s
ORDER BY date;

-- email_totals --
-- Sent (archived, not skipped), dead-lettered and retried (failures that were tried again) messages of a queue in [start, end). The last error of a dead letter is its burial, not a retry.
WITH failures AS (
    SELECT (e ->> 'at')::timestamptz AS at
    FROM jobs.messages m, jsonb_array_elements(m.errors) AS e
    WHERE m.queue = %(queue)s
    UNION ALL
    SELECT (e ->> 'at')::timestamptz
    FROM jobs.archive a, jsonb_array_elements(a.errors) AS e
    WHERE a.queue = %(queue)s AND a.finalized_at >= %(start)s
    UNION ALL
    SELECT (x.e ->> 'at')::timestamptz
    FROM jobs.dead_letters d, jsonb_array_elements(d.errors) WITH ORDINALITY AS x (e, i)
    WHERE d.queue = %(queue)s AND d.dead_lettered_at >= %(start)s
      AND x.i < jsonb_array_length(d.errors)
)
SELECT
    (SELECT count(*) FROM jobs.archive
     WHERE queue = %(queue)s AND finalized_at >= %(start)s AND finalized_at < %(end)s
       AND skipped_reason IS NULL) AS sent,
    (SELECT count(*) FROM failures WHERE at >= %(start)s AND at < %(end)s) AS retried,
    (SELECT count(*) FROM jobs.dead_letters
     WHERE queue = %(queue)s AND dead_lettered_at >= %(start)s AND dead_lettered_at < %(end)s)
        AS dead_lettered;
