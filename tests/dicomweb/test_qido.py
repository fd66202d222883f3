"""QIDO-RS searches (PS3.18 10.6) through the Django test client, on stored sample files."""

from __future__ import annotations

import dataclasses
import io
import logging

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pydicom import dcmread
from pydicom.uid import generate_uid

from telerad.archive import index, ingest
from telerad.archive.models import Instance, Patient, Series, Study
from telerad.archive.storage import FileStorage
from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent
from telerad.dicomweb import qido
from tests.conftest import pydicom_charset_files, pydicom_data_files, pydicom_test_files

pytestmark = pytest.mark.django_db
IMPORT = ingest.Source(kind="import", user="tester")
BASE = "/dicom-web"

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"
JAPANESE_STUDY = "1.3.6.1.4.1.5962.1.2.0.1175775771.5702.0"
# A PET series added to the CT sample's study, so that the study has two modalities.
PET_SERIES = "1.2.826.0.1.3680043.8.498.1001"
PET_INSTANCE = "1.2.826.0.1.3680043.8.498.1002"

# DICOM JSON tags of the attributes the tests read.
PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
PATIENT_BIRTH_DATE = "00100030"
STUDY_DATE = "00080020"
STUDY_DESCRIPTION = "00081030"
STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_INSTANCE_UID = "00080018"
MODALITY = "00080060"
MODALITIES_IN_STUDY = "00080061"
SERIES_NUMBER = "00200011"
INSTANCE_NUMBER = "00200013"
NUMBER_OF_FRAMES = "00280008"
ROWS = "00280010"
RETRIEVE_URL = "00081190"
INSTANCE_AVAILABILITY = "00080056"
STUDY_RELATED_SERIES = "00201206"
STUDY_RELATED_INSTANCES = "00201208"
SERIES_RELATED_INSTANCES = "00201209"


def sample_path(name: str):
    for folder in (pydicom_test_files(), pydicom_charset_files(), pydicom_data_files()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no sample file named {name}")


def pet_copy_of_ct() -> bytes:
    """The CT sample as a PET instance of a second series in the same study."""
    ds = dcmread(sample_path("CT_small.dcm"))
    ds.SeriesInstanceUID = PET_SERIES
    ds.SOPInstanceUID = PET_INSTANCE
    ds.file_meta.MediaStorageSOPInstanceUID = PET_INSTANCE
    ds.Modality = "PT"
    ds.SeriesNumber = 2
    output = io.BytesIO()
    ds.save_as(output, enforce_file_format=True)
    return output.getvalue()


@pytest.fixture(scope="module")
def archive(django_db_setup, django_db_blocker, tmp_path_factory):
    """Store the CT (with a PET series beside it), MR, multi-frame MR and Japanese samples."""
    folder = tmp_path_factory.mktemp("archive")
    storage = FileStorage(folder / "storage", folder / "tmp")
    buffers = [sample_path(name).read_bytes() for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "chrH31.dcm")]
    buffers.append(pet_copy_of_ct())
    with django_db_blocker.unblock():
        for buffer in buffers:
            ds = dcmread(io.BytesIO(buffer), stop_before_pixels=True)
            index.forget_series(str(ds.SeriesInstanceUID))
            result = ingest.store_file(buffer, source=IMPORT, storage=storage)
            assert result.outcome is ingest.Outcome.STORED, result.reason
        yield
        for model in (Instance, Series, Study, Patient):
            model.objects.all().delete()


@pytest.fixture
def radiologist(make_user):
    return make_user("radiologist", "radiologist")


@pytest.fixture
def client(archive, radiologist):
    client = Client()
    client.force_login(radiologist)
    return client


def search(client: Client, path: str, **parameters) -> list[dict]:
    response = client.get(BASE + path, parameters)
    assert response.status_code == 200, response.content
    return response.json()


def by_study(results: list[dict]) -> dict[str, dict]:
    return {result[STUDY_UID]["Value"][0]: result for result in results}


