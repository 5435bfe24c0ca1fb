-- The express lane: a consumer claims transactional messages in a loop of their own, so a
-- signup never waits for a bulk batch in flight. jobs.claim takes the last lane to claim
-- (0 = transactional only, 1 = every lane) and, for the batches beside an express lane,
-- how long a transactional message is left to it (p_leave_fresh; NULL = not at all):
-- after that a batch takes it too, at the batches' throughput. Both are conditions of the
-- same ordered scan of messages_claim_idx (queue, priority, visible_at, id); the fresh
-- messages it passes over are the last of lane 0 in that order.
DROP FUNCTION jobs.claim(text, integer, interval, uuid, timestamptz);
CREATE FUNCTION jobs.claim(
    p_queue text,
    p_batch_size integer,
    p_visibility_timeout interval,
    p_token uuid,
    p_now timestamptz DEFAULT now(),
    p_last_lane smallint DEFAULT 1,
    p_leave_fresh interval DEFAULT NULL
) RETURNS TABLE (
    id bigint,
    queue text,
    payload jsonb,
    attempt integer,
    max_attempts integer,
    errors jsonb,
    enqueued_at timestamptz,
    redrive_count integer,
    priority smallint
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = '' SET enable_seqscan = off SET enable_bitmapscan = off AS $$
DECLARE
    v_ids bigint[];
    v_lost bigint[];
    v_paused text[];
BEGIN
    SELECT coalesce(array_agg(p.message_type), '{}') INTO v_paused
    FROM jobs.pauses p WHERE p.queue = p_queue;
    IF '*' = ANY (v_paused) THEN
        RETURN;
    END IF;

    SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.id) FILTER (WHERE c.lost), '{}')
    INTO v_ids, v_lost
    FROM (
        SELECT m.id, m.claim_token IS NOT NULL AND m.attempt >= m.max_attempts AS lost
        FROM jobs.messages m
        WHERE m.queue = p_queue AND m.priority <= p_last_lane AND m.visible_at <= p_now
          AND (m.leased_until IS NULL OR m.leased_until <= p_now)
          AND (p_leave_fresh IS NULL OR m.priority > 0 OR m.visible_at <= p_now - p_leave_fresh)
          AND (cardinality(v_paused) = 0 OR NOT coalesce(m.payload ->> 'type', '') = ANY (v_paused))
        ORDER BY m.priority, m.visible_at, m.id
        LIMIT p_batch_size
        FOR UPDATE SKIP LOCKED
    ) c;

    IF cardinality(v_lost) > 0 THEN
        WITH lost AS (
            DELETE FROM jobs.messages m WHERE m.id = ANY (v_lost) RETURNING m.*
        )
        INSERT INTO jobs.dead_letters (id, queue, payload, enqueued_at, dead_lettered_at, attempt,
                                       max_attempts, errors, reason, idempotency_key, redrive_count,
                                       priority)
        SELECT l.id, l.queue, l.payload, l.enqueued_at, p_now, l.attempt, l.max_attempts,
               l.errors || jsonb_build_object('at', p_now, 'attempt', l.attempt,
                                              'error', 'visibility timeout expired before ack'),
               'attempts exhausted: the last attempt''s visibility timeout expired before ack',
               l.idempotency_key, l.redrive_count, l.priority
        FROM lost l;
        v_ids := ARRAY(SELECT unnest(v_ids) EXCEPT SELECT unnest(v_lost));
    END IF;

    RETURN QUERY
    UPDATE jobs.messages m
    SET attempt = m.attempt + 1,
        leased_until = p_now + p_visibility_timeout,
        claim_token = p_token,
        errors = CASE WHEN m.claim_token IS NULL THEN m.errors
                      ELSE m.errors || jsonb_build_object('at', p_now, 'attempt', m.attempt,
                                                          'error', 'visibility timeout expired before ack')
                 END
    WHERE m.id = ANY (v_ids)
    RETURNING m.id, m.queue, m.payload, m.attempt, m.max_attempts, m.errors, m.enqueued_at,
              m.redrive_count, m.priority;
END $$;

-- the jobs schema stays private: a new function is executable by PUBLIC until revoked
REVOKE ALL ON FUNCTION jobs.claim(text, integer, interval, uuid, timestamptz, smallint, interval) FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN
        SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION jobs.claim(text, integer, interval, uuid, '
                       'timestamptz, smallint, interval) FROM %I', api_role);
    END LOOP;
END $$;
