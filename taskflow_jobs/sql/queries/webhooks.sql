-- webhook_receipts_claim --
-- Take receipts in key order (no deadlocks); returns the keys taken, not those already held.
INSERT INTO jobs.webhook_receipts AS r (key, expires_at)
SELECT k.key, k.expires_at
FROM unnest(%(keys)s::text[], %(expires_at)s::timestamptz[]) AS k (key, expires_at)
ORDER BY k.key
ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, created_at = now()
    WHERE r.expires_at < now()
RETURNING r.key;

-- webhook_receipts_expire --
-- Delete up to `limit` receipts that expired before `before` (a background chore).
DELETE FROM jobs.webhook_receipts
WHERE key IN (
    SELECT key FROM jobs.webhook_receipts WHERE expires_at < %(before)s
    ORDER BY expires_at LIMIT %(limit)s
);

-- webhook_enqueue_welcome_email --
-- The trigger's enqueue function, with the name taken from the metadata as the trigger does.
SELECT jobs.enqueue_welcome_email(%(user_id)s, %(email)s,
                                  %(meta)s::jsonb ->> 'full_name') AS id;

-- webhook_enqueue_task_assigned --
-- The trigger's enqueue function: same payload and idempotency key as the trigger.
SELECT jobs.enqueue_task_assigned(%(task_id)s, %(title)s, %(assignee_id)s, %(assigner_id)s,
                                  %(assigned_at)s) AS id;

-- webhook_job --
-- A job the receiver just enqueued: its payload, and whether this transaction created it
-- (an idempotency key may have returned an older job; enqueued_at = now() only for ours).
SELECT payload, enqueued_at = now() AS created FROM jobs.messages WHERE id = %(id)s
UNION ALL
SELECT payload, false FROM jobs.archived(%(id)s)
UNION ALL
SELECT payload, false FROM jobs.dead_letters WHERE id = %(id)s;

-- webhook_ready --
-- Whether the database has the receiver's objects (migrations applied).
SELECT to_regclass('jobs.webhook_receipts') IS NOT NULL
       AND to_regprocedure('jobs.enqueue_task_assigned(bigint,text,uuid,uuid,timestamptz)')
           IS NOT NULL AS ready;