def values(results: list[dict], tag: str) -> set:
    return {result[tag]["Value"][0] for result in results if "Value" in result[tag]}


def failure(client: Client, path: str, **parameters) -> str:
    response = client.get(BASE + path, parameters)
    assert response.status_code == 400, response.content
    return response.content.decode()


# Resource levels and default attributes.


def test_studies_returns_each_study_in_dicom_json(client):
    response = client.get(BASE + "/studies")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    studies = by_study(response.json())
    assert set(studies) == {CT_STUDY, MR_STUDY, JAPANESE_STUDY, str(dcmread(sample_path("emri_small.dcm"), stop_before_pixels=True).StudyInstanceUID)}
    ct = studies[CT_STUDY]
    assert ct[PATIENT_ID] == {"vr": "LO", "Value": ["1CT1"]}
    assert ct[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert ct[STUDY_DATE] == {"vr": "DA", "Value": ["20040119"]}
    assert ct[INSTANCE_AVAILABILITY] == {"vr": "CS", "Value": ["ONLINE"]}
    assert ct[RETRIEVE_URL] == {"vr": "UR", "Value": [f"http://testserver{BASE}/studies/{CT_STUDY}"]}


def test_studies_default_attributes_follow_the_standard_table(client):
    ct = by_study(search(client, "/studies"))[CT_STUDY]

    expected = {
        "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190",
        "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206", "00201208",
    }
    assert set(ct) == expected
    assert list(ct) == sorted(ct)


def test_studies_counts_are_numbers(client):
    ct = by_study(search(client, "/studies"))[CT_STUDY]

    assert ct[STUDY_RELATED_SERIES] == {"vr": "IS", "Value": [2]}
    assert ct[STUDY_RELATED_INSTANCES] == {"vr": "IS", "Value": [2]}


def test_modalities_in_study_is_multi_valued(client):
    ct = by_study(search(client, "/studies"))[CT_STUDY]

    assert ct[MODALITIES_IN_STUDY]["vr"] == "CS"
    assert sorted(ct[MODALITIES_IN_STUDY]["Value"]) == ["CT", "PT"]


def test_empty_values_carry_only_the_vr(client):
    ct = by_study(search(client, "/studies"))[CT_STUDY]

    assert ct[PATIENT_BIRTH_DATE] == {"vr": "DA"}
    assert ct["00080050"] == {"vr": "SH"}


def test_japanese_name_has_three_component_groups(client):
    japanese = by_study(search(client, "/studies"))[JAPANESE_STUDY]

    assert japanese[PATIENT_NAME] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}],
    }


def test_japanese_text_is_sent_as_utf8(client):
    response = client.get(BASE + "/studies", {"PatientID": "H31EXAMPLE"})

    assert "山田^太郎".encode("utf-8") in response.content


def test_study_series_returns_series_attributes(client):
    series = search(client, f"/studies/{CT_STUDY}/series")

    assert values(series, MODALITY) == {"CT", "PT"}
    pet = next(result for result in series if result[MODALITY]["Value"] == ["PT"])
    assert pet[SERIES_UID] == {"vr": "UI", "Value": [PET_SERIES]}
    assert pet[SERIES_NUMBER] == {"vr": "IS", "Value": [2]}
    assert pet[SERIES_RELATED_INSTANCES] == {"vr": "IS", "Value": [1]}
    assert pet[RETRIEVE_URL]["Value"] == [f"http://testserver{BASE}/studies/{CT_STUDY}/series/{PET_SERIES}"]
    assert PATIENT_NAME not in pet


def test_series_series_come_in_series_number_order(client):
    series = search(client, f"/studies/{CT_STUDY}/series")

    assert [result[SERIES_NUMBER]["Value"][0] for result in series] == [1, 2]


def test_all_series_carry_study_attributes(client):
    series = search(client, "/series", PatientID="1CT1")

    assert len(series) == 2
    for result in series:
        assert result[PATIENT_NAME]["Value"] == [{"Alphabetic": "CompressedSamples^CT1"}]
        assert result[STUDY_DATE]["Value"] == ["20040119"]
        assert sorted(result[MODALITIES_IN_STUDY]["Value"]) == ["CT", "PT"]


