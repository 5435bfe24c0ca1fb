-- delete_expired_audit_log --
-- One batch: the audit_log rows of the window [lo, hi), all older than `cutoff` (an index range scan, no sort, no row-id list).
DELETE FROM public.audit_log
WHERE created_at >= %(lo)s AND created_at < %(hi)s AND created_at < %(cutoff)s;

-- delete_expired_archive --
-- One batch: the archive's batches finalized in the window [lo, hi), before `cutoff`; the number of messages they held.
WITH gone AS (
    DELETE FROM jobs.archive_batches
    WHERE finalized_at >= %(lo)s AND finalized_at < %(hi)s AND finalized_at < %(cutoff)s
    RETURNING cardinality(ids) AS messages
)
SELECT coalesce(sum(messages), 0)::bigint AS deleted FROM gone;

-- delete_expired_dead_letters --
-- One batch: dead letters buried in the window [lo, hi), before `cutoff`.
DELETE FROM jobs.dead_letters
WHERE dead_lettered_at >= %(lo)s AND dead_lettered_at < %(hi)s AND dead_lettered_at < %(cutoff)s;

-- delete_expired_idempotency_keys --
-- One batch: keys taken in the window [lo, hi), before `cutoff`, whose message is no longer live (a pending message keeps its key).
DELETE FROM jobs.idempotency_keys k
WHERE k.created_at >= %(lo)s AND k.created_at < %(hi)s AND k.created_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM jobs.messages m WHERE m.id = k.message_id);

-- cleanup_next_at --
-- Template ({table}, {column}): the oldest expired timestamp at or after `after` (where the next window starts; jumps over empty stretches).
SELECT min({column}) AS at FROM {table} WHERE {column} >= %(after)s AND {column} < %(cutoff)s;

-- cleanup_nth_at --
-- Template ({table}, {column}): the timestamp `rows` expired rows after `after` (sizes the first window to about `rows` rows).
SELECT {column} AS at FROM {table}
WHERE {column} >= %(after)s AND {column} < %(cutoff)s
ORDER BY {column} OFFSET %(rows)s LIMIT 1;

-- cleanup_nth_at_messages --
-- Template ({table}, {column}) for the archive's batches: the timestamp `rows` archived messages after `after` (a batch counts as its messages).
SELECT at FROM (
    SELECT {column} AS at, sum(cardinality(ids)) OVER (ORDER BY {column}) AS messages
    FROM {table}
    WHERE {column} >= %(after)s AND {column} < %(cutoff)s
) AS running
WHERE messages > %(rows)s
ORDER BY at LIMIT 1;

-- vacuum_audit_log --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) public.audit_log;

-- vacuum_archive --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.archive_batches;

-- vacuum_dead_letters --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.dead_letters;

-- vacuum_idempotency_keys --
-- Reclaim space and refresh statistics after a cleanup (outside a transaction).
VACUUM (ANALYZE) jobs.idempotency_keys;

-- cleanup_batch_limits --
-- Session limits for the DELETE batches: cancel a batch that runs far past its target, never wait long for a lock, show up as taskflow-cleanup in pg_stat_activity.
-- synchronous_commit off: a batch's commit does not wait for its WAL fsync, which made the application's own inserts wait behind it (writer p99 20-60 ms instead of 2-3 ms in bench/cleanup.py). Safe because deleting expired rows is idempotent: a crash in the next ~0.6 s can only bring a batch's rows back, and the next run deletes them.
SELECT set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('application_name', %(application_name)s, false),
       set_config('synchronous_commit', 'off', false);

-- cleanup_vacuum_limits --
-- VACUUM may run for minutes on a big table but blocks no writer: lift the batch timeout.
SELECT set_config('statement_timeout', '0', false);
