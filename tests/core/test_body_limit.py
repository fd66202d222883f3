"""The ASGI body limit: oversized uploads get 413 before Django spools them."""

from __future__ import annotations

import asyncio

import pytest

from telerad.core import body_limit
from telerad.core.body_limit import RequestBodyLimit

LIMIT = 1000


class Recorder:
    """An ASGI application that reads the whole body, as Django's handler does, and returns 200."""

    def __init__(self) -> None:
        self.body = b""
        self.disconnected = False

    async def __call__(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run(chunks: list[bytes], *, content_length: int | None, path: str = "/dicom-web/studies", method: str = "POST"):
    inner = Recorder()
    sent: list[dict] = []
    headers = [(b"content-type", b"multipart/related")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    messages = [{"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1} for index, chunk in enumerate(chunks)]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(RequestBodyLimit(inner)(scope, receive, send))
    return inner, sent


@pytest.fixture(autouse=True)
def small_limit(monkeypatch):
    monkeypatch.setattr(body_limit, "limit_for", lambda path: LIMIT)


def test_body_limit_rejects_declared_length():
    inner, sent = run([b"x" * 600, b"x" * 600], content_length=1200)

    assert sent[0]["status"] == 413
    assert inner.body == b""
    assert not inner.disconnected


def test_body_limit_stops_chunked_body():
    inner, sent = run([b"x" * 600, b"x" * 600, b"x" * 600], content_length=None)

    assert sent[0]["status"] == 413
    assert inner.disconnected
    assert len(inner.body) == 600


def test_body_limit_passes_a_body_within_the_limit():
    inner, sent = run([b"x" * 500, b"x" * 500], content_length=1000)

    assert inner.body == b"x" * 1000
    assert sent[0]["status"] == 200


def test_body_limit_leaves_get_requests_alone():
    inner, sent = run([b""], content_length=None, method="GET")

    assert sent[0]["status"] == 200
