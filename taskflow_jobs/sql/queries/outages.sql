-- outage_open --
-- A consumer's outage, first checkpoint.
INSERT INTO jobs.prefect_outages (consumer, started_at, reason, summary, rows)
VALUES (%(consumer)s, %(started)s, %(reason)s, %(summary)s, %(rows)s)
RETURNING id;

-- outage_checkpoint --
-- The counts so far of an open outage; seen_at says its consumer is alive.
UPDATE jobs.prefect_outages
SET summary = %(summary)s, rows = %(rows)s, seen_at = now()
WHERE id = %(id)s;

-- outage_forget --
-- The outage has been reported to Prefect.
DELETE FROM jobs.prefect_outages WHERE id = ANY(%(ids)s::bigint[]);

-- outage_take_orphans --
-- Outages whose consumer stopped checkpointing (it died before Prefect came back),
-- locked until this transaction has reported and deleted them.
SELECT id, consumer, started_at, seen_at, reason, summary, rows
FROM jobs.prefect_outages
WHERE seen_at < now() - make_interval(secs => %(stale)s)
ORDER BY id
LIMIT 20
FOR UPDATE SKIP LOCKED;
