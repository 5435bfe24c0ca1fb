-- Flow control: priority lanes, pause and resume, and one rate limit per provider shared
-- by every consumer (with the provider's own backoff after a 429).

-- --- priority lanes -------------------------------------------------------------------
-- 0 = transactional (a signup, an assignment: someone is waiting), 1 = bulk (announcements,
-- digests). The claim takes the lowest lane first, oldest first within a lane.
ALTER TABLE jobs.messages
    ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD CONSTRAINT messages_priority_lane CHECK (priority IN (0, 1));

DROP INDEX jobs.messages_claim_idx;
-- jobs.claim: WHERE queue = $1 AND visible_at <= now ORDER BY priority, visible_at, id
CREATE INDEX messages_claim_idx ON jobs.messages (queue, priority, visible_at, id);

-- --- pause and resume -----------------------------------------------------------------
-- A row pauses one message type of a queue, or the whole queue ('*'). Paused messages stay
-- in jobs.messages in their order; the claim passes over them. `source` says who set it:
-- the CLI, or the Prefect variable an operator flips in the UI (mirrored here so the pause
-- holds while Prefect is unreachable).
CREATE TABLE jobs.pauses (
    queue text NOT NULL REFERENCES jobs.queues (name),
    message_type text NOT NULL DEFAULT '*' CHECK (message_type <> ''),
    paused_at timestamptz NOT NULL DEFAULT now(),
    source text NOT NULL CONSTRAINT pauses_source CHECK (source IN ('cli', 'prefect')),
    PRIMARY KEY (queue, message_type)
);

-- pause: idempotent; a second pause keeps the first one's start (its duration is honest).
CREATE FUNCTION jobs.pause(p_queue text, p_type text, p_source text, p_now timestamptz DEFAULT now())
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    INSERT INTO jobs.pauses (queue, message_type, paused_at, source)
    VALUES (p_queue, coalesce(p_type, '*'), p_now, p_source)
    ON CONFLICT (queue, message_type) DO UPDATE SET source = excluded.source;
    SELECT paused_at FROM jobs.pauses WHERE queue = p_queue AND message_type = coalesce(p_type, '*');
$$;

-- resume: lift a pause and wake the consumers (their messages are claimable at once).
CREATE FUNCTION jobs.resume(p_queue text, p_type text)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_type text;
BEGIN
    FOR v_type IN
        DELETE FROM jobs.pauses p
        WHERE p.queue = p_queue AND (p_type IS NULL OR p.message_type = p_type)
        RETURNING p.message_type
    LOOP
        RETURN NEXT v_type;
    END LOOP;
    IF FOUND THEN
        PERFORM pg_notify('jobs_new_message', p_queue);
    END IF;
END $$;

-- set_pauses: make a queue's pauses exactly `p_types`, whoever set them (the Prefect
-- variable is the same switch as the CLI). Pauses that stay keep their start time.
CREATE FUNCTION jobs.set_pauses(p_queue text, p_types text[], p_source text, p_now timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    DELETE FROM jobs.pauses p
    WHERE p.queue = p_queue AND NOT (p.message_type = ANY (p_types));
    IF FOUND THEN
        PERFORM pg_notify('jobs_new_message', p_queue);
    END IF;
    INSERT INTO jobs.pauses (queue, message_type, paused_at, source)
    SELECT p_queue, t, p_now, p_source FROM unnest(p_types) AS t
    ON CONFLICT (queue, message_type) DO NOTHING;
END $$;

-- Which version (its `updated` time) of the Prefect pause variable jobs.pauses reflects:
-- a version is applied once, so a CLI resume is not undone by an older variable.
CREATE TABLE jobs.pause_mirror (
    name text PRIMARY KEY,
    variable_updated timestamptz NOT NULL
);

-- --- shared provider rate limit ------------------------------------------------------
-- One token bucket per provider: every consumer on every machine takes its tokens here,
-- so together they send at most `rate` per second (plus `burst`). `blocked_until` is the
-- provider's own backoff (a 429's Retry-After): nobody sends before it.
CREATE TABLE jobs.rate_limits (
    provider text PRIMARY KEY,
    rate double precision CHECK (rate > 0),
    burst double precision CHECK (burst >= 1),
    tokens double precision NOT NULL DEFAULT 0,
    refilled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    blocked_until timestamptz
);

