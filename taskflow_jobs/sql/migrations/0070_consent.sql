-- Recipients' consent: per-type preferences, a suppression list, and messages finalised
-- as skipped (never sent) with their reason.

-- One row per user and type they changed; no row means the type is on. The app may write
-- this table directly; `welcome_email` is transactional and has no preference.
CREATE TABLE public.notification_preferences (
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    type text NOT NULL
        CONSTRAINT notification_preferences_type_check CHECK (type IN ('task_assigned', 'notification')),
    enabled boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, type)
);
-- Where an API exposes public (Supabase's PostgREST), no anon or authenticated role sees
-- or changes anyone's rows until the app adds its own policies (e.g. user_id = auth.uid());
-- the owner (our migrations, the dispatcher, the receiver) and service_role bypass RLS.
ALTER TABLE public.notification_preferences ENABLE ROW LEVEL SECURITY;

-- Addresses that get no more email (hard bounces, spam reports, unsubscribes, the CLI).
-- Compared case-insensitively: the unique index is on lower(email).
CREATE TABLE jobs.suppressions (
    email text NOT NULL CONSTRAINT suppressions_email_check CHECK (email LIKE '%_@_%'),
    reason text NOT NULL CONSTRAINT suppressions_reason_check CHECK (reason <> ''),
    source text NOT NULL CONSTRAINT suppressions_source_check CHECK (source <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- email_consent, suppress, unsuppress: WHERE lower(email) = ...
CREATE UNIQUE INDEX suppressions_email_idx ON jobs.suppressions (lower(email));

-- email_consent: notifications are addressed by email; their user is found by address.
CREATE INDEX IF NOT EXISTS profiles_email_lower_idx ON public.profiles (lower(email));

-- NULL for a delivered message; the reason for one that was skipped unsent.
ALTER TABLE jobs.archive ADD COLUMN skipped_reason text
    CONSTRAINT archive_skipped_reason_check CHECK (skipped_reason <> '');

-- skip: finalise leased messages without sending them (opted out, suppressed): into the
-- archive with their reason (or just deleted where the queue does not archive).
CREATE FUNCTION jobs.skip(
    p_ids bigint[],
    p_reasons text[],
    p_token uuid,
    p_now timestamptz DEFAULT now()
) RETURNS SETOF bigint
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    WITH done AS (
        DELETE FROM jobs.messages m
        USING unnest(p_ids, p_reasons) AS r (id, reason)
        WHERE m.id = ANY (p_ids) AND m.id = r.id AND m.claim_token = p_token
        RETURNING m.*, r.reason
    ), kept AS (
        INSERT INTO jobs.archive (id, queue, payload, enqueued_at, finalized_at, attempt, errors,
                                  idempotency_key, redrive_count, skipped_reason)
        SELECT d.id, d.queue, d.payload, d.enqueued_at, p_now, d.attempt, d.errors,
               d.idempotency_key, d.redrive_count, d.reason
        FROM done d JOIN jobs.queues q ON q.name = d.queue AND q.archive
    )
    SELECT id FROM done;
$$;

-- None of it is for the API roles where an API exposes the database (Supabase's anon and
-- authenticated): the app grants its users what its own policies allow.
REVOKE ALL ON FUNCTION jobs.skip(bigint[], text[], uuid, timestamptz) FROM PUBLIC;
REVOKE ALL ON jobs.suppressions FROM PUBLIC;
REVOKE ALL ON public.notification_preferences FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION jobs.skip(bigint[], text[], uuid, timestamptz) FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON jobs.suppressions FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON public.notification_preferences FROM %I', api_role);
    END LOOP;
END $$;
