"""A throwaway embedded PostgreSQL for a benchmark run, deleted afterwards."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskflow_jobs import db


@contextmanager
def scratch_postgres(prefix: str) -> Iterator[tuple[db.EmbeddedPostgres, Path]]:
    """A fresh cluster in a temporary directory: (the server, the directory)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    server = None
    try:
        server = db.embedded_server(root, cleanup_mode="delete")
        yield db.EmbeddedPostgres(Path(server.get_postmaster_info().socket_dir), server), root
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def migrated_database(embedded: db.EmbeddedPostgres, name: str) -> str:
    db.ensure_database(embedded.url("postgres"), name)
    url = embedded.url(name)
    db.migrate(url)
    return url
