-- take_tokens --
-- Up to `want` tokens of a provider's shared bucket (rate NULL = only the backoff applies).
SELECT granted, wait_seconds
FROM jobs.take_tokens(%(provider)s, %(want)s, %(rate)s, %(burst)s);

-- provider_backoff --
-- The provider asked us to wait: nobody sends to it before now + seconds.
SELECT jobs.provider_backoff(%(provider)s, clock_timestamp() + make_interval(secs => %(seconds)s))
       AS blocked_until;

-- rate_limits --
-- Every provider's bucket and backoff, for `status`.
SELECT provider, rate, burst, tokens, refilled_at, blocked_until,
       greatest(0, extract(epoch FROM blocked_until - clock_timestamp()))::double precision
           AS blocked_for_seconds
FROM jobs.rate_limits ORDER BY provider;

-- pause --
-- Pause a queue ('*') or one message type of it; returns when the pause began.
SELECT jobs.pause(%(queue)s, %(type)s, %(source)s) AS paused_at;

-- resume --
-- Lift the pause of one type (or every pause of the queue with type NULL); wakes consumers.
SELECT message_type FROM jobs.resume(%(queue)s, %(type)s) AS message_type;

-- set_pauses --
-- Make a queue's pauses exactly `types` (the Prefect variable's state); kept ones keep their start.
SELECT jobs.set_pauses(%(queue)s, %(types)s::text[], %(source)s);

-- pauses --
-- Every pause with how long it has lasted, for `status` and the health check.
SELECT queue, message_type, paused_at, source,
       extract(epoch FROM now() - paused_at)::double precision AS paused_for_seconds
FROM jobs.pauses
WHERE %(queue)s::text IS NULL OR queue = %(queue)s
ORDER BY queue, message_type;

-- pause_mirror_applied --
-- The Prefect variable's `updated` time the mirror applied last (NULL: never).
SELECT variable_updated FROM jobs.pause_mirror WHERE name = %(name)s;

-- pause_mirror_record --
-- Remember which version of the Prefect variable is in jobs.pauses.
INSERT INTO jobs.pause_mirror (name, variable_updated) VALUES (%(name)s, %(updated)s)
ON CONFLICT (name) DO UPDATE SET variable_updated = excluded.variable_updated;
