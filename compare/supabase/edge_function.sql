-- The Edge Function's database calls (supabase-js `.rpc()` on pgmq's functions).

-- read --
-- Up to qty messages, invisible for vt seconds; read_ct counts every read.
SELECT msg_id, read_ct, message FROM pgmq.read('email_notifications', %(vt)s, %(qty)s)

-- delete --
-- Sent: the message is done.
SELECT pgmq.delete('email_notifications', %(msg_id)s::bigint)

-- archive --
-- Given up: moved to pgmq.a_email_notifications.
SELECT pgmq.archive('email_notifications', %(msg_id)s::bigint)

-- record_failure --
-- The row an operator reads to learn why a message was archived.
INSERT INTO public.job_failures (queue_name, msg_id, message, error, read_ct)
VALUES ('email_notifications', %(msg_id)s, %(message)s, %(error)s, %(read_ct)s)
