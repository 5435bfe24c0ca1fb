-- Events for Prefect that wait until it answers. A dead letter's row is written in the
-- same transaction as the dead letter, so neither a Prefect outage nor a killed process
-- loses the alert; whoever reaches Prefect next publishes the rows and deletes them.
CREATE TABLE jobs.prefect_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL DEFAULT gen_random_uuid(),
    event text NOT NULL,
    resource jsonb NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT prefect_outbox_event_check CHECK (event <> '')
);

-- Every dead letter, whoever writes it (a settle, a claim whose last lease expired),
-- gets its taskflow.email.dead-lettered event in the same transaction.
CREATE FUNCTION jobs.outbox_dead_letters() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs.prefect_outbox (event, resource, payload, occurred_at)
    SELECT 'taskflow.email.dead-lettered',
           jsonb_build_object(
               'prefect.resource.id', 'taskflow.email.' || n.id,
               'prefect.resource.name', 'email job ' || n.id,
               'taskflow.message-type', coalesce(n.payload ->> 'type', 'unknown')),
           jsonb_build_object(
               'message_id', n.id, 'type', n.payload ->> 'type', 'reason', n.reason,
               'attempt', n.attempt),
           n.dead_lettered_at
    FROM new_rows n
    WHERE n.queue = 'email_notifications';
    RETURN NULL;
END;
$$;

CREATE TRIGGER dead_letters_outbox
AFTER INSERT ON jobs.dead_letters
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION jobs.outbox_dead_letters();
