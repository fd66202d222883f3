"""Decoding and validating the index attributes."""

from __future__ import annotations

import pytest
from pydicom import dcmread

from telerad.archive import header, record


def record_of(data: bytes) -> record.InstanceRecord:
    meta = header.read_file_meta(data)
    encoding = header.Encoding.of(meta.text(0x00020010))
    buffer, start = header.dataset_bytes(data, meta.dataset_offset, encoding)
    values = header.scan(buffer, start, encoding, record.WANTED_TAGS)
    return record.build_record(values, little_endian=encoding.little_endian)


def saved(ds, tmp_path) -> bytes:
    path = tmp_path / "modified.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


@pytest.mark.parametrize(
    "name",
    ["chrArab.dcm", "chrFren.dcm", "chrFrenMulti.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm",
     "chrI2.dcm", "chrJapMulti.dcm", "chrJapMultiExplicitIR6.dcm", "chrKoreanMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm"],
)
def test_person_names_match_pydicom_in_every_character_set(sample_file, name):
    path = sample_file(name)
    data = path.read_bytes()
    meta = header.read_file_meta(data)
    encoding = header.Encoding.of(meta.text(0x00020010))
    buffer, start = header.dataset_bytes(data, meta.dataset_offset, encoding)
    values = header.scan(buffer, start, encoding, record.WANTED_TAGS)
    # Some charset samples have no UIDs; decode the name the same way build_record does.
    encodings = record._python_encodings(values.get(record.SPECIFIC_CHARACTER_SET))
    raw = values[record.KEYWORD_TAGS["PatientName"]]

    decoded = record._decode_person_name("PatientName", raw.value, encodings)

    assert decoded == str(dcmread(path).PatientName)


def test_folded_name_ignores_case_and_accents(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jérôme"

    rec = record_of(saved(ds, tmp_path))

    assert rec.patient["patient_name_folded"] == "muller^jerome"


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
def test_missing_required_attribute_is_rejected(sample_file, tmp_path, keyword):
    ds = dcmread(sample_file("CT_small.dcm"))
    delattr(ds, keyword)

    with pytest.raises(record.InvalidAttribute, match=f"{keyword} is missing"):
        record_of(saved(ds, tmp_path))


def test_uid_with_letters_is_rejected(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyInstanceUID = "1.2.3.abc"

    with pytest.raises(record.InvalidAttribute, match="StudyInstanceUID is not a valid UID"):
        record_of(saved(ds, tmp_path))


def test_invalid_date_is_rejected(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyDate = "20231345"

    with pytest.raises(record.InvalidAttribute, match="StudyDate '20231345' is not a date"):
        record_of(saved(ds, tmp_path))


def test_invalid_birth_date_message_omits_value(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.PatientBirthDate = "19991399"

    with pytest.raises(record.InvalidAttribute) as raised:
        record_of(saved(ds, tmp_path))

    assert str(raised.value) == "PatientBirthDate is not a date (DA: YYYYMMDD)"


def test_legacy_dotted_date_is_normalised(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.StudyDate = "2004.01.19"

    assert record_of(saved(ds, tmp_path)).study["study_date"] == "20040119"


def test_invalid_integer_string_is_rejected(sample_file):
    with pytest.raises(record.InvalidAttribute, match="NumberOfFrames '1A' is not an integer string"):
        record_of(sample_file("badVR.dcm").read_bytes())


def test_undecodable_utf8_name_is_rejected(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "placeholder^name"
    # Swap in bytes that are not UTF-8, keeping the encoded length.
    data = saved(ds, tmp_path).replace(b"placeholder^name", b"\xc3\x28bad\xffnam^abcdef")

    with pytest.raises(record.InvalidAttribute, match="PatientName cannot be decoded"):
        record_of(data)


def test_unknown_character_set_is_rejected(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO_IR 999"

    with pytest.raises(record.InvalidAttribute, match="unknown term 'ISO_IR 999'"):
        record_of(saved(ds, tmp_path))


def test_misspelt_character_set_term_is_repaired(sample_file, tmp_path):
    ds = dcmread(sample_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO-IR 100"

    assert record_of(saved(ds, tmp_path)).patient["patient_name"] == str(ds.PatientName)


def test_snake_case_of_keywords():
    assert [record.snake_case(k) for k in ("SOPInstanceUID", "PatientID", "StudyInstanceUID", "IssuerOfPatientID", "NumberOfFrames")] == [
        "sop_instance_uid", "patient_id", "study_instance_uid", "issuer_of_patient_id", "number_of_frames",
    ]
