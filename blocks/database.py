"""The app database as prefect-sqlalchemy's `SqlAlchemyConnector` block, edited in the UI.

The block holds the connection's parts (driver `postgresql+psycopg`, host, port, database,
user, password; a Unix-socket directory goes in `query` as `host=/path`). The flows and
`consume` derive their psycopg URL from it: the hot path stays on psycopg, and the
daily report reads its frame through the block's SQLAlchemy engine.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from pydantic import SecretStr
from sqlalchemy.engine import make_url

DRIVER = "postgresql+psycopg"


def connector_for(url: str) -> SqlAlchemyConnector:
    """A connector block holding the parts of a `postgresql://` URL."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=DRIVER,
            database=parts.path.lstrip("/") or None,
            username=unquote(parts.username) if parts.username else None,
            password=SecretStr(unquote(parts.password)) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            query=query or None,
        )
    )


def psycopg_url(connector: SqlAlchemyConnector) -> str:
    """The `postgresql://` URL psycopg connects with, from the block's parts or URL.

    Built by hand rather than with SQLAlchemy's renderer, which encodes a space in the
    query as `+` (libpq decodes only `%XX`).
    """
    info = connector.connection_info
    url = info.create_url() if isinstance(info, ConnectionComponents) else make_url(str(info))
    auth = ""
    if url.username:
        auth = quote(url.username, safe="")
        if url.password:
            auth += ":" + quote(str(url.password), safe="")
        auth += "@"
    host = url.host or ""
    port = f":{url.port}" if url.port else ""
    query = urlencode(dict(url.query), quote_via=quote, safe="/") if url.query else ""
    database = quote(url.database or "", safe="")
    return f"postgresql://{auth}{host}{port}/{database}" + (f"?{query}" if query else "")
