-- health_ping --
-- The cheapest round trip: measures database latency.
SELECT 1 AS ok;

-- new_dead_letters --
-- Messages dead-lettered after `since`, per queue.
SELECT queue, count(*) AS n
FROM jobs.dead_letters
WHERE dead_lettered_at > %(since)s
GROUP BY queue
ORDER BY queue;
