"""Prefect blocks holding the settings an operator edits in the UI.

- `<prefix>-slack`: Prefect's built-in `SlackWebhook` (SLACK_WEBHOOK_URL); automations
  can notify through the same block.
- `<prefix>-email`: `TaskflowEmail`, the email provider settings.
- `<prefix>-database`: prefect-sqlalchemy's `SqlAlchemyConnector` (DATABASE_URL in parts,
  driver `postgresql+psycopg`); the flows and `consume` derive their psycopg URL from it.

`deployments.blocks.register_blocks` writes them from the environment;
`settings_from_blocks` lays them over the environment settings. The prefix is
TASKFLOW_BLOCK_PREFIX [taskflow].
"""

from blocks.database import connector_for, psycopg_url
from blocks.email import TaskflowEmail
from blocks.registry import BlockNames, settings_from_blocks

__all__ = ["BlockNames", "TaskflowEmail", "connector_for", "psycopg_url", "settings_from_blocks"]
