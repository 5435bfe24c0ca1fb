-- ack, leaner: which queues keep an archive is read once per call (an array of the few
-- archiving queues), not looked up in jobs.queues once per acked message. Same rows, same
-- result; at a thousand ids a call this was about a sixth of the ack's time.
CREATE OR REPLACE FUNCTION jobs.ack(p_ids bigint[], p_token uuid, p_now timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = '' SET enable_seqscan = off SET enable_bitmapscan = off AS $$
    WITH done AS (
        DELETE FROM jobs.messages m
        WHERE m.id = ANY (p_ids) AND m.claim_token = p_token
        RETURNING m.*
    ), kept AS (
        INSERT INTO jobs.archive (id, queue, payload, enqueued_at, finalized_at, attempt, errors,
                                  idempotency_key, redrive_count)
        SELECT d.id, d.queue, d.payload, d.enqueued_at, p_now, d.attempt, d.errors,
               d.idempotency_key, d.redrive_count
        FROM done d
        WHERE d.queue = ANY (ARRAY(SELECT q.name FROM jobs.queues q WHERE q.archive))
    )
    SELECT id FROM done;
$$;
