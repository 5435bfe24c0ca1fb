-- send --
-- Enqueue one message in the caller's transaction; returns its id (or the key holder's).
SELECT jobs.send(%(queue)s, %(payload)s, %(delay)s, %(idempotency_key)s, %(max_attempts)s,
                 %(priority)s::smallint) AS id;

-- send_batch --
-- Enqueue many messages without keys (payloads: one JSON array); ids in input order.
SELECT id FROM jobs.send_batch(%(queue)s, %(payloads)s::jsonb, %(delay)s, %(priority)s::smallint) AS id;

-- claim --
-- Lease up to batch_size visible messages to a token (columns in Message's field order,
-- less the queue, which the caller knows; an empty error history comes back as NULL, which
-- is cheaper to decode; no enqueue time, which nothing reads), lane by lane,
-- from lane 0 up to last_lane (0: the express lane's transactional messages only), leaving
-- transactional messages younger than leave_fresh to the express lane.
SELECT id, payload, attempt, max_attempts, nullif(errors, '[]'::jsonb), redrive_count, priority
FROM jobs.claim(%(queue)s, %(batch_size)s, %(visibility_timeout)s, %(token)s,
                coalesce(%(now)s::timestamptz, now()), %(last_lane)s::smallint,
                %(leave_fresh)s::interval)
ORDER BY priority, id;

-- ack --
-- Archive delivered messages still leased to the token.
SELECT id FROM jobs.ack(%(ids)s::bigint[], %(token)s, coalesce(%(now)s::timestamptz, now())) AS id;

-- ack_many --
-- Archive the delivered messages of several batches at once, each id with its batch's
-- token (the settles of every batch in flight: one statement, one round trip).
SELECT a.id
FROM (SELECT t.token, array_agg(t.id) AS ids
      FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS t(id, token)
      GROUP BY t.token) AS g
CROSS JOIN LATERAL jobs.ack(g.ids, g.token, coalesce(%(now)s::timestamptz, now())) AS a(id);

-- retry_later --
-- Release leased messages until their delay has passed, recording each error.
SELECT id FROM jobs.retry_later(%(ids)s::bigint[], %(errors)s, %(delays)s::interval[], %(token)s,
                                coalesce(%(now)s::timestamptz, now())) AS id;

-- release --
-- Hand leased messages back untouched (shutdown).
SELECT id FROM jobs.release(%(ids)s::bigint[], %(token)s, coalesce(%(now)s::timestamptz, now())) AS id;

-- dead_letter --
-- Move leased messages to the dead letters with their reasons.
SELECT id FROM jobs.dead_letter(%(ids)s::bigint[], %(reasons)s, %(token)s,
                                coalesce(%(now)s::timestamptz, now())) AS id;

-- redrive --
-- Put dead letters back in their queue (NULL filters match all).
SELECT id FROM jobs.redrive(%(ids)s::bigint[], %(queue)s, %(type)s) AS id;

-- metrics --
-- Depth, visible, in flight, delayed, oldest ages and dead letters per queue.
SELECT * FROM jobs.metrics(%(queue)s);

-- dead_letters --
-- Newest dead letters, optionally of one queue and message type.
SELECT id, queue, payload, enqueued_at, dead_lettered_at, attempt, max_attempts, errors, reason,
       redrive_count
FROM jobs.dead_letters
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(type)s::text IS NULL OR payload ->> 'type' = %(type)s)
ORDER BY dead_lettered_at DESC, id DESC
LIMIT %(limit)s;

-- next_visible_at --
-- When the earliest message of a queue becomes claimable (for a consumer's sleep).
SELECT min(greatest(visible_at, leased_until)) AS at FROM jobs.messages WHERE queue = %(queue)s;

-- message_state --
-- Where a message is now: pending, archived, skipped or dead, with its history (and reason).
SELECT 'pending' AS state, id, queue, payload, attempt, errors, NULL::text AS reason
FROM jobs.messages WHERE id = %(id)s
UNION ALL
SELECT CASE WHEN skipped_reason IS NULL THEN 'archived' ELSE 'skipped' END, id, queue, payload,
       attempt, errors, skipped_reason
FROM jobs.archived(%(id)s)
UNION ALL
SELECT 'dead', id, queue, payload, attempt, errors, reason FROM jobs.dead_letters WHERE id = %(id)s;
