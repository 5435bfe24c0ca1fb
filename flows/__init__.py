"""Prefect flows: one module per flow, thin (settings, library calls, logs, artifacts)."""
