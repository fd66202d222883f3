"""Refuse request bodies over their size limit before Django spools them to disk.

Django's ASGI handler reads a whole request body into a temporary file
before any view runs, so a view's own size check comes after the disk has
taken the upload. This wrapper checks Content-Length first, and counts the
bytes of a chunked body as they arrive. Over the limit, it sends 413 at
once and tells Django the client went away, which stops the spooling.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from django.conf import settings

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DICOMWEB_PREFIX = "/dicom-web/"
# Forms and other pages: far more than a login or admin form needs.
OTHER_LIMIT_BYTES = 16 * 1024 * 1024
METHODS_WITH_BODIES = {"POST", "PUT", "PATCH"}


def limit_for(path: str) -> int:
    if path.startswith(DICOMWEB_PREFIX):
        return settings.TELERAD.dicomweb_max_upload_bytes
    return OTHER_LIMIT_BYTES


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large_message(path: str, limit: int) -> bytes:
    text = f"The request body is larger than the limit of {limit // (1024 * 1024)} MiB"
    if path.startswith(DICOMWEB_PREFIX):
        text += " (TELERAD_DICOMWEB_MAX_UPLOAD_MB); send the instances in several requests"
    return (text + ".\n").encode("utf-8")


async def _too_large(send: Send, path: str, limit: int) -> None:
    body = _too_large_message(path, limit)
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode("ascii")), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})


class RequestBodyLimit:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in METHODS_WITH_BODIES:
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            logger.warning("request body rejected as too large path=%s declared_bytes=%d limit_bytes=%d", scope.get("path", ""), declared, limit)
            await _too_large(send, scope.get("path", ""), limit)
            return

        received = 0
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    logger.warning("request body rejected as too large path=%s received_bytes=%d limit_bytes=%d", scope.get("path", ""), received, limit)
                    await _too_large(send, scope.get("path", ""), limit)
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)
