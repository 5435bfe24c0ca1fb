-- The archive keeps one row per ack call (a batch), not one per message: an ack of a
-- thousand messages inserts one row of arrays (stored uncompressed: compressing a batch's
-- payloads cost more than it saved) instead of a thousand rows and two thousand index
-- entries. bench/queue.py measured the ack path about 1.2x faster with it.
--
-- `jobs.archive` stays, as a view with the same columns as the table it replaces: reports,
-- `status` and an operator's own queries read it unchanged, and an INSERT into it still
-- works (a batch of one). A lookup by message id goes through `jobs.archived(id)`, which
-- finds the batch by its id range (a GiST index) instead of unnesting every batch.
CREATE TABLE jobs.archive_batches (
    batch_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    finalized_at timestamptz NOT NULL,
    ids bigint[] NOT NULL,
    id_range int8range NOT NULL,
    payloads jsonb[] NOT NULL,
    enqueued_at timestamptz[] NOT NULL,
    attempts integer[] NOT NULL,
    errors jsonb[] NOT NULL,
    idempotency_keys text[] NOT NULL,
    redrive_counts integer[] NOT NULL,
    skipped_reasons text[],  -- NULL: nothing in the batch was skipped
    CONSTRAINT archive_batches_not_empty CHECK (cardinality(ids) > 0),
    CONSTRAINT archive_batches_aligned CHECK (
        cardinality(payloads) = cardinality(ids) AND cardinality(enqueued_at) = cardinality(ids)
        AND cardinality(attempts) = cardinality(ids) AND cardinality(errors) = cardinality(ids)
        AND cardinality(idempotency_keys) = cardinality(ids)
        AND cardinality(redrive_counts) = cardinality(ids)
        AND (skipped_reasons IS NULL OR cardinality(skipped_reasons) = cardinality(ids))),
    CONSTRAINT archive_batches_skipped_reason_check CHECK (NOT '' = ANY (skipped_reasons))
);
ALTER TABLE jobs.archive_batches
    ALTER ids SET STORAGE EXTERNAL, ALTER payloads SET STORAGE EXTERNAL,
    ALTER enqueued_at SET STORAGE EXTERNAL, ALTER attempts SET STORAGE EXTERNAL,
    ALTER errors SET STORAGE EXTERNAL, ALTER idempotency_keys SET STORAGE EXTERNAL,
    ALTER redrive_counts SET STORAGE EXTERNAL, ALTER skipped_reasons SET STORAGE EXTERNAL;
CREATE INDEX archive_batches_finalized_at_idx ON jobs.archive_batches (finalized_at);
CREATE INDEX archive_batches_id_range_idx ON jobs.archive_batches USING gist (id_range);

-- The existing archive moves over: one batch per (queue, finalization time), which is
-- one per ack call, as the calls stamped their rows with one time.
ALTER TABLE jobs.archive RENAME TO archive_rows;
INSERT INTO jobs.archive_batches (queue, finalized_at, ids, id_range, payloads, enqueued_at,
                                  attempts, errors, idempotency_keys, redrive_counts,
                                  skipped_reasons)
SELECT queue, finalized_at, array_agg(id ORDER BY id), int8range(min(id), max(id), '[]'),
       array_agg(payload ORDER BY id), array_agg(enqueued_at ORDER BY id),
       array_agg(attempt ORDER BY id), array_agg(errors ORDER BY id),
       array_agg(idempotency_key ORDER BY id), array_agg(redrive_count ORDER BY id),
       CASE WHEN bool_or(skipped_reason IS NOT NULL)
            THEN array_agg(skipped_reason ORDER BY id) END
FROM jobs.archive_rows
GROUP BY queue, finalized_at
ORDER BY finalized_at;

CREATE VIEW jobs.archive AS
SELECT m.id, b.queue, m.payload, m.enqueued_at, b.finalized_at, m.attempt, m.errors,
       m.idempotency_key, m.redrive_count, m.skipped_reason
FROM jobs.archive_batches b
CROSS JOIN LATERAL unnest(b.ids, b.payloads, b.enqueued_at, b.attempts, b.errors,
                          b.idempotency_keys, b.redrive_counts, b.skipped_reasons)
     AS m (id, payload, enqueued_at, attempt, errors, idempotency_key, redrive_count,
           skipped_reason);

-- An archived message by id: its batch through the id-range index.
CREATE FUNCTION jobs.archived(p_id bigint)
RETURNS SETOF jobs.archive
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = '' AS $$
    SELECT m.id, b.queue, m.payload, m.enqueued_at, b.finalized_at, m.attempt, m.errors,
           m.idempotency_key, m.redrive_count, m.skipped_reason
    FROM jobs.archive_batches b
    CROSS JOIN LATERAL unnest(b.ids, b.payloads, b.enqueued_at, b.attempts, b.errors,
                              b.idempotency_keys, b.redrive_counts, b.skipped_reasons)
         AS m (id, payload, enqueued_at, attempt, errors, idempotency_key, redrive_count,
               skipped_reason)
    -- a batch's range can be wide (a retried message joins newer ones): the id test on
    -- the array spares unnesting the payloads of the batches that only overlap
    WHERE b.id_range @> p_id AND p_id = ANY (b.ids) AND m.id = p_id;
$$;

