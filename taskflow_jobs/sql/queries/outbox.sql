-- outbox_take --
-- The oldest waiting events, locked until this transaction publishes and deletes them.
SELECT id, event_id, event, resource, payload, occurred_at
FROM jobs.prefect_outbox
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- outbox_delete --
-- Forget events Prefect has accepted.
DELETE FROM jobs.prefect_outbox WHERE id = ANY(%(ids)s::bigint[]);

-- outbox_count --
-- How many events wait for Prefect.
SELECT count(*) AS n FROM jobs.prefect_outbox;