def test_study_instances_carry_series_attributes(client):
    instances = search(client, f"/studies/{CT_STUDY}/instances")

    assert values(instances, SOP_INSTANCE_UID) == {PET_INSTANCE, "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"}
    assert values(instances, MODALITY) == {"CT", "PT"}
    assert all(PATIENT_NAME not in result for result in instances)


def test_series_instances_return_instance_attributes(client):
    instances = search(client, f"/studies/{CT_STUDY}/series/{PET_SERIES}/instances")

    (pet,) = instances
    assert pet[SOP_INSTANCE_UID]["Value"] == [PET_INSTANCE]
    assert pet["00080016"]["Value"] == ["1.2.840.10008.5.1.4.1.1.2"]
    assert pet[INSTANCE_NUMBER] == {"vr": "IS", "Value": [1]}
    assert pet[ROWS] == {"vr": "US", "Value": [128]}
    assert pet[INSTANCE_AVAILABILITY]["Value"] == ["ONLINE"]
    assert pet[RETRIEVE_URL]["Value"] == [
        f"http://testserver{BASE}/studies/{CT_STUDY}/series/{PET_SERIES}/instances/{PET_INSTANCE}"
    ]
    assert MODALITY not in pet


def test_number_of_frames_is_a_number(client):
    (instance,) = search(client, "/instances", Modality="MR", NumberOfFrames="10")

    assert instance[NUMBER_OF_FRAMES] == {"vr": "IS", "Value": [10]}
    assert instance[NUMBER_OF_FRAMES]["Value"][0] == 10


def test_all_instances_carry_study_and_series_attributes(client):
    instances = search(client, "/instances", PatientID="4MR1")

    (instance,) = instances
    assert instance[PATIENT_NAME]["Value"] == [{"Alphabetic": "CompressedSamples^MR1"}]
    assert instance[MODALITY]["Value"] == ["MR"]
    assert instance[STUDY_UID]["Value"] == [MR_STUDY]


def test_unknown_study_has_no_series(client):
    response = client.get(BASE + "/studies/1.2.3.4/series")

    assert response.status_code == 200
    assert response.json() == []


# Matching.


def test_studies_match_a_series_attribute(client):
    studies = search(client, "/studies", Modality="PT")

    assert set(by_study(studies)) == {CT_STUDY}


def test_query_key_may_be_a_tag(client):
    studies = search(client, "/studies", **{"00100020": "4MR1"})

    assert set(by_study(studies)) == {MR_STUDY}


def test_study_date_range_matches(client):
    studies = search(client, "/studies", StudyDate="20040101-20040630")

    assert set(by_study(studies)) == {CT_STUDY}


def test_patient_name_wildcard_ignores_case(client):
    studies = search(client, "/studies", PatientName="compressedsamples^m*")

    assert set(by_study(studies)) == {MR_STUDY}


def test_uid_list_may_use_commas(client):
    studies = search(client, "/studies", StudyInstanceUID=f"{CT_STUDY},{MR_STUDY}")

    assert set(by_study(studies)) == {CT_STUDY, MR_STUDY}


def test_fuzzy_matching_finds_a_given_name(client):
    assert search(client, "/studies", PatientName="tarou") == []

    studies = search(client, "/studies", PatientName="tarou", fuzzymatching="true")

    assert set(by_study(studies)) == {JAPANESE_STUDY}


def test_fuzzy_matching_false_matches_literally(client):
    assert search(client, "/studies", PatientName="tarou", fuzzymatching="false") == []


def test_empty_result_is_an_empty_array(client):
    response = client.get(BASE + "/studies", {"PatientID": "nobody"})

    assert response.status_code == 200
    assert response.json() == []


# includefield.