-- The view stays writable, for an operator's or a test's own statements: an inserted row
-- becomes a batch of one; a deleted one leaves its batch (the batch goes with its last
-- message); an updated one leaves its batch and comes back as a batch of one (the
-- finalization time belongs to a batch). One row at a time: for ad-hoc use, not a bulk path.
CREATE FUNCTION jobs.archive_write() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' AS $$
DECLARE
    i integer;
    b jobs.archive_batches%ROWTYPE;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT * INTO b FROM jobs.archive_batches
        WHERE id_range @> OLD.id AND OLD.id = ANY (ids)
        FOR UPDATE;
        i := array_position(b.ids, OLD.id);
        IF cardinality(b.ids) = 1 THEN
            DELETE FROM jobs.archive_batches WHERE batch_id = b.batch_id;
        ELSE
            UPDATE jobs.archive_batches
            SET ids = ids[:i - 1] || ids[i + 1:], payloads = payloads[:i - 1] || payloads[i + 1:],
                enqueued_at = enqueued_at[:i - 1] || enqueued_at[i + 1:],
                attempts = attempts[:i - 1] || attempts[i + 1:],
                errors = errors[:i - 1] || errors[i + 1:],
                idempotency_keys = idempotency_keys[:i - 1] || idempotency_keys[i + 1:],
                redrive_counts = redrive_counts[:i - 1] || redrive_counts[i + 1:],
                skipped_reasons = skipped_reasons[:i - 1] || skipped_reasons[i + 1:]
            WHERE batch_id = b.batch_id;
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO jobs.archive_batches (queue, finalized_at, ids, id_range, payloads,
                                          enqueued_at, attempts, errors, idempotency_keys,
                                          redrive_counts, skipped_reasons)
        VALUES (NEW.queue, coalesce(NEW.finalized_at, now()), ARRAY[NEW.id],
                int8range(NEW.id, NEW.id, '[]'), ARRAY[NEW.payload],
                ARRAY[coalesce(NEW.enqueued_at, now())], ARRAY[coalesce(NEW.attempt, 0)],
                ARRAY[coalesce(NEW.errors, '[]'::jsonb)], ARRAY[NEW.idempotency_key],
                ARRAY[coalesce(NEW.redrive_count, 0)],
                CASE WHEN NEW.skipped_reason IS NOT NULL THEN ARRAY[NEW.skipped_reason] END);
        RETURN NEW;
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER archive_write INSTEAD OF INSERT OR UPDATE OR DELETE ON jobs.archive
FOR EACH ROW EXECUTE FUNCTION jobs.archive_write();

-- The view that read the old table reads the new one (same text, same columns).
CREATE OR REPLACE VIEW jobs.recent_failures AS
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

DROP TABLE jobs.archive_rows;

-- ack and skip write one batch per queue (same rows, same result as before); a queue
-- with archive = false keeps nothing.
CREATE OR REPLACE FUNCTION jobs.ack(p_ids bigint[], p_token uuid, p_now timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = '' SET enable_seqscan = off SET enable_bitmapscan = off AS $$
    WITH done AS (
        DELETE FROM jobs.messages m
        WHERE m.id = ANY (p_ids) AND m.claim_token = p_token
        RETURNING m.*
    ), kept AS (
        INSERT INTO jobs.archive_batches (queue, finalized_at, ids, id_range, payloads,
                                          enqueued_at, attempts, errors, idempotency_keys,
                                          redrive_counts)
        SELECT d.queue, p_now, array_agg(d.id), int8range(min(d.id), max(d.id), '[]'),
               array_agg(d.payload), array_agg(d.enqueued_at), array_agg(d.attempt),
               array_agg(d.errors), array_agg(d.idempotency_key), array_agg(d.redrive_count)
        FROM done d
        WHERE d.queue = ANY (ARRAY(SELECT q.name FROM jobs.queues q WHERE q.archive))
        GROUP BY d.queue
    )
    SELECT id FROM done;
$$;

CREATE OR REPLACE FUNCTION jobs.skip(p_ids bigint[], p_reasons text[], p_token uuid,
                                     p_now timestamptz DEFAULT now())
RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = '' AS $$
    WITH done AS (
        DELETE FROM jobs.messages m
        USING unnest(p_ids, p_reasons) AS r (id, reason)
        WHERE m.id = ANY (p_ids) AND m.id = r.id AND m.claim_token = p_token
        RETURNING m.*, r.reason
    ), kept AS (
        INSERT INTO jobs.archive_batches (queue, finalized_at, ids, id_range, payloads,
                                          enqueued_at, attempts, errors, idempotency_keys,
                                          redrive_counts, skipped_reasons)
        SELECT d.queue, p_now, array_agg(d.id), int8range(min(d.id), max(d.id), '[]'),
               array_agg(d.payload), array_agg(d.enqueued_at), array_agg(d.attempt),
               array_agg(d.errors), array_agg(d.idempotency_key), array_agg(d.redrive_count),
               array_agg(d.reason)
        FROM done d
        WHERE d.queue = ANY (ARRAY(SELECT q.name FROM jobs.queues q WHERE q.archive))
        GROUP BY d.queue
    )
    SELECT id FROM done;
$$;

-- Private like the rest of the schema (see 0080).
REVOKE ALL ON jobs.archive_batches, jobs.archive FROM PUBLIC;
REVOKE ALL ON FUNCTION jobs.archived, jobs.archive_write FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON jobs.archive_batches, jobs.archive FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON FUNCTION jobs.archived, jobs.archive_write FROM %I',
                       api_role);
    END LOOP;
END $$;
