"""Queued jobs in PostgreSQL: the queue API, the LISTEN wake-up, retention of our tables."""
