"""Prefect blocks holding the settings an operator edits in the UI.

- `<prefix>-slack`: Prefect's built-in `SlackWebhook` (SLACK_WEBHOOK_URL); automations
  can notify through the same block.
- `<prefix>-email`: `TaskflowEmail`, the email provider settings.
- `<prefix>-database-url`: a `Secret` holding DATABASE_URL verbatim (a Secret rather than
  prefect-sqlalchemy's connector: our code speaks psycopg URLs, and Unix-socket hosts,
  sslmode and other query parameters survive a Secret unchanged).

`register_blocks` creates them from the environment; `settings_from_blocks` overlays
them on the environment settings. The prefix is TASKFLOW_BLOCK_PREFIX [taskflow].
"""

from blocks.email import TaskflowEmail
from blocks.registry import BlockNames, register_blocks, settings_from_blocks

__all__ = ["BlockNames", "TaskflowEmail", "register_blocks", "settings_from_blocks"]
