-- What each `consume` delivered while Prefect was unreachable, checkpointed every second
-- while the outage lasts: a consumer killed before Prefect answers again loses nothing of
-- it, since whoever reaches Prefect next reports the rows its owner left behind.
CREATE TABLE jobs.prefect_outages (
    id bigserial PRIMARY KEY,
    consumer text NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL,
    summary jsonb NOT NULL DEFAULT '{}',
    rows jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX prefect_outages_seen_idx ON jobs.prefect_outages (seen_at);

REVOKE ALL ON jobs.prefect_outages FROM PUBLIC;
REVOKE ALL ON SEQUENCE jobs.prefect_outages_id_seq FROM PUBLIC;
DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN
        SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON jobs.prefect_outages FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON SEQUENCE jobs.prefect_outages_id_seq FROM %I', api_role);
    END LOOP;
END $$;
