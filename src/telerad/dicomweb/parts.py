"""Writing multipart/related responses (RFC 2387) as a stream of bytes.

A retrieve response can be a whole study of several hundred megabytes, so
parts are produced one at a time and file contents are read in chunks. No
more than one chunk, or one transcoded instance, is held in memory.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import AsyncIterator, Iterable, Iterator

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

READ_SIZE = 1024 * 1024
CRLF = b"\r\n"


class Part:
    """One body part: its Content-Type and the chunks of its content."""

    def __init__(self, content_type: str, chunks: Iterable[bytes]):
        self.content_type = content_type
        self.chunks = chunks

    def header(self) -> bytes:
        return f"Content-Type: {self.content_type}\r\n\r\n".encode("ascii")


def file_chunks(path: Path, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Yield the bytes of `path` from `offset`, `length` of them or up to the end, in chunks of READ_SIZE."""
    with path.open("rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining is None or remaining > 0:
            chunk = handle.read(READ_SIZE if remaining is None else min(READ_SIZE, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    if remaining:
        raise OSError(f"{path} ended {remaining} bytes before the expected end")


def new_boundary() -> str:
    # 128 random bits make a chance match with bytes inside a DICOM file vanishingly unlikely.
    return "telerad-" + secrets.token_hex(16)


def multipart_chunks(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """Yield the encoded body: each part behind a delimiter line, then the close delimiter (RFC 2046 5.1.1).

    The delimiter, headers and line breaks go out joined to the content chunk
    that follows them. Each chunk costs a hand-over from the request thread
    to the event loop, and sending them on their own tripled the chunks of a
    study of single-chunk instances.
    """
    delimiter = b"--" + boundary.encode("ascii")
    pending = b""
    for part in parts:
        pending += delimiter + CRLF + part.header()
        for chunk in part.chunks:
            yield pending + chunk
            pending = b""
        pending += CRLF
    yield pending + delimiter + b"--" + CRLF


def multipart_content_type(part_type: str, boundary: str) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


class StreamingMultipartResponse(StreamingHttpResponse):
    """A streaming response that reads its parts on a worker thread when served over ASGI.

    Django 5.2 serves a synchronous iterator over ASGI by first collecting it
    into a list, which would hold a whole study in memory. This class hands
    the ASGI server one chunk at a time instead; the test client and WSGI
    servers iterate it synchronously as usual.
    """

    def __init__(self, parts: Iterable[Part], *, part_type: str, status: int = 200):
        boundary = new_boundary()
        super().__init__(multipart_chunks(parts, boundary), content_type=multipart_content_type(part_type, boundary), status=status)

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        chunks = iter(self.streaming_content)
        # Reading files and transcoding block, so they run off the event loop.
        next_chunk = sync_to_async(next, thread_sensitive=False)
        while True:
            chunk = await next_chunk(chunks, None)
            if chunk is None:
                return
            yield chunk