def test_includefield_adds_a_keyword(client):
    ct = by_study(search(client, "/studies", includefield="StudyDescription"))[CT_STUDY]

    assert ct[STUDY_DESCRIPTION] == {"vr": "LO", "Value": ["e+1"]}


def test_includefield_accepts_tags_lists_and_repeats(client):
    response = client.get(BASE + "/studies?includefield=00081030,IssuerOfPatientID&includefield=00101010")

    ct = by_study(response.json())[CT_STUDY]
    assert STUDY_DESCRIPTION in ct
    assert "00100021" in ct


def test_includefield_all_returns_every_indexed_study_attribute(client):
    ct = by_study(search(client, "/studies", includefield="all"))[CT_STUDY]

    assert STUDY_DESCRIPTION in ct
    assert "00100021" in ct
    assert MODALITY not in ct


def test_includefield_leaves_out_lower_levels(client):
    ct = by_study(search(client, "/studies", includefield="SOPInstanceUID"))[CT_STUDY]

    assert SOP_INSTANCE_UID not in ct


def test_matching_key_is_returned(client):
    (ct,) = search(client, "/studies", StudyDescription="e+1")

    assert ct[STUDY_DESCRIPTION]["Value"] == ["e+1"]


# Paging.


def test_limit_and_offset_page_through_studies(client):
    first = client.get(BASE + "/studies", {"limit": "2"})
    second = client.get(BASE + "/studies", {"limit": "2", "offset": "2"})

    assert len(first.json()) == 2
    assert "Warning" not in first
    assert len(second.json()) == 2
    assert "Warning" not in second
    assert not set(by_study(first.json())) & set(by_study(second.json()))


def test_offset_past_the_end_is_empty(client):
    assert search(client, "/studies", offset="10") == []


def test_server_maximum_applies_without_limit(client, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, qido_max_results=3)

    response = client.get(BASE + "/studies")
    larger = client.get(BASE + "/studies", {"limit": "100"})

    assert len(response.json()) == 3
    assert response["Warning"] == f'299 http://testserver{BASE}: "{qido.MORE_RESULTS_WARNING}"'

    assert len(larger.json()) == 3
    assert qido.MORE_RESULTS_WARNING in larger["Warning"]


# Unsupported attributes and bad input.


def test_unindexed_attribute_gets_warning(client):
    response = client.get(BASE + "/studies", {"InstitutionName": "Nowhere"})

    assert response.status_code == 200
    assert len(response.json()) == 4
    assert response["Warning"].startswith(f"299 http://testserver{BASE}: ")
    assert "00080080" in response["Warning"]


def test_private_tag_is_ignored_with_a_warning(client):
    response = client.get(BASE + "/studies", {"00091001": "x"})

    assert response.status_code == 200
    assert "00091001" in response["Warning"]


def test_sequence_attribute_gets_warning(client):
    response = client.get(BASE + "/studies", {"RequestAttributesSequence.RequestedProcedureID": "X1"})

    assert response.status_code == 200
    assert len(response.json()) == 4
    assert "00400275.00401001" in response["Warning"]


def test_other_charset_gets_406(client):
    response = client.get(BASE + "/studies", {"charset": "iso-8859-1"})

    assert response.status_code == 406
    assert b"utf-8" in response.content


