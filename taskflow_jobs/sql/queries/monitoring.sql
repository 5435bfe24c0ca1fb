-- recent_failures --
-- The latest recorded failures (the original design's job_failures table).
SELECT failed_at, message_id, queue, message_type, attempt, error, outcome
FROM jobs.recent_failures
LIMIT %(limit)s;
