-- Queries of the comparison's drivers (the designs' own SQL lives with each design).

-- signup --
-- A signup as the app makes it: one committed INSERT; the design's trigger queues the email.
INSERT INTO auth.users (id, email, raw_user_meta_data)
VALUES (gen_random_uuid(), %(email)s, jsonb_build_object('full_name', %(name)s::text))

-- burst --
-- Many signups in one statement: the throughput ceiling's backlog.
INSERT INTO auth.users (id, email, raw_user_meta_data)
SELECT gen_random_uuid(), e, jsonb_build_object('full_name', 'Burst')
FROM unnest(%(emails)s::text[]) AS e

-- taskflow_unknown --
-- A job of a type no consumer knows, queued past the CLI's checks (as a trigger could).
SELECT jobs.send('email_notifications', jsonb_build_object('type', %(type)s::text))

-- taskflow_backlog --
-- Messages not yet finished (queued, leased or waiting for a retry).
SELECT count(*) AS n FROM jobs.messages WHERE queue = 'email_notifications'

-- taskflow_dead_letters --
-- Dead letters with their reason and attempts.
SELECT payload ->> 'email' AS email, reason, attempt AS attempts, payload ->> 'type' AS type
FROM jobs.dead_letters ORDER BY id

-- taskflow_operator --
-- What `taskflow-jobs status` and the SQL views show after the run.
SELECT (SELECT count(*) FROM jobs.archive) AS archived,
       (SELECT count(*) FROM jobs.dead_letters) AS dead_letters,
       (SELECT count(*) FROM jobs.recent_failures) AS recorded_failures,
       (SELECT count(DISTINCT reason) FROM jobs.dead_letters) AS distinct_reasons

-- taskflow_reasons --
-- Dead letters per reason.
SELECT reason, count(*) AS n FROM jobs.dead_letters GROUP BY reason ORDER BY n DESC

-- taskflow_listening --
-- A session LISTENing: `consume` is up.
SELECT 1 FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'

-- supabase_unknown --
-- A job of a type the Edge Function does not know, sent as any trigger would.
SELECT pgmq.send('email_notifications', jsonb_build_object('type', %(type)s::text))

-- supabase_backlog --
-- pgmq's own count of messages in the queue (visible or not).
SELECT queue_length AS n FROM pgmq.metrics('email_notifications')

-- supabase_dead_letters --
-- Archived after read_ct >= 3, with the job_failures row the function wrote.
SELECT message ->> 'email' AS email, error AS reason, read_ct AS attempts,
       message ->> 'type' AS type
FROM public.job_failures ORDER BY id

-- supabase_operator --
-- What an operator can query afterwards: pgmq metrics, the archive, job_failures, pg_cron.
SELECT m.queue_length, m.total_messages,
       (SELECT count(*) FROM pgmq.a_email_notifications) AS archived,
       (SELECT count(*) FROM public.job_failures) AS job_failures,
       (SELECT count(*) FROM cron.job_run_details) AS cron_runs,
       (SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded') AS cron_succeeded
FROM pgmq.metrics('email_notifications') AS m
