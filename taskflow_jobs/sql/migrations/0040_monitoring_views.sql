-- Monitoring views: the original design's `job_failures` table, as a view over the
-- error history every message carries. (Queue metrics: jobs.queue_metrics, in 0002.)

-- One row per recorded failure in the last 7 days, newest first, with where the
-- message is now: pending (will retry), sent (succeeded later) or dead (dead-lettered).
CREATE VIEW jobs.recent_failures AS
SELECT (e ->> 'at')::timestamptz AS failed_at,
       f.id AS message_id,
       f.queue,
       f.payload ->> 'type' AS message_type,
       (e ->> 'attempt')::integer AS attempt,
       e ->> 'error' AS error,
       f.outcome
FROM (
    SELECT id, queue, payload, errors, 'pending' AS outcome FROM jobs.messages
    WHERE errors <> '[]'::jsonb
    UNION ALL
    SELECT id, queue, payload, errors, 'sent' FROM jobs.archive
    WHERE finalized_at > now() - interval '7 days' AND errors <> '[]'::jsonb
    UNION ALL
    SELECT id, queue, payload, errors, 'dead' FROM jobs.dead_letters
    WHERE dead_lettered_at > now() - interval '7 days'
) f
CROSS JOIN LATERAL jsonb_array_elements(f.errors) AS e
WHERE (e ->> 'at')::timestamptz > now() - interval '7 days'
ORDER BY failed_at DESC;
