"""The HTTP connection pool of the SendGrid provider: httpcore (the pool under httpx's
client) with a cheaper check of idle connections.

Before it assigns a request, httpcore checks every idle connection for a close by the
server ("is its socket readable?"). Through anyio that check rebuilds the socket's whole
attribute table each time (a getpeername(2), an import, a dict of lambdas): about 13
times per email, measured as the biggest single part of the HTTP cost in
bench/_dispatch_gap.py. Here each connection's socket is looked up once and the check is
one poll(2), the same test httpcore itself makes on it.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

# what a request can fail with; connecting is told apart (the provider is unreachable)
CONNECT_ERRORS = (httpcore.ConnectError, httpcore.ConnectTimeout)
TIMEOUTS = (httpcore.TimeoutException,)
REQUEST_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    httpcore.ConnectionNotAvailable,
    OSError,  # ssl.SSLError on a live connection, which httpcore does not map
)


def readable(sock: socket.socket | None) -> bool:
    """True if an idle connection's socket has something to read (the server closed it)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock = inner.get_extra_info("socket")  # once, not at every check

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return readable(self._sock)
        return self._inner.get_extra_info(info)


class LeanBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, with streams whose idle check is one poll(2)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def connection_pool(concurrency: int, proxy: str | None) -> httpcore.AsyncConnectionPool:
    """Up to `concurrency` kept-alive connections, TLS verified as httpx verifies it
    (certifi, or SSL_CERT_FILE / SSL_CERT_DIR), through `proxy` if one is set."""
    return httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        proxy=_proxy(proxy) if proxy else None,
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=5.0,
        network_backend=LeanBackend(),
    )


def _proxy(url: str) -> httpcore.Proxy:
    """The proxy as httpx's client builds it: credentials in the URL become the proxy's
    authentication, and a URL without a scheme is an http:// one."""
    parsed = httpx.Proxy(url if "://" in url else f"http://{url}")
    return httpcore.Proxy(
        url=httpcore.URL(
            scheme=parsed.url.raw_scheme,
            host=parsed.url.raw_host,
            port=parsed.url.port,
            target=parsed.url.raw_path,
        ),
        auth=parsed.raw_auth,
        headers=parsed.headers.raw,
    )
