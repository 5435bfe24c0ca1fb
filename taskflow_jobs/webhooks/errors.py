"""Every answer that is not a success: a JSON body saying what is wrong, never an HTML page.

Client mistakes are 4xx with a reason. 5xx means only "try again later" (503 with
Retry-After): the database or Prefect is unreachable, or something unexpected failed, in
which case the traceback is logged under the request id and the sender keeps its delivery
and retries instead of losing it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("taskflow_jobs.webhooks")

RETRY_AFTER_SECONDS = 10
ROUTES = (
    "POST /webhooks/supabase, POST /api/notify, POST /api/events/{name}, GET /healthz, "
    "GET|POST /unsubscribe/{token}, POST /webhooks/sendgrid/events"
)


class ApiError(Exception):
    """An answer other than success, raised anywhere in a route."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail or ''}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def unavailable(error: str, detail: str) -> ApiError:
    """503 with Retry-After: the sender should keep the delivery and try again."""
    return ApiError(503, error, detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "-"


def error_response(request: Request, exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.error}
    if exc.detail:
        body["detail"] = exc.detail
    body["request_id"] = request_id(request)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "not found", 405: "method not allowed"}
    error = names.get(exc.status_code, str(exc.detail).lower())
    detail = None
    if exc.status_code == 404:
        detail = ROUTES
    headers = dict(exc.headers or {})
    return error_response(request, ApiError(exc.status_code, error, detail, headers=headers))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return error_response(request, ApiError(422, "invalid request", "; ".join(parts)))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "database unavailable (request %s): %s: %s",
        request_id(request),
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
    )
    reason = "the database did not answer; nothing was stored, retry later"
    return error_response(request, unavailable("database unavailable", reason))


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request, ApiError(400, "client disconnected"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)


class RequestContext:
    """ASGI middleware: a request id on every answer, and a JSON 503 for anything unexpected.

    Starlette would answer an unhandled exception with a plain-text 500; here it is logged
    with its traceback and answered like an outage, so the sender retries (nothing lost).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unexpected error in %s %s (request %s)", scope["method"], scope["path"], rid
            )
            if started:
                raise
            response = JSONResponse(
                {
                    "error": "temporarily unavailable",
                    "detail": f"unexpected error, logged as request {rid}; retry later",
                    "request_id": rid,
                },
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send_with_id)
