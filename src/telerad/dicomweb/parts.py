"""Writing multipart/related responses (RFC 2387) as a stream of bytes.

A retrieve response can be a whole study of several hundred megabytes, so
parts are produced one at a time and file contents are read in chunks. No
more than one chunk, or one transcoded instance, is held in memory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import AsyncIterator, BinaryIO, Iterable, Iterator, Sequence

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

READ_SIZE = 1024 * 1024
CRLF = b"\r\n"


class Part:
    """One body part: its Content-Type, the chunks of its content and, when known before sending, their total length."""

    def __init__(self, content_type: str, chunks: Iterable[bytes], *, length: int | None = None):
        self.content_type = content_type
        self.chunks = chunks
        self.length = length

    def header(self) -> bytes:
        return f"Content-Type: {self.content_type}\r\n\r\n".encode("ascii")


def file_chunks(path: Path, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Yield the bytes of `path` from `offset`, `length` of them or up to the end, in chunks of READ_SIZE."""
    # Unbuffered reads of exact sizes fill each chunk once, with no buffer copy or shrink.
    with path.open("rb", buffering=0) as handle:
        if length is None:
            length = max(os.fstat(handle.fileno()).st_size - offset, 0)
        handle.seek(offset)
        yield from _read_chunks(handle, path, length)


def file_part(content_type: str, path: Path) -> Part:
    """Return a part holding the whole file at `path`, with its length known before sending.

    If the file has another size when its turn comes (it was replaced
    meanwhile), the response stops there rather than send a body that
    disagrees with its Content-Length.
    """
    size = path.stat().st_size
    return Part(content_type, _whole_file_chunks(path, size), length=size)


def _whole_file_chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as handle:
        current = os.fstat(handle.fileno()).st_size
        if current != size:
            raise OSError(f"{path} is {current} bytes now, {size} were announced")
        yield from _read_chunks(handle, path, size)


def _read_chunks(handle: BinaryIO, path: Path, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining > 0:
        chunk = handle.read(min(READ_SIZE, remaining))
        if not chunk:
            raise OSError(f"{path} ended {remaining} bytes before the expected end")
        remaining -= len(chunk)
        yield chunk


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


def multipart_length(parts: Sequence[Part], boundary: str) -> int | None:
    """Return the length of the body multipart_chunks encodes, or None when a part's length is unknown."""
    delimiter_length = 2 + len(boundary)
    total = delimiter_length + 4
    for part in parts:
        if part.length is None:
            return None
        total += delimiter_length + 2 + len(part.header()) + part.length + 2
    return total


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
        # Parts given as a list, each of known length, get a Content-Length: a
        # client reads the body in one piece, and the HTTP server copies no
        # chunk to frame it as chunked. Lazily made parts stay chunked.
        length = multipart_length(parts, boundary) if isinstance(parts, Sequence) else None
        if length is not None:
            self["Content-Length"] = str(length)

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        chunks = iter(self.streaming_content)
        # Reading files and transcoding block, so they run off the event loop.
        next_chunk = sync_to_async(next, thread_sensitive=False)
        while True:
            chunk = await next_chunk(chunks, None)
            if chunk is None:
                return
            yield chunk