-- take_tokens: reserve p_want tokens (rate NULL = unlimited: only the backoff applies).
-- The bucket may go into debt by up to one second of the rate: a reservation is granted
-- at once with the time it becomes usable (`wait_seconds`), so each consumer makes one
-- round trip per chunk instead of polling an empty bucket. Past that debt nothing is
-- granted and `wait_seconds` says when to ask again.
CREATE FUNCTION jobs.take_tokens(
    p_provider text,
    p_want integer,
    p_rate double precision,
    p_burst double precision,
    p_now timestamptz DEFAULT clock_timestamp()
) RETURNS TABLE (granted integer, wait_seconds double precision)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    r jobs.rate_limits;
    v_tokens double precision;
BEGIN
    INSERT INTO jobs.rate_limits (provider, rate, burst, tokens, refilled_at)
    VALUES (p_provider, p_rate, p_burst, 0, p_now)
    ON CONFLICT (provider) DO NOTHING;
    SELECT * INTO r FROM jobs.rate_limits l WHERE l.provider = p_provider FOR UPDATE;
    IF r.blocked_until > p_now THEN
        granted := 0;
        wait_seconds := extract(epoch FROM r.blocked_until - p_now);
        RETURN NEXT;
        RETURN;
    END IF;
    IF p_rate IS NULL THEN
        granted := p_want;
        wait_seconds := 0;
        RETURN NEXT;
        RETURN;
    END IF;
    v_tokens := least(p_burst,
                      r.tokens + greatest(0, extract(epoch FROM p_now - r.refilled_at)) * p_rate);
    IF v_tokens - p_want < -p_rate THEN
        granted := 0;
        wait_seconds := (p_want - p_rate - v_tokens) / p_rate;
    ELSE
        v_tokens := v_tokens - p_want;
        granted := p_want;
        wait_seconds := greatest(0, -v_tokens / p_rate);
    END IF;
    UPDATE jobs.rate_limits l
    SET rate = p_rate, burst = p_burst, tokens = v_tokens, refilled_at = greatest(p_now, r.refilled_at)
    WHERE l.provider = p_provider;
    RETURN NEXT;
END $$;

-- provider_backoff: the provider said "not before p_until"; every consumer waits for it.
CREATE FUNCTION jobs.provider_backoff(p_provider text, p_until timestamptz)
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    INSERT INTO jobs.rate_limits AS l (provider, blocked_until) VALUES (p_provider, p_until)
    ON CONFLICT (provider) DO UPDATE
    SET blocked_until = greatest(l.blocked_until, excluded.blocked_until)
    RETURNING blocked_until;
$$;

-- --- send and claim, with lanes and pauses ---------------------------------------------
-- a dead letter keeps its lane, and a redrive puts it back there
ALTER TABLE jobs.dead_letters ADD COLUMN priority smallint NOT NULL DEFAULT 0;

