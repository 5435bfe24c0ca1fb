"""The SendGrid provider's connection pool (`providers/http.py`): its idle check is one
poll(2) per connection, and it still never sends on a connection the server closed."""

from __future__ import annotations

import asyncio
import socket

import httpcore
import pytest

from taskflow_jobs.email.providers import http


def test_readable_tells_a_closed_peer_from_an_idle_one() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert http.readable(ours) is False, "idle, nothing to read"
        theirs.close()
        assert http.readable(ours) is True, "the peer closed it"
    finally:
        ours.close()
    assert http.readable(ours) is True, "a closed socket is never reused"
    assert http.readable(None) is True


async def _one_reply_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):  # type: ignore[no-untyped-def]
    """Answers one request with keep-alive allowed, then closes the connection."""
    await reader.readuntil(b"\r\n\r\n")
    body = b'{"ok": true}'
    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()


@pytest.mark.parametrize("backend", ["lean", "always idle"])
def test_a_connection_the_server_closed_is_not_reused(backend: str) -> None:
    async def scenario() -> list[int | str]:
        server = await asyncio.start_server(_one_reply_per_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = http.connection_pool(4, None)
        if backend == "always idle":  # the control: a check that never sees the close
            http_readable, http.readable = http.readable, lambda sock: False
        statuses: list[int | str] = []
        try:
            for _ in range(3):
                try:
                    response = await pool.request(
                        "POST",
                        f"http://127.0.0.1:{port}/v3/mail/send",
                        headers=[(b"Content-Type", b"application/json")],
                        content=b"{}",
                    )
                    statuses.append(response.status)
                except (httpcore.RemoteProtocolError, httpcore.ReadError):
                    statuses.append("disconnected")
                await asyncio.sleep(0.2)  # the server has closed the idle connection by now
        finally:
            if backend == "always idle":
                http.readable = http_readable
            await pool.aclose()
            server.close()
            await server.wait_closed()
        return statuses

    statuses = asyncio.run(scenario())
    if backend == "lean":
        assert statuses == [202, 202, 202]
    else:
        assert "disconnected" in statuses, statuses
