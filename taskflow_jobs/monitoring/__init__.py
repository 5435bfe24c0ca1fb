"""Watching the system: the Prefect API reader, the health check, incidents and status."""