@pytest.mark.parametrize(
    ("path", "parameters", "named"),
    [
        ("/studies", {"StudyDate": "20041301"}, "StudyDate"),
        ("/studies", {"StudyDate": "20050101-20040101"}, "StudyDate"),
        ("/studies", {"StudyDate": "2004-01-01-2005"}, "StudyDate"),
        ("/studies", {"PatientNmae": "DOE"}, "PatientNmae"),
        ("/studies", {"0010002G": "x"}, "0010002G"),
        ("/studies", {"includefield": "PatientNmae"}, "includefield"),
        ("/studies", {"limit": "ten"}, "limit"),
        ("/studies", {"limit": "-1"}, "limit"),
        ("/studies", {"limit": "0"}, "limit"),
        ("/studies", {"offset": "-2"}, "offset"),
        ("/studies", {"fuzzymatching": "maybe"}, "fuzzymatching"),
        ("/studies", {"SeriesNumber": "one"}, "SeriesNumber"),
        ("/studies", {"StudyInstanceUID": "1.2.abc"}, "StudyInstanceUID"),
        (f"/studies/{CT_STUDY}/series", {"PatientID": "1CT1"}, "PatientID"),
        (f"/studies/{CT_STUDY}/series/{PET_SERIES}/instances", {"Modality": "PT"}, "Modality"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_query_gets_400_naming_the_parameter(client, path, parameters, named):
    message = failure(client, path, **parameters)

    assert named in message


def test_key_as_keyword_and_tag_gets_400(client):
    response = client.get(BASE + "/studies?PatientID=1CT1&00100020=4MR1")

    assert response.status_code == 400
    assert b"00100020" in response.content


def test_repeated_query_key_gets_400(client):
    response = client.get(BASE + "/studies?PatientID=1CT1&PatientID=4MR1")

    assert response.status_code == 400
    assert b"PatientID" in response.content


def test_bad_query_message_leaves_out_the_value(client):
    message = failure(client, "/studies", PatientBirthDate="19991399")

    assert "19991399" not in message


# Media types.


def test_application_json_is_offered(client):
    response = client.get(BASE + "/studies", headers={"Accept": "application/json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert len(response.json()) == 4


def test_accept_parameter_overrides_header(client):
    response = client.get(BASE + "/studies", {"accept": "application/json"}, headers={"Accept": "image/png"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("accept", ['multipart/related; type="application/dicom+xml"', "image/png", "application/dicom"])
def test_other_media_types_get_406(client, accept):
    response = client.get(BASE + "/studies", headers={"Accept": accept})

    assert response.status_code == 406
    assert b"application/dicom+json" in response.content


def test_search_needs_authentication(archive):
    response = Client().get(BASE + "/studies")

    assert response.status_code == 401


# Audit trail and log.


def test_search_writes_one_audit_event(client):
    before = AuditEvent.objects.count()

    search(client, "/studies", PatientID="4MR1")

    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.action == Action.QUERY
    assert event.outcome == Outcome.SUCCESS
    assert event.user == "radiologist"
    assert event.address == "127.0.0.1"
    assert event.patient_id == "4MR1"
    assert "PatientID=4MR1" in event.detail
    assert "1 results" in event.detail


def test_audit_names_path_study_and_patient(client):
    search(client, f"/studies/{CT_STUDY}/series")

    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.study_instance_uid == CT_STUDY
    assert event.patient_id == "1CT1"


def test_audit_names_single_returned_patient(client):
    search(client, "/studies", PatientID="4MR*")

    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.patient_id == "4MR1"


def test_audit_lists_every_patient_and_study_returned(client):
    results = search(client, "/studies")

    event = AuditEvent.objects.order_by("-sequence").first()
    returned_studies = {result["0020000D"]["Value"][0] for result in results}
    assert len(returned_studies) > 1
    assert event.patient_id == ""
    assert all(uid in event.detail for uid in returned_studies)
    assert "1CT1" in event.detail


def test_iso_date_is_refused_with_the_dicom_form(client):
    response = client.get(BASE + "/studies", {"StudyDate": "2024-01-31"})

    assert response.status_code == 400
    assert "YYYYMMDD" in response.content.decode()


def test_failed_search_is_audited(client):
    failure(client, "/studies", StudyDate="yesterday")

    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.action == Action.QUERY
    assert event.outcome == Outcome.MINOR_FAILURE
    assert "status 400" in event.detail


def test_log_carries_no_patient_data(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="telerad.dicomweb.qido"):
        search(client, "/studies", PatientName="Yamada*", PatientBirthDate="19700101-")

    assert "QIDO-RS search" in caplog.text
    assert "Yamada" not in caplog.text
    assert "山田" not in caplog.text
    assert "1970" not in caplog.text
