"""Named SQL queries, parsed from `queries/*.sql`.

Each query is a block that starts with a line `-- name --`, then a one-line `--`
description, then SQL with `%(param)s` placeholders. Names are unique across files.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).parent
MIGRATIONS_DIR = SQL_DIR / "migrations"
SCHEMA_FILE = SQL_DIR / "schema.sql"

_HEADER = re.compile(r"^-- ([a-z_0-9]+) --$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((SQL_DIR / "queries").glob("*.sql")):
        for name, sql in parse_queries(path.read_text()).items():
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice (second in {path.name})")
            found[name] = sql
    return found


def query(name: str) -> str:
    return queries()[name]
