-- delete_expired_audit_log --
-- One batch: up to `limit` audit_log rows older than `cutoff`, oldest first from `after` (keyset: each batch starts where the last one ended instead of re-reading the index entries it deleted); returns the count and the newest created_at deleted.
WITH batch AS (
    DELETE FROM public.audit_log
    WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM public.audit_log
            WHERE created_at >= %(after)s AND created_at < %(cutoff)s
            ORDER BY created_at
            LIMIT %(limit)s))
      AND created_at < %(cutoff)s
    RETURNING created_at AS at
)
SELECT count(*) AS deleted, count(*) AS scanned, max(at) AS last FROM batch;

-- delete_expired_archive --
-- One batch of acked messages finalized before `cutoff`, oldest first from `after`.
WITH batch AS (
    DELETE FROM jobs.archive
    WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM jobs.archive
            WHERE finalized_at >= %(after)s AND finalized_at < %(cutoff)s
            ORDER BY finalized_at
            LIMIT %(limit)s))
      AND finalized_at < %(cutoff)s
    RETURNING finalized_at AS at
)
SELECT count(*) AS deleted, count(*) AS scanned, max(at) AS last FROM batch;

-- delete_expired_dead_letters --
-- One batch of dead letters buried before `cutoff`, oldest first from `after`.
WITH batch AS (
    DELETE FROM jobs.dead_letters
    WHERE ctid = ANY (ARRAY(
            SELECT ctid FROM jobs.dead_letters
            WHERE dead_lettered_at >= %(after)s AND dead_lettered_at < %(cutoff)s
            ORDER BY dead_lettered_at
            LIMIT %(limit)s))
      AND dead_lettered_at < %(cutoff)s
    RETURNING dead_lettered_at AS at
)
SELECT count(*) AS deleted, count(*) AS scanned, max(at) AS last FROM batch;

-- delete_expired_idempotency_keys --
-- One batch of idempotency keys taken before `cutoff` whose message is no longer live (a pending message keeps its key), oldest first from `after`. A batch can delete fewer than it read (live keys): `scanned` tells the caller whether more may follow.
WITH candidates AS (
    SELECT i.ctid, i.created_at, i.message_id FROM jobs.idempotency_keys i
    WHERE i.created_at >= %(after)s AND i.created_at < %(cutoff)s
    ORDER BY i.created_at
    LIMIT %(limit)s
), batch AS (
    DELETE FROM jobs.idempotency_keys k
    WHERE k.ctid = ANY (ARRAY(
            SELECT c.ctid FROM candidates c
            WHERE NOT EXISTS (SELECT 1 FROM jobs.messages m WHERE m.id = c.message_id)))
      AND k.created_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM jobs.messages m WHERE m.id = k.message_id)
    RETURNING k.created_at AS at
)
SELECT (SELECT count(*) FROM batch) AS deleted,
       (SELECT count(*) FROM candidates) AS scanned,
       (SELECT max(created_at) FROM candidates) AS last;

-- vacuum_audit_log --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) public.audit_log;

-- vacuum_archive --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.archive;

-- vacuum_dead_letters --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.dead_letters;

-- vacuum_idempotency_keys --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.idempotency_keys;

-- cleanup_batch_limits --
-- Session limits for the DELETE batches: cancel a batch that runs far past its target, never wait long for a lock, show up as taskflow-cleanup in pg_stat_activity.
SELECT set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('application_name', %(application_name)s, false);

-- cleanup_vacuum_limits --
-- VACUUM may run for minutes on a big table but blocks no writer: lift the batch timeout.
SELECT set_config('statement_timeout', '0', false);
