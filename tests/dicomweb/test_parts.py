"""Encoding multipart/related response bodies."""

from __future__ import annotations

import email.parser
import email.policy

import pytest

from telerad.dicomweb import parts as parts_module
from telerad.dicomweb.parts import Part, file_chunks, file_part, multipart_chunks, multipart_length

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


def test_length_matches_encoded_body():
    parts = [Part("application/dicom", [b"first", b" file"], length=10), Part("application/octet-stream", [], length=0)]

    assert multipart_length(parts, BOUNDARY) == len(b"".join(multipart_chunks(parts, BOUNDARY)))
    assert multipart_length([], BOUNDARY) == len(b"".join(multipart_chunks([], BOUNDARY)))


def test_length_unknown_without_part_length():
    parts = [Part("application/dicom", [b"known"], length=5), Part("application/dicom", [b"transcoded"])]

    assert multipart_length(parts, BOUNDARY) is None


def test_file_part_reads_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(parts_module, "READ_SIZE", 4)
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"0123456789")

    part = file_part("application/dicom", path)

    assert part.length == 10
    assert list(part.chunks) == [b"0123", b"4567", b"89"]


def test_file_part_stops_on_resized_file(tmp_path):
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"0123456789")
    part = file_part("application/dicom", path)

    path.write_bytes(b"012345")

    with pytest.raises(OSError, match="6 bytes now, 10 were announced"):
        list(part.chunks)


def test_file_chunks_reads_a_range(tmp_path):
    path = tmp_path / "instance.dcm"
    path.write_bytes(b"0123456789")

    assert b"".join(file_chunks(path, offset=3, length=4)) == b"3456"
    assert b"".join(file_chunks(path, offset=8)) == b"89"
    with pytest.raises(OSError, match="ended 2 bytes before"):
        list(file_chunks(path, offset=6, length=6))
