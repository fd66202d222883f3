"""Streaming parser of multipart/related request bodies (RFC 2046 5.1, RFC 2387).

The body is read in chunks from a file-like object, and each part is spooled
into memory up to a threshold and into a temporary file beyond it, so that an
upload of any size needs a bounded amount of memory. Parts are yielded as soon
as their closing delimiter has been read, so a caller can store one part
before the next arrives.

Syntax errors raise :class:`MalformedMultipart` (HTTP 400) and a body over the
size limit raises :class:`BodyTooLarge` (HTTP 413). Both name what was wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import mmap
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator, Mapping

from django.utils.http import parse_header_parameters

READ_SIZE = 256 * 1024
# A part up to this size stays in memory; a larger one goes to a temporary file.
PART_MEMORY_LIMIT = 4 * 1024 * 1024
# RFC 2046 5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70
MAX_HEADER_BLOCK = 16 * 1024
CRLF = b"\r\n"


class MalformedMultipart(ValueError):
    """The body does not follow the multipart syntax; the message names where."""


class BodyTooLarge(ValueError):
    """The body is larger than the configured limit."""

    def __init__(self, limit: int):
        super().__init__(f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class ContentType:
    """A parsed Content-Type header: the media type in lower case and its parameters."""

    media_type: str
    parameters: Mapping[str, str]

    @classmethod
    def parse(cls, header: str) -> ContentType:
        media_type, parameters = parse_header_parameters(header)
        return cls(media_type.strip().lower(), {name.lower(): value for name, value in parameters.items()})


def boundary_of(content_type: ContentType) -> bytes:
    """Return the boundary parameter of a multipart Content-Type; raise MalformedMultipart when it is missing or invalid."""
    boundary = content_type.parameters.get("boundary", "")
    if not boundary:
        raise MalformedMultipart("the Content-Type has no boundary parameter; send multipart/related; type=\"application/dicom\"; boundary=...")
    if len(boundary) > MAX_BOUNDARY_LENGTH or not boundary.isascii():
        raise MalformedMultipart(f"the boundary {boundary[:80]!r} is not 1 to 70 ASCII characters (RFC 2046 5.1.1)")
    return boundary.encode("ascii")


class PartContent:
    """The content of one part: bytes in memory, spilled to a temporary file when it grows large."""

    def __init__(self, temporary_dir: Path | None):
        self.temporary_dir = temporary_dir
        self.size = 0
        self._memory: bytearray | None = bytearray()
        self._file: BinaryIO | None = None

    def write(self, data: bytes | bytearray) -> None:
        if self._memory is not None and len(self._memory) + len(data) > PART_MEMORY_LIMIT:
            self._file = tempfile.TemporaryFile(dir=self.temporary_dir)
            self._file.write(self._memory)
            self._memory = None
        if self._file is not None:
            self._file.write(data)
        else:
            assert self._memory is not None
            self._memory += data
        self.size += len(data)

    @contextlib.contextmanager
    def buffer(self) -> Iterator[bytes]:
        """Yield the whole content as bytes or, for a spilled part, as a read-only mmap of its file."""
        if self._file is None:
            yield bytes(self._memory or b"")
            return
        self._file.flush()
        if self.size == 0:
            yield b""
            return
        mapped = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mapped  # type: ignore[misc]
        finally:
            mapped.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = None


@dataclasses.dataclass
class Part:
    """One body part: its number from 1, its headers (names in lower case) and its content."""

    number: int
    headers: dict[str, str]
    content: PartContent

    @property
    def content_type(self) -> ContentType | None:
        header = self.headers.get("content-type")
        return ContentType.parse(header) if header is not None else None


class _Reader:
    """A read buffer over the body stream that counts bytes against the limit."""

    def __init__(self, stream: BinaryIO, max_bytes: int):
        self.stream = stream
        self.max_bytes = max_bytes
        self.consumed = 0
        # RFC 2046 lets the first delimiter start the body; a CRLF in front
        # lets every delimiter be searched for as CRLF "--" boundary.
        self.buffer = bytearray(CRLF)
        self.at_end = False

    def fill(self) -> bool:
        """Read one more chunk; return False at the end of the body."""
        if self.at_end:
            return False
        chunk = self.stream.read(READ_SIZE)
        if not chunk:
            self.at_end = True
            return False
        self.consumed += len(chunk)
        if self.consumed > self.max_bytes:
            raise BodyTooLarge(self.max_bytes)
        self.buffer += chunk
        return True

    def require(self, size: int) -> bool:
        """Read until the buffer has `size` bytes; return False when the body ends first."""
        while len(self.buffer) < size:
            if not self.fill():
                return False
        return True

    def take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def iter_parts(stream: BinaryIO, boundary: bytes, *, max_bytes: int, temporary_dir: Path | None = None) -> Iterator[Part]:
    """Yield the parts of a multipart body read from `stream`, each once its delimiter has arrived.

    The caller owns each part's content and closes it. Raise MalformedMultipart
    for a body without a first delimiter, a truncated part, a missing close
    delimiter or no parts at all, and BodyTooLarge past `max_bytes`.
    """
    reader = _Reader(stream, max_bytes)
    delimiter = CRLF + b"--" + boundary
    _skip_preamble(reader, delimiter)

    number = 0
    while not _read_delimiter_end(reader, number):
        number += 1
        headers = _read_headers(reader, number)
        content = PartContent(temporary_dir)
        try:
            _read_content(reader, delimiter, content, number)
        except BaseException:
            content.close()
            raise
        yield Part(number, headers, content)
    if number == 0:
        raise MalformedMultipart("the body contains no parts; send at least one application/dicom part")


def _skip_preamble(reader: _Reader, delimiter: bytes) -> None:
    while True:
        position = reader.buffer.find(delimiter)
        if position >= 0:
            del reader.buffer[: position + len(delimiter)]
            return
        # Keep a tail that may be the start of the delimiter.
        del reader.buffer[: max(0, len(reader.buffer) - len(delimiter) + 1)]
        if not reader.fill():
            raise MalformedMultipart("the body does not contain the boundary of its Content-Type")


def _read_delimiter_end(reader: _Reader, parts_read: int) -> bool:
    """Read what follows a delimiter; return True for the close delimiter ``--``, False when a part follows."""
    if not reader.require(2):
        raise MalformedMultipart(f"the body ends after part {parts_read} without the close delimiter (the boundary followed by --)")
    if reader.buffer[:2] == b"--":
        return True
    # RFC 2046 5.1.1: transport padding (spaces and tabs) may precede the CRLF.
    while True:
        stripped = reader.buffer.lstrip(b" \t")
        if stripped[:2] == CRLF:
            del reader.buffer[: len(reader.buffer) - len(stripped) + 2]
            return False
        if len(stripped) >= 2 or not reader.fill():
            raise MalformedMultipart(f"the boundary after part {parts_read} is followed by other text than CRLF or --")


def _read_headers(reader: _Reader, number: int) -> dict[str, str]:
    # A part without headers starts with the empty line at once.
    if not reader.require(2):
        raise MalformedMultipart(f"the body ends in the headers of part {number}")
    if reader.buffer[:2] == CRLF:
        del reader.buffer[:2]
        return {}
    while (end := reader.buffer.find(CRLF + CRLF)) < 0:
        if len(reader.buffer) > MAX_HEADER_BLOCK:
            raise MalformedMultipart(f"the headers of part {number} are longer than {MAX_HEADER_BLOCK} bytes")
        if not reader.fill():
            raise MalformedMultipart(f"the body ends in the headers of part {number}")
    block = reader.take(end + 4)[:end]
    return _parse_header_block(block, number)


def _parse_header_block(block: bytes, number: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MalformedMultipart(f"part {number} has a header line without a name and colon: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_content(reader: _Reader, delimiter: bytes, content: PartContent, number: int) -> None:
    while True:
        position = reader.buffer.find(delimiter)
        if position >= 0:
            content.write(reader.buffer[:position])
            del reader.buffer[: position + len(delimiter)]
            return
        keep = len(delimiter) - 1
        if len(reader.buffer) > keep:
            safe = len(reader.buffer) - keep
            content.write(reader.buffer[:safe])
            del reader.buffer[:safe]
        if not reader.fill():
            raise MalformedMultipart(f"part {number} is truncated: the body ends before its closing boundary")