DROP FUNCTION jobs.send(text, jsonb, interval, text, integer);
CREATE FUNCTION jobs.send(
    p_queue text,
    p_payload jsonb,
    p_delay interval DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL,
    p_max_attempts integer DEFAULT NULL,
    p_priority smallint DEFAULT 0
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_id bigint;
    v_max integer;
BEGIN
    SELECT q.max_attempts INTO v_max FROM jobs.queues q WHERE q.name = p_queue;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'jobs.send: unknown queue "%"', p_queue USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_payload IS NULL OR jsonb_typeof(p_payload) <> 'object' THEN
        RAISE EXCEPTION 'jobs.send: payload must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_id := nextval(pg_get_serial_sequence('jobs.messages', 'id'));
    IF p_idempotency_key IS NOT NULL THEN
        INSERT INTO jobs.idempotency_keys (queue, key, message_id)
        VALUES (p_queue, p_idempotency_key, v_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.message_id INTO v_id FROM jobs.idempotency_keys k
            WHERE k.queue = p_queue AND k.key = p_idempotency_key;
            RETURN v_id;
        END IF;
    END IF;
    INSERT INTO jobs.messages (id, queue, payload, visible_at, max_attempts, idempotency_key, priority)
    VALUES (v_id, p_queue, p_payload, now() + coalesce(p_delay, interval '0'),
            coalesce(p_max_attempts, v_max), p_idempotency_key, coalesce(p_priority, 0));
    RETURN v_id;
END $$;

-- send_batch: the payloads arrive as ONE jsonb array (one value to parse, not a thousand),
-- ids come back in input order.
DROP FUNCTION jobs.send_batch(text, jsonb[], interval);
CREATE FUNCTION jobs.send_batch(
    p_queue text,
    p_payloads jsonb,
    p_delay interval DEFAULT NULL,
    p_priority smallint DEFAULT 0
) RETURNS SETOF bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
    v_max integer;
BEGIN
    SELECT q.max_attempts INTO v_max FROM jobs.queues q WHERE q.name = p_queue;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'jobs.send_batch: unknown queue "%"', p_queue USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    INSERT INTO jobs.messages (queue, payload, visible_at, max_attempts, priority)
    SELECT p_queue, p.payload, now() + coalesce(p_delay, interval '0'), v_max, coalesce(p_priority, 0)
    FROM jsonb_array_elements(p_payloads) WITH ORDINALITY AS p (payload, ord)
    ORDER BY p.ord
    RETURNING id;
END $$;

-- claim: as before, lowest lane first, and never a paused type (a paused queue: nothing).
-- It returns each message's lane too, so a batch sends its transactional messages first.
DROP FUNCTION jobs.claim(text, integer, interval, uuid, timestamptz);
CREATE FUNCTION jobs.claim(
    p_queue text,
    p_batch_size integer,
    p_visibility_timeout interval,
    p_token uuid,
    p_now timestamptz DEFAULT now()
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
        WHERE m.queue = p_queue AND m.visible_at <= p_now
          AND (m.leased_until IS NULL OR m.leased_until <= p_now)
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

CREATE OR REPLACE FUNCTION jobs.dead_letter(
    p_ids bigint[],
    p_reasons text[],
    p_token uuid,
    p_now timestamptz DEFAULT now()
) RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    WITH failed AS (
        DELETE FROM jobs.messages m
        USING unnest(p_ids, p_reasons) AS r (id, reason)
        WHERE m.id = ANY (p_ids) AND m.id = r.id AND m.claim_token = p_token
        RETURNING m.*, r.reason
    )
    INSERT INTO jobs.dead_letters (id, queue, payload, enqueued_at, dead_lettered_at, attempt,
                                   max_attempts, errors, reason, idempotency_key, redrive_count,
                                   priority)
    SELECT id, queue, payload, enqueued_at, p_now, attempt, max_attempts,
           errors || jsonb_build_object('at', p_now, 'attempt', attempt, 'error', reason),
           reason, idempotency_key, redrive_count, priority
    FROM failed
    RETURNING id;
$$;

CREATE OR REPLACE FUNCTION jobs.redrive(
    p_ids bigint[] DEFAULT NULL,
    p_queue text DEFAULT NULL,
    p_type text DEFAULT NULL,
    p_now timestamptz DEFAULT now()
) RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    WITH revived AS (
        DELETE FROM jobs.dead_letters d
        WHERE (p_ids IS NULL OR d.id = ANY (p_ids))
          AND (p_queue IS NULL OR d.queue = p_queue)
          AND (p_type IS NULL OR d.payload ->> 'type' = p_type)
        RETURNING d.*
    )
    INSERT INTO jobs.messages (id, queue, payload, enqueued_at, visible_at, attempt, max_attempts,
                               errors, idempotency_key, redrive_count, priority)
    SELECT id, queue, payload, enqueued_at, p_now, 0, max_attempts, errors, idempotency_key,
           redrive_count + 1, priority
    FROM revived
    RETURNING id;
$$;
