"""What all DICOMweb endpoints share: 401 without credentials, 405 for other methods, one audit event per viewing."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.dicomweb.http import VIEWING_WINDOW, forget_viewings, is_viewing_request, record_access

pytestmark = pytest.mark.django_db

STUDY = "1.2.3.4"
FRAMES = f"/dicom-web/studies/{STUDY}/series/1.2.3.5/instances/1.2.3.6/frames/1"


@pytest.fixture
def reader(make_user):
    return make_user("reader", "radiologist")


def request_by(user, path: str):
    request = RequestFactory().get(path, REMOTE_ADDR="127.0.0.1")
    request.user = user
    return request


def test_endpoint_anonymous_gets_401():
    response = Client().get("/dicom-web/studies")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_by_method_answers_405_with_allow(reader):
    client = Client()
    client.force_login(reader)

    response = client.delete("/dicom-web/series")

    assert response.status_code == 405
    assert response["Allow"] == "GET"


@pytest.mark.parametrize(
    ("path", "viewing"),
    [
        (FRAMES, True),
        (f"/dicom-web/studies/{STUDY}/metadata", True),
        (f"/dicom-web/studies/{STUDY}/series/1.2.3.5/thumbnail", True),
        (f"/dicom-web/studies/{STUDY}", False),
        ("/dicom-web/studies", False),
    ],
)
def test_is_viewing_request_tells_viewer_fetches_from_downloads(path, viewing):
    assert is_viewing_request(path) is viewing


def test_record_access_writes_one_event_per_viewing(reader):
    for _ in range(3):
        record_access(request_by(reader, FRAMES), Action.RETRIEVE, patient_id="P1", study_instance_uid=STUDY)

    assert AuditEvent.objects.filter(action=Action.RETRIEVE, study_instance_uid=STUDY).count() == 1


def test_record_access_after_window_records_again(reader):
    record_access(request_by(reader, FRAMES), Action.RETRIEVE, study_instance_uid=STUDY)
    AuditEvent.objects.update(occurred_at=AuditEvent.objects.get().occurred_at - VIEWING_WINDOW - datetime.timedelta(seconds=1))
    # As after the window has passed in this process too.
    forget_viewings()

    record_access(request_by(reader, FRAMES), Action.RETRIEVE, study_instance_uid=STUDY)

    assert AuditEvent.objects.count() == 2


def test_record_access_remembered_viewing_skips_database(reader, django_assert_num_queries):
    record_access(request_by(reader, FRAMES), Action.RETRIEVE, study_instance_uid=STUDY)

    with django_assert_num_queries(0):
        record_access(request_by(reader, FRAMES), Action.RETRIEVE, study_instance_uid=STUDY)


def test_record_access_records_every_download(reader):
    path = f"/dicom-web/studies/{STUDY}"
    for _ in range(2):
        record_access(request_by(reader, path), Action.RETRIEVE, study_instance_uid=STUDY)

    assert AuditEvent.objects.count() == 2


def test_post_anonymous_gets_401():
    response = Client(enforce_csrf_checks=True).post("/dicom-web/studies", b"", content_type="multipart/related; type=\"application/dicom\"; boundary=x")

    assert response.status_code == 401


def test_post_session_without_csrf_gets_403(reader):
    client = Client(enforce_csrf_checks=True)
    client.force_login(reader)

    response = client.post("/dicom-web/studies", b"", content_type="multipart/related; type=\"application/dicom\"; boundary=x")

    assert response.status_code == 403


def test_post_with_a_token_needs_no_csrf_token(reader):
    from telerad.accounts.tokens import create_token

    _token, text = create_token(reader)
    response = Client(enforce_csrf_checks=True).post(
        "/dicom-web/studies", b"--x--\r\n", content_type="multipart/related; type=\"application/dicom\"; boundary=x",
        headers={"Authorization": f"Bearer {text}"},
    )

    assert response.status_code not in (401, 403)


@pytest.mark.parametrize("path", ["/dicom-web/studies/not-a-uid/metadata", f"{FRAMES[:-2]}/abc"])
def test_unknown_dicomweb_address_gets_a_plain_text_404(reader, path):
    client = Client()
    client.force_login(reader)

    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/plain")
    assert b"No DICOMweb resource" in response.content
