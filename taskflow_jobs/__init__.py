"""taskflow-jobs: the background-jobs system of TaskFlow, on Prefect 3 and PostgreSQL."""

__version__ = "0.1.0"
