-- Indexes for the cron jobs (issue 4).

-- cleanup (WHERE dead_lettered_at < cutoff), health-check (dead letters since the last
-- check) and weekly-summary totals: all queues at once, so the (queue, dead_lettered_at)
-- index does not serve them before PostgreSQL 18's skip scan.
CREATE INDEX dead_letters_dead_lettered_at_idx ON jobs.dead_letters (dead_lettered_at);
