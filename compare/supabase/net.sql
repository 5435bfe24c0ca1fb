-- A stand-in for pg_net, which Supabase's pg_cron jobs use to call an Edge Function and
-- which Debian does not package: `net.http_post` queues the request in a table, as pg_net
-- does, and a relay process (compare/supabase/relay.py) sends it, as pg_net's background
-- worker does. Fire and forget: the caller gets the request id, never the response.

CREATE SCHEMA net;

CREATE TABLE net.http_request_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    method text NOT NULL,
    url text NOT NULL,
    headers jsonb NOT NULL,
    body jsonb,
    timeout_milliseconds integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION net.http_post(
    url text,
    body jsonb DEFAULT '{}',
    params jsonb DEFAULT '{}',
    headers jsonb DEFAULT '{"Content-Type": "application/json"}',
    timeout_milliseconds integer DEFAULT 5000
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO net.http_request_queue (method, url, headers, body, timeout_milliseconds)
    VALUES ('POST', url, headers, body, timeout_milliseconds)
    RETURNING id INTO v_id;
    PERFORM pg_notify('net_http_request', v_id::text);
    RETURN v_id;
END;
$$;
