"""What a clinician cannot reach: another clinician's exam by every address that serves exams, reports or images.

Each case runs twice: ``welby``, who referred the CT exam, gets the data, and
``kildare``, who did not, gets 404 (or a search without it), exactly as for
an unknown UID. The first run shows that the address works, so that the
second one tests the scope rather than a wrong address.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from telerad.audit.models import AuditEvent
from telerad.reading.models import SignedReport
from tests.clinicians.portal_support import client_of, sign_final
from tests.clinicians.portal_support import archive, kildare, welby  # noqa: F401 (fixtures)
from tests.reading.reports_fixtures import radiologist  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

UNKNOWN_UID = "1.2.826.0.1.3680043.10.543.999999"
DICOM_JSON = "application/dicom+json"
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def retrieval_addresses(ct) -> dict[str, tuple[str, dict[str, str]]]:
    """Return the WADO-RS, rendered and thumbnail addresses of the CT study, with the Accept header of each."""
    study = f"/dicom-web/studies/{ct.study_instance_uid}"
    series = f"{study}/series/{ct.series_instance_uid}"
    instance = f"{series}/instances/{ct.sop_instance_uid}"
    dicom = {"HTTP_ACCEPT": 'multipart/related; type="application/dicom"'}
    metadata = {"HTTP_ACCEPT": DICOM_JSON}
    frames = {"HTTP_ACCEPT": FRAME_ACCEPT}
    jpeg = {"HTTP_ACCEPT": "image/jpeg"}
    multipart_jpeg = {"HTTP_ACCEPT": 'multipart/related; type="image/jpeg"'}
    return {
        "study": (study, dicom),
        "series": (series, dicom),
        "instance": (instance, dicom),
        "study metadata": (f"{study}/metadata", metadata),
        "series metadata": (f"{series}/metadata", metadata),
        "instance metadata": (f"{instance}/metadata", metadata),
        "frames": (f"{instance}/frames/1", frames),
        "bulk data": (f"{instance}/bulkdata/7FE00010", frames),
        "study rendered": (f"{study}/rendered", multipart_jpeg),
        "series rendered": (f"{series}/rendered", multipart_jpeg),
        "instance rendered": (f"{instance}/rendered", jpeg),
        "frame rendered": (f"{instance}/frames/1/rendered", jpeg),
        "study thumbnail": (f"{study}/thumbnail", jpeg),
        "series thumbnail": (f"{series}/thumbnail", jpeg),
        "instance thumbnail": (f"{instance}/thumbnail", jpeg),
        "frame thumbnail": (f"{instance}/frames/1/thumbnail", jpeg),
    }


RETRIEVALS = [
    "study", "series", "instance", "study metadata", "series metadata", "instance metadata", "frames", "bulk data",
    "study rendered", "series rendered", "instance rendered", "frame rendered",
    "study thumbnail", "series thumbnail", "instance thumbnail", "frame thumbnail",
]


@pytest.mark.parametrize("name", RETRIEVALS)
def test_retrieval_serves_referring_clinician(archive, welby, name):
    address, headers = retrieval_addresses(archive["ct"])[name]

    response = client_of(welby).get(address, **headers)

    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])


@pytest.mark.parametrize("name", RETRIEVALS)
def test_retrieval_hides_study_from_other_clinician(archive, kildare, name):
    address, headers = retrieval_addresses(archive["ct"])[name]
    unknown_address = address.replace(archive["ct"].study_instance_uid, UNKNOWN_UID)
    client = client_of(kildare)

    response = client.get(address, **headers)
    unknown = client.get(unknown_address, **headers)

    assert response.status_code == 404
    assert unknown.status_code == 404
    # The same message as for an unknown study, with the UID swapped, so the response reveals nothing.
    assert response.content.decode().replace(archive["ct"].study_instance_uid, UNKNOWN_UID) == unknown.content.decode()
    assert not AuditEvent.objects.filter(action="retrieve", user="kildare").exists()


def search(client, address: str, **parameters: str) -> list[dict]:
    response = client.get(address, parameters, HTTP_ACCEPT=DICOM_JSON)
    assert response.status_code == 200, response.content
    return json.loads(response.content)


def uids(results: list[dict], tag: str) -> set[str]:
    return {result[tag]["Value"][0] for result in results}


def qido_searches(archive) -> dict[str, tuple[str, dict[str, str], str, str]]:
    """Return searches that find the CT study for welby: (address, parameters, result tag, expected UID)."""
    ct = archive["ct"]
    study_uid, series_uid, sop_uid = ct.study_instance_uid, ct.series_instance_uid, ct.sop_instance_uid
    return {
        "all studies": ("/dicom-web/studies", {}, "0020000D", study_uid),
        "studies by PatientID": ("/dicom-web/studies", {"PatientID": "1CT1"}, "0020000D", study_uid),
        "studies by tag 00100020": ("/dicom-web/studies", {"00100020": "1CT1"}, "0020000D", study_uid),
        "studies by StudyInstanceUID": ("/dicom-web/studies", {"StudyInstanceUID": study_uid}, "0020000D", study_uid),
        "studies by AccessionNumber": ("/dicom-web/studies", {"AccessionNumber": "PORTAL-CT"}, "0020000D", study_uid),
        "studies by PatientName": ("/dicom-web/studies", {"PatientName": "CompressedSamples*"}, "0020000D", study_uid),
        "studies by Modality": ("/dicom-web/studies", {"ModalitiesInStudy": "CT"}, "0020000D", study_uid),
        "all series": ("/dicom-web/series", {}, "0020000E", series_uid),
        "series by PatientID": ("/dicom-web/series", {"PatientID": "1CT1"}, "0020000E", series_uid),
        "series by StudyInstanceUID": ("/dicom-web/series", {"StudyInstanceUID": study_uid}, "0020000E", series_uid),
        "series of the study": (f"/dicom-web/studies/{study_uid}/series", {}, "0020000E", series_uid),
        "all instances": ("/dicom-web/instances", {}, "00080018", sop_uid),
        "instances by SOPInstanceUID": ("/dicom-web/instances", {"SOPInstanceUID": sop_uid}, "00080018", sop_uid),
        "instances of the study": (f"/dicom-web/studies/{study_uid}/instances", {}, "00080018", sop_uid),
        "instances of the series": (f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances", {}, "00080018", sop_uid),
    }


SEARCHES = [
    "all studies", "studies by PatientID", "studies by tag 00100020", "studies by StudyInstanceUID", "studies by AccessionNumber",
    "studies by PatientName", "studies by Modality", "all series", "series by PatientID", "series by StudyInstanceUID",
    "series of the study", "all instances", "instances by SOPInstanceUID", "instances of the study", "instances of the series",
]


@pytest.mark.parametrize("name", SEARCHES)
def test_search_finds_referred_study(archive, welby, name):
    address, parameters, tag, expected = qido_searches(archive)[name]

    results = search(client_of(welby), address, **parameters)

    assert expected in uids(results, tag)


@pytest.mark.parametrize("name", SEARCHES)
def test_search_leaves_out_other_clinicians_study(archive, kildare, name):
    address, parameters, tag, expected = qido_searches(archive)[name]

    results = search(client_of(kildare), address, **parameters)

    assert expected not in uids(results, tag)
    assert archive["ct"].study_instance_uid not in uids(results, "0020000D")


def test_search_by_patient_leaves_out_unreferred_prior(archive, welby):
    results = search(client_of(welby), "/dicom-web/studies", PatientID="1CT1")

    assert uids(results, "0020000D") == {archive["ct"].study_instance_uid}


def test_search_patient_totals_count_visible_studies(archive, welby):
    (result,) = search(client_of(welby), "/dicom-web/studies", PatientID="1CT1", includefield="NumberOfPatientRelatedStudies")

    assert result["00201200"]["Value"] == [1]


def test_search_paging_counts_visible_studies(archive, welby, settings):
    import dataclasses

    from telerad.clinicians import grants

    grants.grant_access(welby, actor="tests", department="ward 7")
    settings.TELERAD = dataclasses.replace(settings.TELERAD, qido_max_results=1)
    client = client_of(welby)

    first = client.get("/dicom-web/studies", HTTP_ACCEPT=DICOM_JSON)
    second = client.get("/dicom-web/studies", {"offset": "1"}, HTTP_ACCEPT=DICOM_JSON)
    third = client.get("/dicom-web/studies", {"offset": "2"}, HTTP_ACCEPT=DICOM_JSON)

    assert "Warning" in first
    assert "Warning" not in second
    visible = {archive["ct"].study_instance_uid, archive["mr"].study_instance_uid}
    assert uids(json.loads(first.content), "0020000D") | uids(json.loads(second.content), "0020000D") == visible
    assert json.loads(third.content) == []


def test_search_by_radiologist_adds_no_query(archive, radiologist):
    client = client_of(radiologist)
    client.get("/dicom-web/studies", HTTP_ACCEPT=DICOM_JSON)

    with CaptureQueriesContext(connection) as queries:
        results = search(client, "/dicom-web/studies")

    assert len(results) == 3
    assert not any("clinicians_cliniciangrant" in query["sql"] for query in queries.captured_queries)
    assert not any("reading_examstudy" in query["sql"] for query in queries.captured_queries)


def test_viewer_route_serves_referred_study(archive, welby):
    from telerad.viewer import install

    if install.installed_manifest() is None:
        pytest.fail("the OHIF viewer is not installed; scripts/setup-environment installs it")

    response = client_of(welby).get("/viewer/viewer", {"StudyInstanceUIDs": archive["ct"].study_instance_uid})

    assert response.status_code == 200


def test_viewer_route_hides_other_clinicians_study(archive, kildare):
    response = client_of(kildare).get("/viewer/viewer", {"StudyInstanceUIDs": archive["ct"].study_instance_uid})

    assert response.status_code == 404


@pytest.mark.parametrize("parameters", [
    pytest.param({"studyUID": "ct"}, id="studyUID"),
    pytest.param({"accessionNumber": "PORTAL-CT"}, id="accessionNumber"),
    pytest.param({"accessionNumber": "PORTAL-CT", "patientID": "1CT1"}, id="accessionNumber and patientID"),
])
def test_invoke_image_display_opens_only_own_study(archive, welby, kildare, parameters):
    parameters = {name: archive["ct"].study_instance_uid if value == "ct" else value for name, value in parameters.items()}

    own = client_of(welby).get("/viewer/iid", parameters)
    other = client_of(kildare).get("/viewer/iid", parameters)

    assert own.status_code == 302
    assert archive["ct"].study_instance_uid in own["Location"]
    assert other.status_code == 404


def test_invoke_image_display_drops_invisible_studies(archive, welby):
    uids_text = ",".join([archive["ct"].study_instance_uid, archive["mr"].study_instance_uid])

    response = client_of(welby).get("/viewer/iid", {"studyUID": uids_text})

    assert response.status_code == 302
    assert archive["ct"].study_instance_uid in response["Location"]
    assert archive["mr"].study_instance_uid not in response["Location"]


def test_portal_exam_page_hides_other_clinicians_exam(archive, kildare):
    exam = archive["ct"].exam

    page = client_of(kildare).get(reverse("portal:exam", args=[exam.pk]))
    unknown = client_of(kildare).get(reverse("portal:exam", args=[exam.pk + 1000]))

    assert page.status_code == 404
    assert unknown.status_code == 404
    assert b"PORTAL-CT" not in page.content


def test_portal_acknowledge_hides_other_clinicians_result(archive, kildare, radiologist):
    from telerad.clinicians.models import CriticalResult

    exam = archive["ct"].exam
    sign_final(exam, radiologist, critical=True)
    result = CriticalResult.objects.get(exam=exam)

    response = client_of(kildare).post(reverse("portal:acknowledge", args=[exam.pk, result.pk]))

    result.refresh_from_db()
    assert response.status_code == 404
    assert result.acknowledged_at is None


def test_pdf_hides_other_clinicians_report(archive, welby, kildare, radiologist):
    sign_final(archive["ct"].exam, radiologist)
    signed = SignedReport.objects.get(exam=archive["ct"].exam)

    own = client_of(welby).get(reverse("report-pdf:pdf", args=[signed.pk]))
    other = client_of(kildare).get(reverse("report-pdf:pdf", args=[signed.pk]))

    assert own.status_code == 200
    assert other.status_code == 404
    assert not other.content.startswith(b"%PDF")


def test_fhir_read_hides_other_clinicians_report(archive, welby, kildare, radiologist):
    exam = archive["ct"].exam
    sign_final(exam, radiologist)
    address = reverse("fhir:diagnosticreport", args=[exam.pk])

    own = client_of(welby).get(address)
    other = client_of(kildare).get(address)
    unknown = client_of(kildare).get(reverse("fhir:diagnosticreport", args=[exam.pk + 1000]))

    assert own.status_code == 200
    assert json.loads(own.content)["resourceType"] == "DiagnosticReport"
    assert other.status_code == 404
    assert json.loads(other.content)["resourceType"] == "OperationOutcome"
    assert unknown.status_code == 404


def test_fhir_search_leaves_out_other_clinicians_report(archive, welby, kildare, radiologist):
    sign_final(archive["ct"].exam, radiologist)
    address = reverse("fhir:diagnosticreport-search")

    own = json.loads(client_of(welby).get(address, {"identifier": "PORTAL-CT"}).content)
    other = json.loads(client_of(kildare).get(address, {"identifier": "PORTAL-CT"}).content)

    assert own["total"] == 1
    assert other["total"] == 0
    assert "entry" not in other or other["entry"] == []


def test_role_without_either_permission_sees_nothing(archive, make_user):
    from telerad.clinicians.access import can_view_exam, visible_exams, visible_study_ids

    scheduler = make_user("booker", "scheduler")

    assert list(visible_exams(scheduler)) == []
    assert not can_view_exam(scheduler, archive["ct"].exam)
    assert not visible_study_ids(scheduler).exists()
