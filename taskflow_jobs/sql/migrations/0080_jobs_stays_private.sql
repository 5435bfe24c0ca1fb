-- Keep the jobs schema private after the migrations that added tables and functions to it
-- (the outbox, flow control, consent): PUBLIC gets EXECUTE on a new function, and an
-- installation's default privileges (Supabase grants to anon / authenticated) may add
-- more. The same revokes as 0050, over everything the schema holds now.
REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;

DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN
        SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobs FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM %I', api_role);
    END LOOP;
END $$;
