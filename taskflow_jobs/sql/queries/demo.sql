-- demo_user_count --
-- How many users exist (demo data is seeded into an empty database only).
SELECT count(*) AS n FROM auth.users;

-- demo_signup --
-- A user signs up (the trigger enqueues the welcome email).
INSERT INTO auth.users (email, raw_user_meta_data, created_at)
VALUES (%(email)s, jsonb_build_object('full_name', %(name)s::text), %(created_at)s)
RETURNING id;

-- demo_history --
-- Tasks spread over the last 8 days (deterministically), half completed, none assigned.
INSERT INTO public.tasks (title, status, created_by, created_at, completed_at)
SELECT 'Demo task ' || n,
       CASE WHEN n %% 2 = 0 THEN 'completed' ELSE 'todo' END,
       %(creator)s,
       t.created_at,
       CASE WHEN n %% 2 = 0 THEN least(now(), t.created_at + (n %% 48) * interval '1 hour') END
FROM generate_series(1, %(count)s) AS n
CROSS JOIN LATERAL (
    SELECT now() - ((n * 7919) %% 1000) / 1000.0 * interval '8 days' AS created_at
) t;

-- demo_assign --
-- A task gets an assignee (the trigger enqueues the task_assigned email).
INSERT INTO public.tasks (title, assignee_id, created_by)
VALUES (%(title)s, %(assignee)s, %(creator)s)
RETURNING id;

-- demo_message_for_key --
-- The queue message an idempotency key points at (to find the email a change caused).
SELECT message_id FROM jobs.idempotency_keys WHERE queue = 'email_notifications' AND key = %(key)s;

-- demo_task_message --
-- The task_assigned message of a task.
SELECT message_id FROM jobs.idempotency_keys
WHERE queue = 'email_notifications' AND key LIKE 'task_assigned:' || %(task_id)s || ':%%';

-- demo_daily_stats --
-- The daily_stats row of one day.
SELECT date, new_tasks, completed_tasks, new_users FROM public.daily_stats WHERE date = %(day)s;
