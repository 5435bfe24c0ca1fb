-- metrics_queues --
-- Every queue's depth by state, its oldest message's age and its dead letters, for one Prometheus scrape (one call of jobs.metrics).
SELECT queue, visible, in_flight, delayed, oldest_age_seconds, dead_letters
FROM jobs.metrics();
