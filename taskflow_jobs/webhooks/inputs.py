"""Reading a request body safely: size limit while reading, content type, strict JSON.

The limit is enforced on the bytes actually received, not on Content-Length (which a
client may omit or get wrong). JSON is parsed strictly (no NaN/Infinity, no numbers that
overflow to infinity) and every string is checked for what PostgreSQL's jsonb and
Prefect's event store cannot hold (NUL characters, unpaired surrogates), so bad input is
a 4xx here instead of a database error later.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import Request

from taskflow_jobs.webhooks.errors import ApiError

MAX_BODY_BYTES = 256 * 1024
READ_TIMEOUT = 30.0
MAX_DEPTH = 32


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or 413 as soon as more than `limit` bytes arrived (408 if it stalls)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ApiError(415, "unsupported content encoding", "send the body uncompressed")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "request timeout", f"the body did not arrive within {READ_TIMEOUT:.0f}s"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body too large", f"the limit is {limit} bytes ({limit // 1024} KiB)")


def require_json_content_type(request: Request) -> None:
    """415 unless the body is declared as JSON (application/json or application/*+json, UTF-8)."""
    header = request.headers.get("content-type")
    if header is None:
        raise ApiError(415, "unsupported media type", "Content-Type must be application/json")
    media, _, params = header.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        shown = media[:60] or "empty"
        raise ApiError(
            415, "unsupported media type", f"Content-Type must be application/json, not {shown}"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise ApiError(415, "unsupported media type", "JSON must be encoded as UTF-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def parse_json(body: bytes) -> Any:
    """The decoded body, or 400 naming the problem; then `check_storable`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed JSON", f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "malformed JSON", f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed JSON", "nested too deeply") from None
    except ValueError as exc:  # NaN, Infinity, 1e999, integers longer than 4300 digits
        raise ApiError(400, "malformed JSON", str(exc)[:200]) from None
    check_storable(value)
    return value


def parse_json_object(body: bytes) -> dict[str, Any]:
    value = parse_json(body)
    if not isinstance(value, dict):
        raise ApiError(422, "invalid payload", f"body must be a JSON object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def check_storable(value: Any, path: str = "body", depth: int = 0) -> None:
    """422 if the value cannot be stored as jsonb: NUL characters, lone surrogates, deep nesting."""
    if depth > MAX_DEPTH:
        raise ApiError(422, "invalid payload", f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{path} key")
            check_storable(item, f"{path}.{key[:40]}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{path}[{index}]", depth + 1)


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise ApiError(422, "invalid payload", f"{path}: text must not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            422, "invalid payload", f"{path}: text contains an unpaired surrogate"
        ) from None
