-- The jobs schema is private to the processes that own it, also where an API exposes the
-- database (Supabase's PostgREST runs as anon / authenticated). PostgreSQL grants EXECUTE
-- on new functions to PUBLIC; none of ours is meant to be called by anyone but the owner.
-- The triggers keep working for every role the app lets write its tables: a trigger
-- function is not checked for EXECUTE when it fires, and ours are SECURITY DEFINER.

-- A tasks table of the app's own may have no assigned_at: the assignment's time is then
-- the time of the transaction that assigns, which still tells A -> B -> A apart.
CREATE OR REPLACE FUNCTION jobs.on_task_assigned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM jobs.enqueue_task_assigned(
        NEW.id, NEW.title, NEW.assignee_id, jobs.current_actor(NEW.created_by),
        coalesce((to_jsonb(NEW) ->> 'assigned_at')::timestamptz, now()));
    RETURN NEW;
END $$;

REVOKE ALL ON SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA jobs REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE ALL ON public.taskflow_migrations FROM PUBLIC;

DO $$
DECLARE
    api_role text;
BEGIN
    FOR api_role IN
        SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated')
    LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA jobs FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobs FROM %I', api_role);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM %I', api_role);
        -- the migrations ledger lives in public, which Supabase exposes by default
        EXECUTE format('REVOKE ALL ON public.taskflow_migrations FROM %I', api_role);
        ALTER TABLE public.taskflow_migrations ENABLE ROW LEVEL SECURITY;
    END LOOP;
END $$;
