-- email_profiles --
-- Addresses and names of the profiles a batch of task_assigned messages needs (one query per batch).
SELECT id, email, full_name FROM public.profiles WHERE id = ANY (%(ids)s::uuid[]);

-- email_visible_count --
-- How many messages could be claimed now (not paused), counting at most `limit`
-- (uses messages_claim_idx).
SELECT count(*) AS n
FROM (
    SELECT 1 FROM jobs.messages m
    WHERE queue = %(queue)s AND visible_at <= coalesce(%(now)s::timestamptz, now())
      AND (leased_until IS NULL OR leased_until <= coalesce(%(now)s::timestamptz, now()))
      AND NOT EXISTS (SELECT 1 FROM jobs.pauses p
                      WHERE p.queue = m.queue
                        AND p.message_type IN ('*', coalesce(m.payload ->> 'type', '')))
    LIMIT %(limit)s
) AS visible;

-- email_sync_max_attempts --
-- Make the queue's default attempt limit (used for new messages) follow EMAIL_MAX_ATTEMPTS.
UPDATE jobs.queues SET max_attempts = %(max_attempts)s
WHERE name = %(queue)s AND max_attempts <> %(max_attempts)s
RETURNING name;

-- email_dead_letters --
-- Dead letters for `dlq list`: newest first, filtered by type, reason text and age.
SELECT id, queue, payload, payload ->> 'type' AS type, enqueued_at, dead_lettered_at, attempt,
       max_attempts, errors, reason, redrive_count
FROM jobs.dead_letters
WHERE queue = %(queue)s
  AND (%(type)s::text IS NULL OR payload ->> 'type' = %(type)s)
  AND (%(reason)s::text IS NULL OR reason ILIKE '%%' || %(reason)s || '%%')
  AND (%(since)s::timestamptz IS NULL OR dead_lettered_at >= %(since)s)
ORDER BY dead_lettered_at DESC, id DESC
LIMIT %(limit)s;

-- email_dead_letter --
-- One dead letter with its whole history, for `dlq show`.
SELECT id, queue, payload, payload ->> 'type' AS type, enqueued_at, dead_lettered_at, attempt,
       max_attempts, errors, reason, redrive_count
FROM jobs.dead_letters
WHERE id = %(id)s;

-- email_next_visible_in --
-- Seconds until the next message (pending, or leased with its lease ending) may be claimed;
-- paused ones never (a resume wakes the consumers).
SELECT extract(epoch FROM min(greatest(visible_at, leased_until))
                          - coalesce(%(now)s::timestamptz, now()))::double precision
       AS seconds
FROM jobs.messages m
WHERE queue = %(queue)s
  AND NOT EXISTS (SELECT 1 FROM jobs.pauses p
                  WHERE p.queue = m.queue
                    AND p.message_type IN ('*', coalesce(m.payload ->> 'type', '')));

-- email_overdue --
-- Messages claimable for at least %(after)s seconds (nobody is sending them: no consumer,
-- or one that died holding a lease): how many (at most 10,000) and how long the oldest
-- has waited. Paused ones are not overdue. Uses messages_claim_idx.
SELECT count(*) AS n, extract(epoch FROM max(waited)) AS oldest_seconds
FROM (
    SELECT coalesce(%(now)s::timestamptz, now()) - greatest(visible_at, leased_until) AS waited
    FROM jobs.messages m
    WHERE queue = %(queue)s
      AND visible_at <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(after)s)
      AND (leased_until IS NULL
           OR leased_until <= coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(after)s))
      AND NOT EXISTS (SELECT 1 FROM jobs.pauses p
                      WHERE p.queue = m.queue
                        AND p.message_type IN ('*', coalesce(m.payload ->> 'type', '')))
    LIMIT 10000
) AS overdue;
