"""The email provider settings as a Prefect block, editable in the UI.

A thin typed mirror of the EMAIL_* / SMTP_* / SENDGRID_* settings: no logic here; the
dispatcher reads it through `flows.common.flow_settings()`.
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr


class TaskflowEmail(Block):
    """How TaskFlow sends email: the provider and its credentials.

    Example:
        Load the settings the dispatcher uses:
        ```python
        from blocks.email import TaskflowEmail

        email = TaskflowEmail.load("BLOCK_NAME")
        ```
    """

    _block_type_name = "TaskFlow Email"
    _block_type_slug = "taskflow-email"
    _logo_url = HttpUrl(
        "https://raw.githubusercontent.com/PrefectHQ/prefect/"
        "420d0d6a78bb6df1fc18bcf188fdad43c1d22ea9/assets/block-logos/webhook.png"
    )
    _documentation_url = HttpUrl("https://docs.prefect.io/v3/develop/blocks")
    _description = (
        "Email provider settings of taskflow-jobs (console, SMTP or SendGrid). "
        "Edited here, they override the EMAIL_*, SMTP_* and SENDGRID_* environment."
    )

    email_provider: Literal["console", "smtp", "sendgrid"] = Field(
        "console",
        description="console writes .eml files under the data directory; smtp; sendgrid.",
    )
    email_from: str = Field(
        "TaskFlow <noreply@example.com>", description="From address of every email."
    )
    smtp_host: str = Field("localhost", description="SMTP server host.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP user (none: no login).")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    sendgrid_api_key: SecretStr | None = Field(None, description="SendGrid API key.")
    sendgrid_api_url: str = Field(
        "https://api.sendgrid.com",
        description="SendGrid API base URL; mail goes to {url}/v3/mail/send.",
    )
