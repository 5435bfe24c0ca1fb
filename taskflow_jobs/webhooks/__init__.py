"""The webhook receiver: signed HTTP in, durable jobs and Prefect events out.

Prefect's own webhooks are a Prefect Cloud feature, so database webhooks (Supabase) and
other services reach taskflow-jobs through this FastAPI app instead. See docs/webhooks.md.
"""

from taskflow_jobs.webhooks.app import create_app

__all__ = ["create_app"]
