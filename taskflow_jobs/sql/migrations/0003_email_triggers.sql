-- Email jobs enqueued in the same transaction as the change that causes them.
-- The webhook receiver calls the same two functions, so both paths build the same
-- payload and the same idempotency key: running both at once sends one email, not two.

CREATE FUNCTION jobs.enqueue_welcome_email(p_user_id uuid, p_email text, p_name text)
RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    SELECT jobs.send(
        'email_notifications',
        jsonb_build_object('type', 'welcome_email', 'user_id', p_user_id,
                           'email', p_email, 'name', p_name),
        p_idempotency_key => 'welcome_email:' || p_user_id
    );
$$;

CREATE FUNCTION jobs.enqueue_task_assigned(
    p_task_id bigint,
    p_task_title text,
    p_assignee_id uuid,
    p_assigner_id uuid,
    p_assigned_at timestamptz
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = '' AS $$
    SELECT jobs.send(
        'email_notifications',
        jsonb_build_object('type', 'task_assigned', 'task_id', p_task_id, 'task_title', p_task_title,
                           'assignee_id', p_assignee_id, 'assigner_id', p_assigner_id),
        p_idempotency_key => format('task_assigned:%s:%s:%s', p_task_id, p_assignee_id,
                                    (extract(epoch FROM p_assigned_at) * 1000000)::bigint)
    );
$$;

-- Who made the change: Supabase puts the JWT subject in request.jwt.claim(s); elsewhere
-- the task's creator stands in.
CREATE FUNCTION jobs.current_actor(p_fallback uuid) RETURNS uuid
LANGUAGE sql STABLE SET search_path = '' AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub',
        p_fallback::text
    )::uuid;
$$;

CREATE FUNCTION jobs.on_user_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM jobs.enqueue_welcome_email(NEW.id, NEW.email, NEW.raw_user_meta_data ->> 'full_name');
    RETURN NEW;
END $$;

CREATE TRIGGER enqueue_welcome_email
    AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION jobs.on_user_created();

CREATE FUNCTION jobs.on_task_assigned() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
    PERFORM jobs.enqueue_task_assigned(NEW.id, NEW.title, NEW.assignee_id,
                                       jobs.current_actor(NEW.created_by), NEW.assigned_at);
    RETURN NEW;
END $$;

CREATE TRIGGER enqueue_task_assigned_on_insert
    AFTER INSERT ON public.tasks
    FOR EACH ROW WHEN (NEW.assignee_id IS NOT NULL)
    EXECUTE FUNCTION jobs.on_task_assigned();

CREATE TRIGGER enqueue_task_assigned_on_update
    AFTER UPDATE OF assignee_id ON public.tasks
    FOR EACH ROW WHEN (NEW.assignee_id IS NOT NULL AND NEW.assignee_id IS DISTINCT FROM OLD.assignee_id)
    EXECUTE FUNCTION jobs.on_task_assigned();
