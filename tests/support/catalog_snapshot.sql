-- One line per object outside the jobs schema (and the system schemas), with everything
-- about it that a migration could change: definition, privileges, row level security.
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('jobs', 'pg_catalog', 'information_schema', 'pg_toast')
      AND nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
)
SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '-') AS line
FROM pg_namespace n JOIN ns USING (oid)
UNION ALL
SELECT format('relation %s.%s kind=%s rls=%s force=%s acl=%s', ns.nspname, c.relname, c.relkind,
              c.relrowsecurity, c.relforcerowsecurity, coalesce(c.relacl::text, '-'))
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT format('column %s.%s.%s %s notnull=%s default=%s', ns.nspname, c.relname, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull,
              coalesce(pg_get_expr(d.adbin, d.adrelid), '-'))
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT format('constraint %s.%s %s', ns.nspname, co.conname, pg_get_constraintdef(co.oid))
FROM pg_constraint co JOIN ns ON ns.oid = co.connamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT format('trigger %s on %s enabled=%s: %s', t.tgname, t.tgrelid::regclass, t.tgenabled,
              pg_get_triggerdef(t.oid))
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
WHERE NOT t.tgisinternal
UNION ALL
SELECT format('policy %s on %s: %s', p.polname, p.polrelid::regclass,
              pg_get_expr(p.polqual, p.polrelid))
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT format('function %s.%s(%s) secdef=%s acl=%s md5=%s', ns.nspname, p.proname,
              pg_get_function_identity_arguments(p.oid), p.prosecdef,
              coalesce(p.proacl::text, '-'), md5(p.prosrc))
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
UNION ALL
SELECT format('default acl %s in %s on %s: %s', d.defaclrole::regrole,
              coalesce(n.nspname, '*'), d.defaclobjtype, d.defaclacl)
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
WHERE n.nspname IS DISTINCT FROM 'jobs'
UNION ALL
SELECT format('role %s super=%s bypassrls=%s login=%s', rolname, rolsuper, rolbypassrls,
              rolcanlogin)
FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role', 'supabase_auth_admin')
UNION ALL
SELECT 'rows auth.users ' || md5(string_agg(u::text, ',' ORDER BY u.id)) FROM auth.users u
UNION ALL
SELECT 'rows public.profiles ' || md5(string_agg(p::text, ',' ORDER BY p.id)) FROM public.profiles p
UNION ALL
SELECT 'rows public.tasks ' || md5(string_agg(t::text, ',' ORDER BY t.id)) FROM public.tasks t;
