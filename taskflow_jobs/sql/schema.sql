CREATE SCHEMA auth;

CREATE SCHEMA jobs;

CREATE SCHEMA public;

COMMENT ON SCHEMA public IS 'standard public schema';

CREATE FUNCTION jobs.ack(p_ids bigint[], p_token uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    AS $$
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

CREATE FUNCTION jobs.archive_write() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE TABLE jobs.archive_batches (
    batch_id bigint NOT NULL,
    queue text NOT NULL,
    finalized_at timestamp with time zone NOT NULL,
    ids bigint[] NOT NULL,
    id_range int8range NOT NULL,
    payloads jsonb[] NOT NULL,
    enqueued_at timestamp with time zone[] NOT NULL,
    attempts integer[] NOT NULL,
    errors jsonb[] NOT NULL,
    idempotency_keys text[] NOT NULL,
    redrive_counts integer[] NOT NULL,
    skipped_reasons text[],
    CONSTRAINT archive_batches_aligned CHECK (((cardinality(payloads) = cardinality(ids)) AND (cardinality(enqueued_at) = cardinality(ids)) AND (cardinality(attempts) = cardinality(ids)) AND (cardinality(errors) = cardinality(ids)) AND (cardinality(idempotency_keys) = cardinality(ids)) AND (cardinality(redrive_counts) = cardinality(ids)) AND ((skipped_reasons IS NULL) OR (cardinality(skipped_reasons) = cardinality(ids))))),
    CONSTRAINT archive_batches_not_empty CHECK ((cardinality(ids) > 0)),
    CONSTRAINT archive_batches_skipped_reason_check CHECK ((NOT (''::text = ANY (skipped_reasons))))
);
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN ids SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN payloads SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN enqueued_at SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN attempts SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN errors SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN idempotency_keys SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN redrive_counts SET STORAGE EXTERNAL;
ALTER TABLE ONLY jobs.archive_batches ALTER COLUMN skipped_reasons SET STORAGE EXTERNAL;

CREATE VIEW jobs.archive AS
 SELECT m.id,
    b.queue,
    m.payload,
    m.enqueued_at,
    b.finalized_at,
    m.attempt,
    m.errors,
    m.idempotency_key,
    m.redrive_count,
    m.skipped_reason
   FROM (jobs.archive_batches b
     CROSS JOIN LATERAL UNNEST(b.ids, b.payloads, b.enqueued_at, b.attempts, b.errors, b.idempotency_keys, b.redrive_counts, b.skipped_reasons) m(id, payload, enqueued_at, attempt, errors, idempotency_key, redrive_count, skipped_reason));

CREATE FUNCTION jobs.archived(p_id bigint) RETURNS SETOF jobs.archive
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.claim(p_queue text, p_batch_size integer, p_visibility_timeout interval, p_token uuid, p_now timestamp with time zone DEFAULT now(), p_last_lane smallint DEFAULT 1, p_leave_fresh interval DEFAULT NULL::interval) RETURNS TABLE(id bigint, queue text, payload jsonb, attempt integer, max_attempts integer, errors jsonb, enqueued_at timestamp with time zone, redrive_count integer, priority smallint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    AS $$
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

CREATE FUNCTION jobs.current_actor(p_fallback uuid) RETURNS uuid
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub',
        p_fallback::text
    )::uuid;
$$;

CREATE FUNCTION jobs.dead_letter(p_ids bigint[], p_reasons text[], p_token uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.enqueue_task_assigned(p_task_id bigint, p_task_title text, p_assignee_id uuid, p_assigner_id uuid, p_assigned_at timestamp with time zone) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    SELECT jobs.send(
        'email_notifications',
        jsonb_build_object('type', 'task_assigned', 'task_id', p_task_id, 'task_title', p_task_title,
                           'assignee_id', p_assignee_id, 'assigner_id', p_assigner_id),
        p_idempotency_key => format('task_assigned:%s:%s:%s', p_task_id, p_assignee_id,
                                    (extract(epoch FROM p_assigned_at) * 1000000)::bigint)
    );
$$;

CREATE FUNCTION jobs.enqueue_welcome_email(p_user_id uuid, p_email text, p_name text) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    SELECT jobs.send(
        'email_notifications',
        jsonb_build_object('type', 'welcome_email', 'user_id', p_user_id,
                           'email', p_email, 'name', p_name),
        p_idempotency_key => 'welcome_email:' || p_user_id
    );
$$;

CREATE FUNCTION jobs.metrics(p_queue text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT now()) RETURNS TABLE(queue text, depth bigint, visible bigint, in_flight bigint, delayed bigint, oldest_age_seconds double precision, oldest_visible_age_seconds double precision, dead_letters bigint, measured_at timestamp with time zone)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
    SELECT q.name,
           coalesce(m.depth, 0),
           coalesce(m.visible, 0),
           coalesce(m.in_flight, 0),
           coalesce(m.delayed, 0),
           m.oldest_age,
           m.oldest_visible_age,
           coalesce(d.dead, 0),
           p_now
    FROM jobs.queues q
    LEFT JOIN LATERAL (
        SELECT count(*) AS depth,
               count(*) FILTER (WHERE greatest(visible_at, leased_until) <= p_now) AS visible,
               count(*) FILTER (WHERE leased_until > p_now) AS in_flight,
               count(*) FILTER (WHERE visible_at > p_now AND leased_until IS NULL) AS delayed,
               extract(epoch FROM p_now - min(enqueued_at))::double precision AS oldest_age,
               extract(epoch FROM p_now - min(enqueued_at)
                                 FILTER (WHERE greatest(visible_at, leased_until) <= p_now))::double precision
                   AS oldest_visible_age
        FROM jobs.messages WHERE messages.queue = q.name
    ) m ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS dead FROM jobs.dead_letters WHERE dead_letters.queue = q.name
    ) d ON true
    WHERE p_queue IS NULL OR q.name = p_queue
    ORDER BY q.name;
$$;

CREATE FUNCTION jobs.notify_new_messages() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_queue text;
BEGIN
    FOR v_queue IN SELECT DISTINCT queue FROM new_rows WHERE visible_at <= now() LOOP
        PERFORM pg_notify('jobs_new_message', v_queue);
    END LOOP;
    RETURN NULL;
END $$;

CREATE FUNCTION jobs.on_task_assigned() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
BEGIN
    PERFORM jobs.enqueue_task_assigned(
        NEW.id, NEW.title, NEW.assignee_id, jobs.current_actor(NEW.created_by),
        coalesce((to_jsonb(NEW) ->> 'assigned_at')::timestamptz, now()));
    RETURN NEW;
END $$;

CREATE FUNCTION jobs.on_user_created() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
BEGIN
    PERFORM jobs.enqueue_welcome_email(NEW.id, NEW.email, NEW.raw_user_meta_data ->> 'full_name');
    RETURN NEW;
END $$;

CREATE FUNCTION jobs.outbox_dead_letters() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION jobs.pause(p_queue text, p_type text, p_source text, p_now timestamp with time zone DEFAULT now()) RETURNS timestamp with time zone
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    INSERT INTO jobs.pauses (queue, message_type, paused_at, source)
    VALUES (p_queue, coalesce(p_type, '*'), p_now, p_source)
    ON CONFLICT (queue, message_type) DO UPDATE SET source = excluded.source;
    SELECT paused_at FROM jobs.pauses WHERE queue = p_queue AND message_type = coalesce(p_type, '*');
$$;

CREATE FUNCTION jobs.provider_backoff(p_provider text, p_until timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    INSERT INTO jobs.rate_limits AS l (provider, blocked_until) VALUES (p_provider, p_until)
    ON CONFLICT (provider) DO UPDATE
    SET blocked_until = greatest(l.blocked_until, excluded.blocked_until)
    RETURNING blocked_until;
$$;

CREATE FUNCTION jobs.redrive(p_ids bigint[] DEFAULT NULL::bigint[], p_queue text DEFAULT NULL::text, p_type text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.release(p_ids bigint[], p_token uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    UPDATE jobs.messages m
    SET claim_token = NULL, leased_until = NULL,
        attempt = greatest(m.attempt - 1, 0)
    WHERE m.id = ANY (p_ids) AND m.claim_token = p_token
    RETURNING m.id;
$$;

CREATE FUNCTION jobs.resume(p_queue text, p_type text) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.retry_later(p_ids bigint[], p_errors text[], p_delays interval[], p_token uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
    UPDATE jobs.messages m
    SET visible_at = p_now + r.delay,
        claim_token = NULL,
        leased_until = NULL,
        errors = m.errors || jsonb_build_object('at', p_now, 'attempt', m.attempt, 'error', r.error)
    FROM unnest(p_ids, p_errors, p_delays) AS r (id, error, delay)
    WHERE m.id = ANY (p_ids) AND m.id = r.id AND m.claim_token = p_token
    RETURNING m.id;
$$;

CREATE FUNCTION jobs.send(p_queue text, p_payload jsonb, p_delay interval DEFAULT NULL::interval, p_idempotency_key text DEFAULT NULL::text, p_max_attempts integer DEFAULT NULL::integer, p_priority smallint DEFAULT 0) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.send_batch(p_queue text, p_payloads jsonb, p_delay interval DEFAULT NULL::interval, p_priority smallint DEFAULT 0) RETURNS SETOF bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.set_pauses(p_queue text, p_types text[], p_source text, p_now timestamp with time zone DEFAULT now()) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.skip(p_ids bigint[], p_reasons text[], p_token uuid, p_now timestamp with time zone DEFAULT now()) RETURNS SETOF bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION jobs.take_tokens(p_provider text, p_want integer, p_rate double precision, p_burst double precision, p_now timestamp with time zone DEFAULT clock_timestamp()) RETURNS TABLE(granted integer, wait_seconds double precision)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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

CREATE FUNCTION public.create_profile_for_new_user() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
BEGIN
    INSERT INTO public.profiles (id, email, full_name)
    VALUES (NEW.id, NEW.email, NEW.raw_user_meta_data ->> 'full_name')
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
END $$;

CREATE FUNCTION public.tasks_maintain_timestamps() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.status = 'completed' THEN
        IF NEW.completed_at IS NULL THEN
            NEW.completed_at := now();
        END IF;
    ELSE
        NEW.completed_at := NULL;
    END IF;
    IF NEW.assignee_id IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.assignee_id IS DISTINCT FROM OLD.assignee_id) THEN
        NEW.assigned_at := coalesce(NEW.assigned_at, now());
        IF TG_OP = 'UPDATE' AND NEW.assigned_at IS NOT DISTINCT FROM OLD.assigned_at THEN
            NEW.assigned_at := now();
        END IF;
    ELSIF NEW.assignee_id IS NULL THEN
        NEW.assigned_at := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TABLE auth.users (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    email text,
    raw_user_meta_data jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE jobs.archive_batches ALTER COLUMN batch_id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME jobs.archive_batches_batch_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE jobs.dead_letters (
    id bigint NOT NULL,
    queue text NOT NULL,
    payload jsonb NOT NULL,
    enqueued_at timestamp with time zone NOT NULL,
    dead_lettered_at timestamp with time zone DEFAULT now() NOT NULL,
    attempt integer NOT NULL,
    max_attempts integer NOT NULL,
    errors jsonb NOT NULL,
    reason text NOT NULL,
    idempotency_key text,
    redrive_count integer NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    CONSTRAINT dead_letters_reason_check CHECK ((reason <> ''::text))
);

CREATE TABLE jobs.idempotency_keys (
    queue text NOT NULL,
    key text NOT NULL,
    message_id bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE jobs.messages (
    id bigint NOT NULL,
    queue text NOT NULL,
    payload jsonb NOT NULL,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL,
    visible_at timestamp with time zone DEFAULT now() NOT NULL,
    leased_until timestamp with time zone,
    attempt integer DEFAULT 0 NOT NULL,
    max_attempts integer NOT NULL,
    errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    claim_token uuid,
    idempotency_key text,
    redrive_count integer DEFAULT 0 NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    CONSTRAINT messages_attempt_check CHECK ((attempt >= 0)),
    CONSTRAINT messages_check CHECK (((claim_token IS NULL) = (leased_until IS NULL))),
    CONSTRAINT messages_errors_check CHECK ((jsonb_typeof(errors) = 'array'::text)),
    CONSTRAINT messages_max_attempts_check CHECK ((max_attempts > 0)),
    CONSTRAINT messages_priority_lane CHECK ((priority = ANY (ARRAY[0, 1])))
)
WITH (fillfactor='50');

ALTER TABLE jobs.messages ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME jobs.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE jobs.pause_mirror (
    name text NOT NULL,
    variable_updated timestamp with time zone NOT NULL
);

CREATE TABLE jobs.pauses (
    queue text NOT NULL,
    message_type text DEFAULT '*'::text NOT NULL,
    paused_at timestamp with time zone DEFAULT now() NOT NULL,
    source text NOT NULL,
    CONSTRAINT pauses_message_type_check CHECK ((message_type <> ''::text)),
    CONSTRAINT pauses_source CHECK ((source = ANY (ARRAY['cli'::text, 'prefect'::text])))
);

CREATE TABLE jobs.prefect_outages (
    id bigint NOT NULL,
    consumer text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    seen_at timestamp with time zone DEFAULT now() NOT NULL,
    reason text NOT NULL,
    summary jsonb DEFAULT '{}'::jsonb NOT NULL,
    rows jsonb DEFAULT '[]'::jsonb NOT NULL
);

CREATE SEQUENCE jobs.prefect_outages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE jobs.prefect_outages_id_seq OWNED BY jobs.prefect_outages.id;

CREATE TABLE jobs.prefect_outbox (
    id bigint NOT NULL,
    event_id uuid DEFAULT gen_random_uuid() NOT NULL,
    event text NOT NULL,
    resource jsonb NOT NULL,
    payload jsonb NOT NULL,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT prefect_outbox_event_check CHECK ((event <> ''::text))
);

CREATE SEQUENCE jobs.prefect_outbox_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE jobs.prefect_outbox_id_seq OWNED BY jobs.prefect_outbox.id;

CREATE VIEW jobs.queue_metrics AS
 SELECT queue,
    depth,
    visible,
    in_flight,
    delayed,
    oldest_age_seconds,
    oldest_visible_age_seconds,
    dead_letters,
    measured_at
   FROM jobs.metrics() metrics(queue, depth, visible, in_flight, delayed, oldest_age_seconds, oldest_visible_age_seconds, dead_letters, measured_at);

CREATE TABLE jobs.queues (
    name text NOT NULL,
    max_attempts integer DEFAULT 5 NOT NULL,
    archive boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT queues_max_attempts_check CHECK ((max_attempts > 0)),
    CONSTRAINT queues_name_check CHECK ((name ~ '^[a-z][a-z0-9_]{0,62}$'::text))
);

CREATE TABLE jobs.rate_limits (
    provider text NOT NULL,
    rate double precision,
    burst double precision,
    tokens double precision DEFAULT 0 NOT NULL,
    refilled_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    blocked_until timestamp with time zone,
    CONSTRAINT rate_limits_burst_check CHECK ((burst >= (1)::double precision)),
    CONSTRAINT rate_limits_rate_check CHECK ((rate > (0)::double precision))
);

CREATE VIEW jobs.recent_failures AS
 SELECT ((e.value ->> 'at'::text))::timestamp with time zone AS failed_at,
    f.id AS message_id,
    f.queue,
    (f.payload ->> 'type'::text) AS message_type,
    ((e.value ->> 'attempt'::text))::integer AS attempt,
    (e.value ->> 'error'::text) AS error,
    f.outcome
   FROM (( SELECT messages.id,
            messages.queue,
            messages.payload,
            messages.errors,
            'pending'::text AS outcome
           FROM jobs.messages
          WHERE (messages.errors <> '[]'::jsonb)
        UNION ALL
         SELECT archive.id,
            archive.queue,
            archive.payload,
            archive.errors,
            'sent'::text
           FROM jobs.archive
          WHERE ((archive.finalized_at > (now() - '7 days'::interval)) AND (archive.errors <> '[]'::jsonb))
        UNION ALL
         SELECT dead_letters.id,
            dead_letters.queue,
            dead_letters.payload,
            dead_letters.errors,
            'dead'::text
           FROM jobs.dead_letters
          WHERE (dead_letters.dead_lettered_at > (now() - '7 days'::interval))) f
     CROSS JOIN LATERAL jsonb_array_elements(f.errors) e(value))
  WHERE (((e.value ->> 'at'::text))::timestamp with time zone > (now() - '7 days'::interval))
  ORDER BY ((e.value ->> 'at'::text))::timestamp with time zone DESC;

CREATE TABLE jobs.suppressions (
    email text NOT NULL,
    reason text NOT NULL,
    source text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT suppressions_email_check CHECK ((email ~~ '%_@_%'::text)),
    CONSTRAINT suppressions_reason_check CHECK ((reason <> ''::text)),
    CONSTRAINT suppressions_source_check CHECK ((source <> ''::text))
);

CREATE TABLE jobs.webhook_receipts (
    key text NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_receipts_key_check CHECK ((key <> ''::text))
);

CREATE TABLE public.audit_log (
    id bigint NOT NULL,
    actor_id uuid,
    action text NOT NULL,
    entity text NOT NULL,
    entity_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.audit_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.daily_stats (
    date date NOT NULL,
    new_tasks integer NOT NULL,
    completed_tasks integer NOT NULL,
    new_users integer NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT daily_stats_completed_tasks_check CHECK ((completed_tasks >= 0)),
    CONSTRAINT daily_stats_new_tasks_check CHECK ((new_tasks >= 0)),
    CONSTRAINT daily_stats_new_users_check CHECK ((new_users >= 0))
);

CREATE TABLE public.notification_preferences (
    user_id uuid NOT NULL,
    type text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT notification_preferences_type_check CHECK ((type = ANY (ARRAY['task_assigned'::text, 'notification'::text])))
);

CREATE TABLE public.profiles (
    id uuid NOT NULL,
    email text,
    full_name text,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.taskflow_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.tasks (
    id bigint NOT NULL,
    title text NOT NULL,
    status text DEFAULT 'todo'::text NOT NULL,
    assignee_id uuid,
    created_by uuid,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    completed_at timestamp with time zone,
    assigned_at timestamp with time zone,
    CONSTRAINT tasks_check CHECK (((status = 'completed'::text) = (completed_at IS NOT NULL))),
    CONSTRAINT tasks_status_check CHECK ((status = ANY (ARRAY['todo'::text, 'in_progress'::text, 'completed'::text])))
);

ALTER TABLE public.tasks ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME public.tasks_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ONLY jobs.prefect_outages ALTER COLUMN id SET DEFAULT nextval('jobs.prefect_outages_id_seq'::regclass);

ALTER TABLE ONLY jobs.prefect_outbox ALTER COLUMN id SET DEFAULT nextval('jobs.prefect_outbox_id_seq'::regclass);

ALTER TABLE ONLY auth.users
    ADD CONSTRAINT users_pkey PRIMARY KEY (id);

ALTER TABLE ONLY jobs.archive_batches
    ADD CONSTRAINT archive_batches_pkey PRIMARY KEY (batch_id);

ALTER TABLE ONLY jobs.dead_letters
    ADD CONSTRAINT dead_letters_pkey PRIMARY KEY (id);

ALTER TABLE ONLY jobs.idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (queue, key);

ALTER TABLE ONLY jobs.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY jobs.pause_mirror
    ADD CONSTRAINT pause_mirror_pkey PRIMARY KEY (name);

ALTER TABLE ONLY jobs.pauses
    ADD CONSTRAINT pauses_pkey PRIMARY KEY (queue, message_type);

ALTER TABLE ONLY jobs.prefect_outages
    ADD CONSTRAINT prefect_outages_pkey PRIMARY KEY (id);

ALTER TABLE ONLY jobs.prefect_outbox
    ADD CONSTRAINT prefect_outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY jobs.queues
    ADD CONSTRAINT queues_pkey PRIMARY KEY (name);

ALTER TABLE ONLY jobs.rate_limits
    ADD CONSTRAINT rate_limits_pkey PRIMARY KEY (provider);

ALTER TABLE ONLY jobs.webhook_receipts
    ADD CONSTRAINT webhook_receipts_pkey PRIMARY KEY (key);

ALTER TABLE ONLY public.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.daily_stats
    ADD CONSTRAINT daily_stats_pkey PRIMARY KEY (date);

ALTER TABLE ONLY public.notification_preferences
    ADD CONSTRAINT notification_preferences_pkey PRIMARY KEY (user_id, type);

ALTER TABLE ONLY public.profiles
    ADD CONSTRAINT profiles_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.taskflow_migrations
    ADD CONSTRAINT taskflow_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_pkey PRIMARY KEY (id);

CREATE INDEX users_created_at_idx ON auth.users USING btree (created_at);

CREATE INDEX archive_batches_finalized_at_idx ON jobs.archive_batches USING btree (finalized_at);

CREATE INDEX archive_batches_id_range_idx ON jobs.archive_batches USING gist (id_range);

CREATE INDEX dead_letters_dead_lettered_at_idx ON jobs.dead_letters USING btree (dead_lettered_at);

CREATE INDEX dead_letters_queue_at_idx ON jobs.dead_letters USING btree (queue, dead_lettered_at);

CREATE INDEX idempotency_keys_created_at_idx ON jobs.idempotency_keys USING btree (created_at);

CREATE INDEX messages_claim_idx ON jobs.messages USING btree (queue, priority, visible_at, id);

CREATE INDEX prefect_outages_seen_idx ON jobs.prefect_outages USING btree (seen_at);

CREATE UNIQUE INDEX suppressions_email_idx ON jobs.suppressions USING btree (lower(email));

CREATE INDEX webhook_receipts_expires_at_idx ON jobs.webhook_receipts USING btree (expires_at);

CREATE INDEX audit_log_created_at_idx ON public.audit_log USING btree (created_at);

CREATE INDEX profiles_email_lower_idx ON public.profiles USING btree (lower(email));

CREATE INDEX tasks_assignee_id_idx ON public.tasks USING btree (assignee_id);

CREATE INDEX tasks_completed_at_idx ON public.tasks USING btree (completed_at) WHERE (completed_at IS NOT NULL);

CREATE INDEX tasks_created_at_idx ON public.tasks USING btree (created_at);

CREATE TRIGGER create_profile_for_new_user AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION public.create_profile_for_new_user();

CREATE TRIGGER enqueue_welcome_email AFTER INSERT ON auth.users FOR EACH ROW EXECUTE FUNCTION jobs.on_user_created();

CREATE TRIGGER archive_write INSTEAD OF INSERT OR DELETE OR UPDATE ON jobs.archive FOR EACH ROW EXECUTE FUNCTION jobs.archive_write();

CREATE TRIGGER dead_letters_outbox AFTER INSERT ON jobs.dead_letters REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs.outbox_dead_letters();

CREATE TRIGGER messages_notify AFTER INSERT ON jobs.messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jobs.notify_new_messages();

CREATE TRIGGER enqueue_task_assigned_on_insert AFTER INSERT ON public.tasks FOR EACH ROW WHEN ((new.assignee_id IS NOT NULL)) EXECUTE FUNCTION jobs.on_task_assigned();

CREATE TRIGGER enqueue_task_assigned_on_update AFTER UPDATE OF assignee_id ON public.tasks FOR EACH ROW WHEN (((new.assignee_id IS NOT NULL) AND (new.assignee_id IS DISTINCT FROM old.assignee_id))) EXECUTE FUNCTION jobs.on_task_assigned();

CREATE TRIGGER tasks_maintain_timestamps BEFORE INSERT OR UPDATE ON public.tasks FOR EACH ROW EXECUTE FUNCTION public.tasks_maintain_timestamps();

ALTER TABLE ONLY jobs.messages
    ADD CONSTRAINT messages_queue_fkey FOREIGN KEY (queue) REFERENCES jobs.queues(name);

ALTER TABLE ONLY jobs.pauses
    ADD CONSTRAINT pauses_queue_fkey FOREIGN KEY (queue) REFERENCES jobs.queues(name);

ALTER TABLE ONLY public.notification_preferences
    ADD CONSTRAINT notification_preferences_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.profiles
    ADD CONSTRAINT profiles_id_fkey FOREIGN KEY (id) REFERENCES auth.users(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_assignee_id_fkey FOREIGN KEY (assignee_id) REFERENCES auth.users(id) ON DELETE SET NULL;

ALTER TABLE ONLY public.tasks
    ADD CONSTRAINT tasks_created_by_fkey FOREIGN KEY (created_by) REFERENCES auth.users(id) ON DELETE SET NULL;

ALTER TABLE public.notification_preferences ENABLE ROW LEVEL SECURITY;
