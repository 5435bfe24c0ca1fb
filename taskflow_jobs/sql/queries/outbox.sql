-- outbox_add_dead_letters --
-- One taskflow.email.dead-lettered event per dead letter, kept until Prefect has it.
INSERT INTO jobs.prefect_outbox (event, resource, payload, occurred_at)
SELECT 'taskflow.email.dead-lettered',
       jsonb_build_object(
           'prefect.resource.id', 'taskflow.email.' || d.id,
           'prefect.resource.name', 'email job ' || d.id,
           'taskflow.message-type', coalesce(d.payload ->> 'type', 'unknown')),
       jsonb_build_object(
           'message_id', d.id, 'type', d.payload ->> 'type', 'reason', d.reason,
           'attempt', d.attempt),
       d.dead_lettered_at
FROM jobs.dead_letters d
WHERE d.id = ANY(%(ids)s::bigint[]);

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
