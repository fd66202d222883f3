"""Matching queries against the archive index (PS3.4 C.2.2.2), on stored sample files."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from pydicom import dcmread
from pydicom.uid import generate_uid

from telerad.archive import index, ingest, query
from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.query import InvalidQuery, Root, compile_query
from telerad.archive.storage import FileStorage
from tests.conftest import pydicom_charset_files, pydicom_data_files, pydicom_test_files

# The samples are stored once for the module and only read by the tests,
# which run in transactions that are rolled back.
pytestmark = pytest.mark.django_db
IMPORT = ingest.Source(kind="import", user="tester")

SAMPLES = (
    "CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm", "liver.dcm", "OBXXXX1A.dcm", "waveform_ecg.dcm",
)
CHARSET_SAMPLES = (
    "chrArab.dcm", "chrFren.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm",
    "chrI2.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm", "chrRuss.dcm", "chrX1.dcm", "chrX2.dcm",
)
ALL_SAMPLES = frozenset(SAMPLES + CHARSET_SAMPLES)
# Samples whose file meta names another instance's SOP Instance UID, which ingest rejects.
WRONG_FILE_META = {"chrJapMulti.dcm"}
SCS_SAMPLES = {"chrArab.dcm", "chrFren.dcm", "chrGerm.dcm", "chrGreek.dcm", "chrHbrw.dcm", "chrRuss.dcm"}


def sample_path(name: str) -> Path:
    for folder in (pydicom_test_files(), pydicom_charset_files(), pydicom_data_files()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no sample file named {name}")


def sample_bytes(name: str, folder: Path) -> bytes:
    if name not in WRONG_FILE_META:
        return sample_path(name).read_bytes()
    # Elements left unread are written back byte for byte.
    ds = dcmread(sample_path(name))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / name, enforce_file_format=True)
    return (folder / name).read_bytes()


@pytest.fixture(scope="module")
def archive(django_db_setup, django_db_blocker, tmp_path_factory) -> dict[str, str]:
    """Store every sample; return the file name of each StudyInstanceUID."""
    folder = tmp_path_factory.mktemp("archive")
    storage = FileStorage(folder / "storage", folder / "tmp")
    with django_db_blocker.unblock():
        studies = {}
        for name in SAMPLES + CHARSET_SAMPLES:
            # A series cached by an earlier module may have been deleted since.
            index.forget_series(str(dcmread(sample_path(name), stop_before_pixels=True).SeriesInstanceUID))
            result = ingest.store_file(sample_bytes(name, folder), source=IMPORT, storage=storage)
            assert result.outcome is ingest.Outcome.STORED, f"{name}: {result.reason}"
            studies[result.study_instance_uid] = name
        yield studies
        for model in (Instance, Series, Study, Patient):
            model.objects.all().delete()


def study_uid(name: str) -> str:
    return str(dcmread(sample_path(name), stop_before_pixels=True).StudyInstanceUID)


def describe(value: object) -> str:
    """Name a table case in the test report."""
    if isinstance(value, dict):
        return " ".join(f"{keyword}={text}" for keyword, text in value.items())
    if isinstance(value, (set, frozenset)):
        return f"{len(value)} studies"
    return str(value)


def matching_studies(archive: dict[str, str], identifier: dict[str, str], **options) -> set[str]:
    compiled = compile_query("STUDY", {"StudyInstanceUID": "", **identifier}, **options)
    return {archive[row["StudyInstanceUID"]] for row in compiled.rows()}


SINGLE_VALUE_CASES = [
    ({"PatientID": "1CT1"}, {"CT_small.dcm"}),
    ({"PatientID": "1ct1"}, set()),
    ({"AccessionNumber": "03086212"}, {"liver.dcm"}),
    ({"StudyID": "1"}, {"SC_rgb.dcm", "liver.dcm", "waveform_ecg.dcm"}),
    ({"PatientSex": "F"}, {"MR_small.dcm", "SC_rgb.dcm", "waveform_ecg.dcm"}),
    ({"PatientSex": "f"}, set()),
    ({"StudyDescription": "Chest"}, {"chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
    ({"StudyDescription": "chest"}, set()),
    ({"PatientID": "  1CT1 "}, {"CT_small.dcm"}),
    ({"PatientSex": "M\\F"}, {"MR_small.dcm", "SC_rgb.dcm", "waveform_ecg.dcm", "liver.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
]


@pytest.mark.parametrize(("identifier", "expected"), SINGLE_VALUE_CASES, ids=describe)
def test_single_value_matching(archive, identifier, expected):
    assert matching_studies(archive, identifier) == expected


WILDCARD_CASES = [
    ({"PatientID": "SCS*"}, SCS_SAMPLES),
    ({"PatientID": "?CT1"}, {"CT_small.dcm"}),
    ({"PatientID": "H3?EXAMPLE"}, {"chrH31.dcm", "chrH32.dcm"}),
    ({"PatientID": "2008-?"}, {"chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
    ({"PatientID": "*-*-*-*"}, {"OBXXXX1A.dcm"}),
    ({"AccessionNumber": "0302*"}, {"waveform_ecg.dcm"}),
    ({"PatientID": "scs*"}, set()),
    # SQL LIKE and GLOB special characters match only themselves.
    ({"PatientID": "SCS_REN*"}, set()),
    ({"PatientID": "SCS%*"}, set()),
    ({"PatientID": "H3[12]EXAMPLE*"}, set()),
    ({"PatientID": "*"}, ALL_SAMPLES),
]


@pytest.mark.parametrize(("identifier", "expected"), WILDCARD_CASES, ids=describe)
def test_wildcard_matching(archive, identifier, expected):
    assert matching_studies(archive, identifier) == expected


RANGE_CASES = [
    ({"StudyDate": "20040119"}, {"CT_small.dcm"}),
    ({"StudyDate": "20040101-20041231"}, {"CT_small.dcm", "MR_small.dcm"}),
    ({"StudyDate": "2004"}, {"CT_small.dcm", "MR_small.dcm"}),
    ({"StudyDate": "200408"}, {"MR_small.dcm"}),
    ({"StudyDate": "-20031231"}, {"liver.dcm", "emri_small.dcm"}),
    ({"StudyDate": "20130101-"}, {"SC_rgb.dcm", "waveform_ecg.dcm"}),
    ({"PatientBirthDate": "-19800101"}, {"waveform_ecg.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
    ({"StudyTime": "0700-0800"}, {"CT_small.dcm"}),
    ({"StudyTime": "0727"}, {"CT_small.dcm"}),
    ({"StudyTime": "-0800"}, {"CT_small.dcm"}),
    ({"StudyTime": "1800-"}, {"MR_small.dcm"}),
    ({"StudyTime": "17"}, {"chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
    ({"StudyTime": "14:28:25"}, {"OBXXXX1A.dcm"}),
]


@pytest.mark.parametrize(("identifier", "expected"), RANGE_CASES, ids=describe)
def test_range_matching(archive, identifier, expected):
    assert matching_studies(archive, identifier) == expected


def test_date_and_time_ranges_match_apart_by_default(archive):
    identifier = {"StudyDate": "20030101-20040826", "StudyTime": "1000-1200"}

    assert matching_studies(archive, identifier) == {"liver.dcm"}


def test_combined_datetime_matching_spans_days(archive):
    # From 2003-01-01 10:00 to 2004-08-26 12:00: MR_small at 18:50 on the last day is after the end.
    identifier = {"StudyDate": "20030101-20040826", "StudyTime": "1000-1200"}

    assert matching_studies(archive, identifier, combined_datetime=True) == {"liver.dcm", "CT_small.dcm"}


def test_list_of_uids_matching(archive):
    uids = [study_uid("CT_small.dcm"), study_uid("MR_small.dcm")]

    assert matching_studies(archive, {"StudyInstanceUID": "\\".join(uids)}) == {"CT_small.dcm", "MR_small.dcm"}


def test_universal_matching_returns_every_study(archive):
    assert matching_studies(archive, {"PatientName": ""}) == ALL_SAMPLES


MODALITIES_CASES = [
    ("MR", {"MR_small.dcm", "emri_small.dcm"}),
    ("CT\\MR", {"CT_small.dcm", "MR_small.dcm", "emri_small.dcm"}),
    ("SE?", {"liver.dcm"}),
    ("CR", {"chrJapMulti.dcm", "chrKoreanMulti.dcm"}),
    ("XA", set()),
]


@pytest.mark.parametrize(("modalities", "expected"), MODALITIES_CASES, ids=describe)
def test_modalities_in_study_matches_any_series(archive, modalities, expected):
    assert matching_studies(archive, {"ModalitiesInStudy": modalities}) == expected


PERSON_NAME_CASES = [
    ("buc*", {"chrFren.dcm"}),
    ("BUC^JEROME", {"chrFren.dcm"}),
    ("Buc^Jérôme", {"chrFren.dcm"}),
    ("buc", set()),
    ("aneas^rudiger", {"chrGerm.dcm"}),
    ("ΔΙΟΝΥΣΙΟΣ", {"chrGreek.dcm"}),
    ("ЛЮКCEМБYPГ", {"chrRuss.dcm"}),
    ("قباني^لنزار", {"chrArab.dcm"}),
    ("שרון^דבורה", {"chrHbrw.dcm"}),
    ("Yamada^Tarou", {"chrH31.dcm"}),
    ("山田^太郎", {"chrH31.dcm", "chrH32.dcm"}),
    ("やまだ^たろう", {"chrH31.dcm", "chrH32.dcm", "chrJapMulti.dcm"}),
    ("=山田^太郎", {"chrH31.dcm", "chrH32.dcm"}),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", {"chrH31.dcm"}),
    ("홍^길동", {"chrI2.dcm"}),
    ("김희중", {"chrKoreanMulti.dcm"}),
    ("王^小東", {"chrX1.dcm"}),
    ("王^小东", {"chrX2.dcm"}),
    ("wang^xiaodong", {"chrX1.dcm", "chrX2.dcm"}),
    ("OB", {"OBXXXX1A.dcm"}),
    ("compressedsamples^*", {"CT_small.dcm", "MR_small.dcm"}),
]


@pytest.mark.parametrize(("name", "expected"), PERSON_NAME_CASES, ids=describe)
def test_person_name_ignores_case_and_accents(archive, name, expected):
    assert matching_studies(archive, {"PatientName": name}) == expected


def test_referring_physician_name_is_folded(archive):
    assert matching_studies(archive, {"ReferringPhysicianName": "moriarty*"}) == {"SC_rgb.dcm"}


FUZZY_CASES = [
    ("jerome", {"chrFren.dcm"}),
    ("tarou yamada", {"chrH31.dcm"}),
    ("rud", {"chrGerm.dcm"}),
    ("lestrade g", {"SC_rgb.dcm"}),
]


@pytest.mark.parametrize(("name", "expected"), FUZZY_CASES, ids=describe)
def test_fuzzy_name_matches_word_starts(archive, name, expected):
    assert matching_studies(archive, {"PatientName": name}, fuzzy_names=True) == expected
    assert matching_studies(archive, {"PatientName": name}) == set()


@pytest.mark.parametrize("name", sorted(CHARSET_SAMPLES))
def test_names_return_in_unicode(archive, name):
    expected = str(dcmread(sample_path(name)).PatientName)

    compiled = compile_query("STUDY", {"StudyInstanceUID": study_uid(name), "PatientName": ""})

    assert [row["PatientName"] for row in compiled.rows()] == [expected]


INVALID_CASES = [
    ("STUDY", {"StudyDate": "2020-13-01"}, "StudyDate"),
    ("STUDY", {"StudyDate": "20201301"}, "StudyDate"),
    ("STUDY", {"StudyDate": "20040101-20031231"}, "StudyDate"),
    ("STUDY", {"StudyDate": "2004*"}, "StudyDate"),
    ("STUDY", {"StudyDate": "-"}, "StudyDate"),
    ("STUDY", {"StudyTime": "2500"}, "StudyTime"),
    ("STUDY", {"StudyTime": "1200-1000"}, "StudyTime"),
    ("STUDY", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
    ("STUDY", {"StudyInstanceUID": "1.2.*"}, "StudyInstanceUID"),
    ("STUDY", {"StudyInstanceUID": "1.2.3\\1.02.3"}, "StudyInstanceUID"),
    ("STUDY", {"NumberOfStudyRelatedInstances": "many"}, "NumberOfStudyRelatedInstances"),
    ("STUDY", {"NotAKeyword": ""}, "NotAKeyword"),
    ("SERIES", {"StudyInstanceUID": "1.2.3", "SeriesNumber": "abc"}, "SeriesNumber"),
    ("SERIES", {"SeriesInstanceUID": ""}, "StudyInstanceUID"),
    ("SERIES", {"StudyInstanceUID": "1.2.*"}, "StudyInstanceUID"),
    ("IMAGE", {"StudyInstanceUID": "1.2.3"}, "SeriesInstanceUID"),
    ("PATIENT", {"PatientID": ""}, "QueryRetrieveLevel"),
    ("STUDIES", {"PatientID": ""}, "QueryRetrieveLevel"),
]


@pytest.mark.parametrize(("level", "identifier", "keyword"), INVALID_CASES, ids=describe)
def test_invalid_query_names_keyword(level, identifier, keyword):
    with pytest.raises(InvalidQuery) as raised:
        compile_query(level, identifier)

    assert raised.value.keyword == keyword


def test_patient_root_study_level_needs_patient_id():
    with pytest.raises(InvalidQuery) as raised:
        compile_query("STUDY", {"StudyInstanceUID": ""}, root=Root.PATIENT)

    assert raised.value.keyword == "PatientID"


def test_invalid_query_message_leaves_out_value():
    with pytest.raises(InvalidQuery) as raised:
        compile_query("STUDY", {"PatientBirthDate": "19710123-19700101"})

    assert "1971" not in str(raised.value)
    assert str(raised.value).startswith("PatientBirthDate: ")


def test_rows_carry_only_requested_keys(archive):
    identifier = {"StudyInstanceUID": study_uid("CT_small.dcm"), "PatientName": "", "OtherPatientIDs": ""}

    compiled = compile_query("STUDY", identifier)

    assert list(compiled.rows()) == [{"StudyInstanceUID": identifier["StudyInstanceUID"], "PatientName": "CompressedSamples^CT1"}]
    assert compiled.empty_keys == ("OtherPatientIDs",)
    assert compiled.unmatched_keys == ()


def test_unsupported_key_with_value_is_unmatched(archive):
    compiled = compile_query("STUDY", {"PatientID": "1CT1", "OtherPatientIDs": "X*", "ReferencedStudySequence": ["item"]})

    assert compiled.empty_keys == ("OtherPatientIDs", "ReferencedStudySequence")
    assert compiled.unmatched_keys == ("OtherPatientIDs", "ReferencedStudySequence")
    assert compiled.queryset.count() == 1


def test_study_counters_are_returned(archive):
    identifier = {
        "StudyInstanceUID": study_uid("CT_small.dcm"),
        "ModalitiesInStudy": "", "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "",
    }

    [row] = compile_query("STUDY", identifier).rows()

    assert row["ModalitiesInStudy"] == "CT"
    assert row["NumberOfStudyRelatedSeries"] == 1
    assert row["NumberOfStudyRelatedInstances"] == 1


def test_patient_level_counts_studies(archive, storage, tmp_path):
    ds = dcmread(sample_path("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.save_as(tmp_path / "second.dcm", enforce_file_format=True)
    ingest.store_file((tmp_path / "second.dcm").read_bytes(), source=IMPORT, storage=storage)
    identifier = {
        "PatientName": "compressedsamples^ct1", "PatientID": "",
        "NumberOfPatientRelatedStudies": "", "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": "",
    }

    rows = list(compile_query("PATIENT", identifier, root=Root.PATIENT).rows())

    assert rows == [{
        "PatientName": "CompressedSamples^CT1", "PatientID": "1CT1",
        "NumberOfPatientRelatedStudies": 2, "NumberOfPatientRelatedSeries": 2, "NumberOfPatientRelatedInstances": 2,
    }]


def test_patient_total_can_be_matched(archive):
    compiled = compile_query("PATIENT", {"PatientID": "1CT1", "NumberOfPatientRelatedStudies": "1"}, root=Root.PATIENT)

    assert compiled.queryset.count() == 1


def test_patient_root_study_level_returns_patient_keys(archive):
    compiled = compile_query("STUDY", {"PatientID": "4MR1", "PatientName": "", "StudyDate": ""}, root=Root.PATIENT)

    assert list(compiled.rows()) == [{"PatientID": "4MR1", "PatientName": "CompressedSamples^MR1", "StudyDate": "20040826"}]


def test_series_level_returns_series_keys(archive):
    identifier = {
        "StudyInstanceUID": study_uid("emri_small.dcm"),
        "Modality": "", "SeriesNumber": "", "NumberOfSeriesRelatedInstances": "", "BodyPartExamined": "",
    }

    rows = list(compile_query("SERIES", identifier).rows())

    assert rows == [{
        "StudyInstanceUID": identifier["StudyInstanceUID"], "Modality": "MR", "SeriesNumber": 301,
        "NumberOfSeriesRelatedInstances": 1, "BodyPartExamined": "HEAD",
    }]


def test_integer_string_matches_as_number(archive):
    identifier = {"StudyInstanceUID": study_uid("emri_small.dcm"), "SeriesNumber": "0301"}

    assert compile_query("SERIES", identifier).queryset.count() == 1


def test_image_level_returns_instance_keys(archive):
    ds = dcmread(sample_path("CT_small.dcm"), stop_before_pixels=True)
    identifier = {
        "StudyInstanceUID": ds.StudyInstanceUID, "SeriesInstanceUID": ds.SeriesInstanceUID,
        "SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": "", "Rows": "", "Columns": "",
    }

    rows = list(compile_query("IMAGE", identifier).rows())

    assert rows == [{
        "StudyInstanceUID": ds.StudyInstanceUID, "SeriesInstanceUID": ds.SeriesInstanceUID,
        "SOPInstanceUID": ds.SOPInstanceUID, "SOPClassUID": ds.SOPClassUID, "InstanceNumber": 1, "Rows": 128, "Columns": 128,
    }]


def test_relational_query_matches_lower_levels(archive):
    assert matching_studies(archive, {"Modality": "MR"}, relational=True) == {"MR_small.dcm", "emri_small.dcm"}


def test_hierarchical_query_leaves_lower_levels_unmatched(archive):
    compiled = compile_query("STUDY", {"StudyInstanceUID": "", "Modality": "MR"})

    assert compiled.unmatched_keys == ("Modality",)
    assert compiled.empty_keys == ("Modality",)
    assert compiled.queryset.count() == len(ALL_SAMPLES)


def test_relational_series_query_needs_no_study(archive):
    compiled = compile_query("SERIES", {"Modality": "CR", "SeriesInstanceUID": ""}, relational=True)

    assert compiled.queryset.count() == 2


def test_relational_patient_query_matches_study_dates(archive):
    compiled = compile_query("PATIENT", {"PatientID": "", "StudyDate": "2004"}, root=Root.PATIENT, relational=True)

    assert {row["PatientID"] for row in compiled.rows()} == {"1CT1", "4MR1"}


def test_limit_and_offset_page_newest_first(archive):
    compiled = compile_query("STUDY", {"StudyDate": "20000101-", "PatientID": ""})

    assert [row["PatientID"] for row in compiled.rows(limit=3, offset=1)] == ["642341", "11-05-25-142825", "2008-3"]
    assert len(list(compiled.rows(offset=compiled.queryset.count() - 1))) == 1
    assert len(list(compiled.rows(limit=0))) == 0


def test_patient_name_found_by_later_group_and_wildcard(archive):
    assert matching_studies(archive, {"PatientName": "やまだ*"}) == {"chrH31.dcm", "chrH32.dcm", "chrJapMulti.dcm"}
    assert matching_studies(archive, {"PatientName": "yamada^*"}) == {"chrH31.dcm"}


def patient_name_plan(value: str) -> str:
    """Return the database's plan for a study query on PatientName, with table scans disabled on PostgreSQL."""
    compiled = compile_query("STUDY", {"PatientName": value, "StudyInstanceUID": ""})
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # On tables this small a scan is cheaper, so PostgreSQL would rightly prefer it.
            cursor.execute("SET LOCAL enable_seqscan = off")
        return compiled.queryset.values_list("study_instance_uid").explain()


def test_patient_name_query_uses_both_name_indexes(archive):
    plan = patient_name_plan("doe*")

    assert "archive_patient_patient_name_folded" in plan
    assert "patient_name_with_groups" in plan
    if connection.vendor == "sqlite":
        # A range search of the index, not a scan of the whole of it.
        assert "patient_name_folded>?" in plan


@pytest.mark.parametrize("rows_per_fetch", [1, 2, 1000])
def test_unbounded_rows_are_complete_at_any_fetch_size(archive, monkeypatch, rows_per_fetch):
    expected = [row["StudyInstanceUID"] for row in compile_query("STUDY", {"StudyInstanceUID": ""}).rows(limit=1000)]
    monkeypatch.setattr(query, "ROWS_PER_FETCH", rows_per_fetch)

    found = [row["StudyInstanceUID"] for row in compile_query("STUDY", {"StudyInstanceUID": ""}).rows()]

    assert len(expected) > 2
    assert found == expected
