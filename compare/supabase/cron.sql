-- The case study's pg_cron jobs. `app.edge_function_url` is set on the database at install
-- (a Supabase project hard-codes its project URL here, or reads it from Vault).

-- The scheduled mode of the email consumer: invoke the Edge Function once a minute.
SELECT cron.schedule(
    'process-email-queue',
    '* * * * *',
    $$SELECT net.http_post(
        url := current_setting('app.edge_function_url'),
        body := '{"source": "pg_cron"}'::jsonb
    )$$
);

-- Daily stats for yesterday, at 01:00.
SELECT cron.schedule(
    'daily-stats',
    '0 1 * * *',
    $$INSERT INTO public.daily_stats (date, new_tasks, completed_tasks, new_users)
      SELECT CURRENT_DATE - 1,
             (SELECT count(*) FROM public.tasks WHERE DATE(created_at) = CURRENT_DATE - 1),
             (SELECT count(*) FROM public.tasks WHERE DATE(completed_at) = CURRENT_DATE - 1),
             (SELECT count(*) FROM auth.users WHERE DATE(created_at) = CURRENT_DATE - 1)
      ON CONFLICT (date) DO UPDATE
      SET new_tasks = EXCLUDED.new_tasks,
          completed_tasks = EXCLUDED.completed_tasks,
          new_users = EXCLUDED.new_users,
          computed_at = now()$$
);

-- Weekly cleanup, Sundays at 02:00: old archived messages and old failure rows.
SELECT cron.schedule(
    'weekly-cleanup',
    '0 2 * * 0',
    $$DELETE FROM pgmq.a_email_notifications WHERE archived_at < now() - interval '30 days';
      DELETE FROM public.job_failures WHERE failed_at < now() - interval '90 days'$$
);
