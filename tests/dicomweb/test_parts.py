"""Encoding multipart/related response bodies."""

from __future__ import annotations

import email.parser
import email.policy

from telerad.dicomweb.parts import Part, multipart_chunks

BOUNDARY = "b0undary"


def parse(body: bytes) -> list[tuple[str, bytes]]:
    """Decode `body` with the standard library's MIME parser; return each part's Content-Type and content."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}\r\n\r\n'.encode() + body
    )
    return [(part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_parts()]


def test_chunks_encode_each_part_intact():
    parts = [Part("application/dicom", [b"first", b" file"]), Part("application/dicom", []), Part("application/octet-stream", [b"\r\n--b0undar"])]

    body = b"".join(multipart_chunks(parts, BOUNDARY))

    assert parse(body) == [("application/dicom", b"first file"), ("application/dicom", b""), ("application/octet-stream", b"\r\n--b0undar")]
    assert body.endswith(b"--b0undary--\r\n")


def test_chunks_join_delimiters_to_content():
    parts = [Part("application/dicom", [b"a" * 100]), Part("application/dicom", [b"b" * 50, b"c" * 50])]

    chunks = list(multipart_chunks(parts, BOUNDARY))

    # One chunk per content chunk, and the close delimiter.
    assert len(chunks) == 4
    assert chunks[0].startswith(b"--b0undary\r\nContent-Type: application/dicom\r\n\r\n")
    assert chunks[0].endswith(b"a" * 100)
    assert chunks[1].startswith(b"\r\n--b0undary\r\n")
    assert chunks[2] == b"c" * 50
    assert chunks[3] == b"\r\n--b0undary--\r\n"
