-- email_consent --
-- Per batch, in one query: each recipient (by user id or by address) with the types its user turned off and why its address is suppressed.
WITH recipients AS (
    SELECT p.id AS user_id, lower(p.email) AS email
    FROM public.profiles p
    WHERE p.id = ANY (%(user_ids)s::uuid[])
    UNION
    SELECT p.id, a.email
    FROM unnest(%(emails)s::text[]) AS a (email)
    LEFT JOIN public.profiles p ON lower(p.email) = a.email
)
SELECT r.user_id, r.email,
       (SELECT array_agg(np.type ORDER BY np.type) FROM public.notification_preferences np
        WHERE np.user_id = r.user_id AND NOT np.enabled) AS disabled,
       s.reason AS suppressed_reason, s.source AS suppressed_source
FROM recipients r
LEFT JOIN jobs.suppressions s ON lower(s.email) = r.email;

-- skip --
-- Finalise leased messages unsent, into the archive with their reasons.
SELECT id FROM jobs.skip(%(ids)s::bigint[], %(reasons)s, %(token)s,
                         coalesce(%(now)s::timestamptz, now())) AS id;

-- suppress --
-- Add addresses to the suppression list; an address already there keeps its first reason.
INSERT INTO jobs.suppressions (email, reason, source)
SELECT a.email, a.reason, %(source)s
FROM unnest(%(emails)s::text[], %(reasons)s::text[]) AS a (email, reason)
ON CONFLICT ((lower(email))) DO NOTHING
RETURNING email;

-- unsuppress --
-- Take one address off the suppression list.
DELETE FROM jobs.suppressions WHERE lower(email) = lower(%(email)s) RETURNING email;

-- suppressions --
-- The suppression list for `suppress list`: newest first, optionally filtered by address text.
SELECT email, reason, source, created_at
FROM jobs.suppressions
WHERE %(match)s::text IS NULL OR email ILIKE '%%' || %(match)s || '%%'
ORDER BY created_at DESC, email
LIMIT %(limit)s;

-- set_preference --
-- A user turns one type on or off (unsubscribe link, or the app); nothing for an unknown user.
INSERT INTO public.notification_preferences (user_id, type, enabled, updated_at)
SELECT u.id, %(type)s, %(enabled)s, now() FROM auth.users u WHERE u.id = %(user_id)s
ON CONFLICT (user_id, type) DO UPDATE
SET enabled = excluded.enabled, updated_at = excluded.updated_at
WHERE notification_preferences.enabled IS DISTINCT FROM excluded.enabled
RETURNING user_id;

-- skipped_counts --
-- Messages finalised as skipped in the last day, by type and why (opted out / suppressed), for `status`.
SELECT payload ->> 'type' AS type, split_part(skipped_reason, ':', 1) AS why, count(*) AS count
FROM jobs.archive
WHERE skipped_reason IS NOT NULL AND finalized_at >= now() - interval '1 day'
GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2;
