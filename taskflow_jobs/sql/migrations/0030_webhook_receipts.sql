-- Receipts of the webhook receiver (taskflow_jobs/webhooks), so that a request has one
-- effect however often it arrives:
--   sig:<sha256 of timestamp.body>   a signed request already accepted: a replay is refused
--   event:<name>:<delivery id>       an event already emitted: a retried delivery is not re-emitted
-- A receipt is written in the same transaction as the work it guards, so a request that
-- fails (503) leaves no receipt and its retry is processed normally. Rows expire; the
-- receiver deletes expired ones in the background.
CREATE TABLE jobs.webhook_receipts (
    key text PRIMARY KEY CHECK (key <> ''),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- webhook_receipts_expire: WHERE expires_at < $1
CREATE INDEX webhook_receipts_expires_at_idx ON jobs.webhook_receipts (expires_at);
