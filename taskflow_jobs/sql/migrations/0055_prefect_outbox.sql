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
