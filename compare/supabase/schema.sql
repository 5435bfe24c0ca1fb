-- The case study's Supabase design, reconstructed: tables, the pgmq queue and the triggers
-- that fill it. Runs after pgmq's own SQL (pgmq/sql/pgmq.sql from the PyPI `pgmq` wheel).

CREATE EXTENSION IF NOT EXISTS pgcrypto;

SELECT pgmq.create('email_notifications');

-- Supabase provides auth.users; a plain PostgreSQL gets the columns the triggers read.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text,
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    email text,
    full_name text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL,
    status text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'completed')),
    assignee_id uuid REFERENCES auth.users (id),
    created_by uuid REFERENCES auth.users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);

CREATE TABLE public.daily_stats (
    date date PRIMARY KEY,
    new_tasks integer NOT NULL,
    completed_tasks integer NOT NULL,
    new_users integer NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);

-- What the Edge Function writes when it gives up on a message (after read_ct >= 3).
CREATE TABLE public.job_failures (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name text NOT NULL,
    msg_id bigint NOT NULL,
    message jsonb NOT NULL,
    error text,
    read_ct integer NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION public.handle_new_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    INSERT INTO public.profiles (id, email, full_name)
    VALUES (NEW.id, NEW.email, NEW.raw_user_meta_data ->> 'full_name');
    PERFORM pgmq.send(
        'email_notifications',
        jsonb_build_object(
            'type', 'welcome_email',
            'user_id', NEW.id,
            'email', NEW.email,
            'name', NEW.raw_user_meta_data ->> 'full_name'
        )
    );
    RETURN NEW;
END;
$$;

CREATE TRIGGER on_auth_user_created
AFTER INSERT ON auth.users
FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();

CREATE FUNCTION public.handle_task_assigned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    IF NEW.assignee_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.assignee_id IS DISTINCT FROM OLD.assignee_id) THEN
        PERFORM pgmq.send(
            'email_notifications',
            jsonb_build_object(
                'type', 'task_assigned',
                'task_id', NEW.id,
                'task_title', NEW.title,
                'assignee_id', NEW.assignee_id,
                'assigner_id', NEW.created_by
            )
        );
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER on_task_assigned
AFTER INSERT OR UPDATE OF assignee_id ON public.tasks
FOR EACH ROW EXECUTE FUNCTION public.handle_task_assigned();
