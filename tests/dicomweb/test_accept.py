"""Accept header parsing and choice of media type (PS3.18 8.7)."""

from __future__ import annotations

import pytest

from telerad.dicomweb.accept import Offer, choose, format_media_type, not_acceptable, parse_accept
from telerad.dicomweb.http import DicomwebError

DICOM = Offer("multipart/related", {"type": "application/dicom", "transfer-syntax": "1.2.840.10008.1.2.4.50"})
DICOM_EXPLICIT = Offer("multipart/related", {"type": "application/dicom", "transfer-syntax": "1.2.840.10008.1.2.1"})
JPEG = Offer("image/jpeg")
PNG = Offer("image/png")


def test_parse_accept_reads_parameters_and_quality():
    (media_range,) = parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*; q=0.7')

    assert media_range.media_type == "multipart/related"
    assert media_range.parameters == {"type": "application/dicom", "transfer-syntax": "*"}
    assert media_range.quality == 0.7


def test_parse_accept_treats_an_empty_header_as_anything():
    assert choose("", [PNG, JPEG]) == (PNG, parse_accept("*/*")[0])


@pytest.mark.parametrize(
    ("header", "named"),
    [("jpeg", "'jpeg'"), ("*/png", "'*/png'"), ("image/png; q=2", "'2'"), ("image/png; q=high", "'high'"), ("image/png; level", "'level'"), ("multipart/related; type=", "'type='")],
)
def test_parse_accept_names_the_malformed_element(header, named):
    with pytest.raises(DicomwebError) as raised:
        parse_accept(header)

    assert raised.value.status == 400
    assert named in raised.value.message


@pytest.mark.parametrize("header", ["multipart/related; type=", "multipart/related; type= ; transfer-syntax=*", "image/png; q="])
def test_parse_accept_rejects_empty_value(header):
    with pytest.raises(DicomwebError) as raised:
        parse_accept(header)

    assert raised.value.status == 400
    assert "has no value" in raised.value.message


def test_parse_accept_keeps_empty_quoted_value():
    (media_range,) = parse_accept('multipart/related; type=""')

    assert media_range.parameters == {"type": ""}


def test_choose_prefers_the_higher_quality():
    offer, _range = choose("image/jpeg;q=0.5, image/png", [JPEG, PNG])

    assert offer == PNG


def test_choose_keeps_the_server_order_on_equal_quality():
    offer, _range = choose("image/*", [JPEG, PNG])

    assert offer == JPEG


def test_choose_matches_the_transfer_syntax_parameter():
    header = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'

    offer, _range = choose(header, [DICOM, DICOM_EXPLICIT])

    assert offer == DICOM_EXPLICIT


def test_choose_takes_the_most_specific_range_quality():
    # image/png is refused outright even though image/* would accept it.
    offer, _range = choose("image/*, image/png;q=0", [PNG, JPEG])

    assert offer == JPEG


def test_choose_returns_none_when_nothing_fits():
    assert choose("application/pdf", [JPEG, PNG]) is None


@pytest.mark.parametrize(("header", "chosen"), [('multipart/related; type="*/*"', DICOM), ('multipart/related; type="image/*"', None), ('multipart/related; type="application/*"', DICOM)])
def test_choose_type_parameter_range(header, chosen):
    choice = choose(header, [DICOM, DICOM_EXPLICIT])

    assert (choice[0] if choice else None) == chosen


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1"),
        ("*", "*"),
        ("application/dicom", '"application/dicom"'),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi" \\ bye', '"say \\"hi\\" \\\\ bye"'),
    ],
)
def test_format_media_type_quotes_non_tokens(value, written):
    assert format_media_type("multipart/related", {"type": value}) == f"multipart/related; type={written}"


def test_not_acceptable_lists_quoted_values():
    error = not_acceptable("image/png", [DICOM, JPEG])

    assert error.status == 406
    assert "(image/png)" in error.message
    assert 'Available: multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50, image/jpeg' in error.message
