"""The structural scan: what it extracts and what it rejects."""

from __future__ import annotations

import struct
import zlib

import pytest
from pydicom import dcmread

from telerad.archive import header
from telerad.archive.record import WANTED_TAGS

SOP_INSTANCE_UID = 0x00080018
PATIENT_NAME = 0x00100010


def scan_file(data: bytes) -> dict[int, header.RawValue]:
    meta = header.read_file_meta(data)
    assert meta is not None
    encoding = header.Encoding.of(meta.text(0x00020010))
    buffer, start = header.dataset_bytes(data, meta.dataset_offset, encoding)
    return header.scan(buffer, start, encoding, WANTED_TAGS)


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "nested_priv_SQ.dcm"],
)
def test_scan_finds_sop_instance_uid_in_every_encoding(sample_file, name):
    path = sample_file(name)
    expected = dcmread(path, stop_before_pixels=True).get("SOPInstanceUID", "")

    values = scan_file(path.read_bytes())

    found = values.get(SOP_INSTANCE_UID)
    assert (found.value.rstrip(b"\x00 ").decode() if found else "") == expected


def test_scan_rejects_truncated_pixel_data(sample_file):
    data = sample_file("CT_small.dcm").read_bytes()

    with pytest.raises(header.MalformedDataset, match=r"\(7FE0,0010\) truncated"):
        scan_file(data[:-1000])


def test_scan_rejects_truncated_encapsulated_pixel_data(sample_file):
    # Encapsulated pixel data is the last element of this RLE file.
    data = sample_file("SC_rgb_rle.dcm").read_bytes()

    with pytest.raises(header.MalformedDataset, match=r"\(7FE0,0010\)"):
        scan_file(data[:-100])


def test_scan_rejects_truncated_sequence(sample_file):
    data = sample_file("rtplan_truncated.dcm").read_bytes()

    with pytest.raises(header.MalformedDataset, match="truncated"):
        scan_file(data)


def test_scan_rejects_unknown_explicit_vr(sample_file):
    data = bytearray(sample_file("CT_small.dcm").read_bytes())
    meta = header.read_file_meta(bytes(data))
    # The first dataset element's VR sits 4 bytes after its start.
    data[meta.dataset_offset + 4:meta.dataset_offset + 6] = b"ZZ"

    with pytest.raises(header.MalformedDataset, match="invalid VR b'ZZ'"):
        scan_file(bytes(data))


def test_scan_rejects_elements_out_of_order(sample_file):
    data = sample_file("CT_small.dcm").read_bytes()
    meta = header.read_file_meta(data)
    first = data[meta.dataset_offset:]
    # Repeat the first element (a short explicit VR one) so that a tag follows itself.
    length = struct.unpack_from("<H", first, 6)[0]
    element = first[: 8 + length]

    with pytest.raises(header.MalformedDataset, match="out of order"):
        scan_file(data[: meta.dataset_offset] + element + first)


def test_scan_rejects_data_that_is_not_deflated(sample_file):
    data = bytearray(sample_file("image_dfl.dcm").read_bytes())
    meta = header.read_file_meta(bytes(data))
    data[meta.dataset_offset:meta.dataset_offset + 16] = b"\xff" * 16

    with pytest.raises(header.MalformedDataset, match="cannot be inflated"):
        scan_file(bytes(data))


def test_deflated_dataset_is_inflated_before_scan(sample_file):
    data = sample_file("image_dfl.dcm").read_bytes()
    meta = header.read_file_meta(data)
    inflated = zlib.decompress(data[meta.dataset_offset:], -zlib.MAX_WBITS)

    buffer, start = header.dataset_bytes(data, meta.dataset_offset, header.Encoding.of(meta.text(0x00020010)))

    assert (bytes(buffer), start) == (inflated, 0)


def test_read_file_meta_returns_none_without_prefix(sample_file):
    assert header.read_file_meta(sample_file("ExplVR_LitEndNoMeta.dcm").read_bytes()) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("MR_small.dcm", "1.2.840.10008.1.2.1"), ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"), ("MR_small_implicit.dcm", "1.2.840.10008.1.2")],
)
def test_guess_transfer_syntax_of_bare_datasets(sample_file, name, expected):
    data = sample_file(name).read_bytes()
    bare = data[header.read_file_meta(data).dataset_offset:]

    assert header.guess_transfer_syntax(bare) == expected


def test_guess_transfer_syntax_rejects_text():
    assert header.guess_transfer_syntax(b"This is a plain text file, not DICOM.\n") is None
