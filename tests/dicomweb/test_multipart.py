"""Streaming multipart/related parser (RFC 2046 5.1)."""

from __future__ import annotations

import io

import pytest

from telerad.dicomweb import multipart

BOUNDARY = b"b0undary"


def parse(body: bytes, *, max_bytes: int = 1 << 30, temporary_dir=None) -> list[tuple[dict[str, str], bytes]]:
    parsed = []
    for part in multipart.iter_parts(io.BytesIO(body), BOUNDARY, max_bytes=max_bytes, temporary_dir=temporary_dir):
        with part.content.buffer() as buffer:
            parsed.append((part.headers, bytes(buffer)))
        part.content.close()
    return parsed


def test_parts_with_preamble_padding_and_epilogue():
    body = (
        b"preamble to ignore\r\n--b0undary  \t\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
        b"--b0undary\r\n\r\nsecond without headers\r\n--b0undary--\r\nepilogue to ignore"
    )

    assert parse(body) == [({"content-type": "application/dicom"}, b"first"), ({}, b"second without headers")]


@pytest.mark.parametrize("read_size", [1, 3, 7, 64])
def test_delimiters_split_across_reads(monkeypatch, read_size):
    monkeypatch.setattr(multipart, "READ_SIZE", read_size)
    # Content that contains CRLF and dashes and a boundary prefix, but not the delimiter.
    content = b"a\r\n--b0und\r\n--b0undar-\r\n" * 5
    body = b"--b0undary\r\n\r\n" + content + b"\r\n--b0undary\r\n\r\nz\r\n--b0undary--"

    assert parse(body) == [({}, content), ({}, b"z")]


def test_large_part_spills_to_temporary_file(monkeypatch, tmp_path):
    monkeypatch.setattr(multipart, "PART_MEMORY_LIMIT", 1000)
    content = bytes(range(256)) * 40
    body = b"--b0undary\r\n\r\n" + content + b"\r\n--b0undary--"

    assert parse(body, temporary_dir=tmp_path) == [({}, content)]


def test_body_over_limit_raises_while_streaming():
    body = b"--b0undary\r\n\r\n" + b"x" * 5000 + b"\r\n--b0undary--"

    with pytest.raises(multipart.BodyTooLarge, match="limit of 1000 bytes"):
        parse(body, max_bytes=1000)


def test_boundary_of_rejects_overlong_boundary():
    content_type = multipart.ContentType.parse(f'multipart/related; type="application/dicom"; boundary="{"x" * 71}"')

    with pytest.raises(multipart.MalformedMultipart, match="1 to 70"):
        multipart.boundary_of(content_type)


def test_content_type_reads_quoted_parameters():
    content_type = multipart.ContentType.parse('Multipart/Related; Type="application/dicom"; boundary="a b"')

    assert content_type.media_type == "multipart/related"
    assert content_type.parameters == {"type": "application/dicom", "boundary": "a b"}
