"""STOW-RS (PS3.18 10.5): storing multipart/related uploads of real sample files through the Django test client."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pydicom
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from telerad.accounts import tokens
from telerad.archive import header, ingest
from telerad.archive.models import Instance
from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent
from telerad.dicomweb import multipart
from telerad.dicomweb.stow import FailureReason, WarningReason

pytestmark = pytest.mark.django_db

STUDIES_URL = "/dicom-web/studies"
BOUNDARY = "telerad-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CSRF_SECRET = "a" * 32

# DICOM JSON keys of the Store Instances Response Module (PS3.18 Table I.1-1).
RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
WARNING_REASON = "00081196"
FAILURE_REASON = "00081197"


@pytest.fixture
def radiologist(make_user):
    return make_user("radiologist", "radiologist")


@pytest.fixture
def token_client(radiologist):
    _token, text = tokens.create_token(radiologist)
    return Client(headers={"Authorization": f"Bearer {text}"}, enforce_csrf_checks=True)


def multipart_body(*parts: bytes | tuple[str | None, bytes], boundary: str = BOUNDARY) -> bytes:
    """Encode parts as a multipart/related body; a bare bytes part is application/dicom."""
    chunks = []
    for part in parts:
        content_type, data = part if isinstance(part, tuple) else ("application/dicom", part)
        headers = f"Content-Type: {content_type}\r\n" if content_type else ""
        chunks.append(f"--{boundary}\r\n{headers}\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def post(client: Client, body: bytes, *, url: str = STUDIES_URL, content_type: str = CONTENT_TYPE, **headers: str):
    return client.post(url, data=body, content_type=content_type, headers={"Accept": "application/dicom+json", **headers})


def values(item: dict, tag: str) -> list:
    return item.get(tag, {}).get("Value", [])


def referenced(response) -> list[dict]:
    return values(response.json(), REFERENCED_SOP_SEQUENCE)


def failed(response) -> list[dict]:
    return values(response.json(), FAILED_SOP_SEQUENCE)


def dataset_of(data: bytes) -> bytes:
    meta = header.read_file_meta(data)
    return data[meta.dataset_offset:] if meta else data


def stored_dataset(sop_instance_uid: str) -> bytes:
    instance = Instance.objects.get(sop_instance_uid=sop_instance_uid)
    with ingest.default_storage().open(instance.storage_key) as handle:
        return handle.read()[instance.dataset_offset:]


def modified(path: Path, **attributes: str) -> bytes:
    dataset = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    return output.getvalue()


def test_store_instances_of_several_studies(token_client, sample_file):
    files = {name: sample_file(name).read_bytes() for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")}

    response = post(token_client, multipart_body(*files.values()))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    items = referenced(response)
    assert len(items) == 3
    assert failed(response) == []
    # Several studies, so the study-level Retrieve URL (Type 2) is empty.
    assert values(response.json(), RETRIEVE_URL) == []
    for data, item in zip(files.values(), items):
        dataset = pydicom.dcmread(io.BytesIO(data))
        assert values(item, REFERENCED_SOP_INSTANCE_UID) == [dataset.SOPInstanceUID]
        assert values(item, REFERENCED_SOP_CLASS_UID) == [dataset.SOPClassUID]
        assert values(item, RETRIEVE_URL) == [
            f"http://testserver/dicom-web/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}"
        ]
        assert WARNING_REASON not in item
        assert stored_dataset(dataset.SOPInstanceUID) == dataset_of(data)


def test_store_records_one_audit_event_per_study(token_client, sample_file):
    body = multipart_body(sample_file("CT_small.dcm").read_bytes(), sample_file("MR_small.dcm").read_bytes())

    post(token_client, body)

    events = AuditEvent.objects.filter(action=Action.INSTANCES_STORED).order_by("sequence")
    assert [event.study_instance_uid for event in events] == [CT_STUDY, "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"]
    assert all(event.user == "radiologist" for event in events)
    assert "1 instances stored" in events[0].detail
    assert events[0].patient_id == pydicom.dcmread(sample_file("CT_small.dcm")).PatientID


def test_store_audits_refused_parts(token_client, sample_file):
    post(token_client, multipart_body(b"not a DICOM file at all"))

    event = AuditEvent.objects.filter(action=Action.INSTANCES_STORED).get()
    assert event.outcome == Outcome.MINOR_FAILURE
    assert "C000 x1" in event.detail


def test_store_large_file_streams_past_memory_limit(token_client, sample_file):
    # 7.2 MB: larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE and than the in-memory part limit.
    data = sample_file("RG1_UNCI.dcm").read_bytes()
    assert len(data) > max(settings.DATA_UPLOAD_MAX_MEMORY_SIZE, multipart.PART_MEMORY_LIMIT)

    response = post(token_client, multipart_body(data))

    assert response.status_code == 200
    sop_instance_uid = values(referenced(response)[0], REFERENCED_SOP_INSTANCE_UID)[0]
    assert stored_dataset(sop_instance_uid) == dataset_of(data)


def test_store_to_study_sets_its_retrieve_url(token_client, sample_file):
    response = post(token_client, multipart_body(sample_file("CT_small.dcm").read_bytes()), url=f"{STUDIES_URL}/{CT_STUDY}")

    assert response.status_code == 200
    assert values(response.json(), RETRIEVE_URL) == [f"http://testserver/dicom-web/studies/{CT_STUDY}"]


def test_store_to_study_rejects_other_studies(token_client, sample_file):
    body = multipart_body(sample_file("CT_small.dcm").read_bytes(), sample_file("MR_small.dcm").read_bytes())

    response = post(token_client, body, url=f"{STUDIES_URL}/{CT_STUDY}")

    assert response.status_code == 202
    assert len(referenced(response)) == 1
    (failure,) = failed(response)
    mr = pydicom.dcmread(sample_file("MR_small.dcm"))
    assert values(failure, REFERENCED_SOP_INSTANCE_UID) == [mr.SOPInstanceUID]
    assert values(failure, FAILURE_REASON) == [FailureReason.STUDY_INSTANCE_UID_MISMATCH]
    assert not Instance.objects.filter(sop_instance_uid=mr.SOPInstanceUID).exists()
    assert "not to the target study" in response["Warning"]


def test_store_to_other_study_only_is_409(token_client, sample_file):
    response = post(token_client, multipart_body(sample_file("MR_small.dcm").read_bytes()), url=f"{STUDIES_URL}/{CT_STUDY}")

    assert response.status_code == 409
    assert values(failed(response)[0], FAILURE_REASON) == [FailureReason.STUDY_INSTANCE_UID_MISMATCH]
    assert Instance.objects.count() == 0


def test_identical_copy_is_stored_with_warning(token_client, sample_file):
    data = sample_file("CT_small.dcm").read_bytes()
    post(token_client, multipart_body(data))

    response = post(token_client, multipart_body(data))

    assert response.status_code == 202
    (item,) = referenced(response)
    assert values(item, WARNING_REASON) == [WarningReason.ALREADY_STORED]
    assert failed(response) == []
    assert Instance.objects.count() == 1


def test_different_copy_is_rejected_as_duplicate(token_client, sample_file):
    path = sample_file("CT_small.dcm")
    post(token_client, multipart_body(path.read_bytes()))
    sop_instance_uid = pydicom.dcmread(path).SOPInstanceUID
    before = stored_dataset(sop_instance_uid)

    response = post(token_client, multipart_body(modified(path, StudyDescription="Other content")))

    assert response.status_code == 409
    (failure,) = failed(response)
    assert values(failure, REFERENCED_SOP_INSTANCE_UID) == [sop_instance_uid]
    assert values(failure, FAILURE_REASON) == [FailureReason.DUPLICATE_SOP_INSTANCE]
    assert stored_dataset(sop_instance_uid) == before


def test_stale_file_meta_sample_warns(token_client, sample_file):
    # pydicom's rtplan.dcm names another SOP Instance UID in its file meta information.
    data = sample_file("rtplan.dcm").read_bytes()

    response = post(token_client, multipart_body(data))

    assert response.status_code == 202
    (item,) = referenced(response)
    assert values(item, WARNING_REASON) == [WarningReason.COERCION_OF_DATA_ELEMENTS]
    assert stored_dataset(values(item, REFERENCED_SOP_INSTANCE_UID)[0]) == dataset_of(data)


def test_corrected_file_meta_is_a_coercion_warning(token_client, sample_file):
    path = sample_file("MR_small.dcm")
    dataset = pydicom.dcmread(path)
    uid = dataset.SOPInstanceUID.encode()
    # The file meta group comes first, so this changes only its MediaStorageSOPInstanceUID.
    data = path.read_bytes().replace(uid, b"1.2.3" + uid[5:], 1)

    response = post(token_client, multipart_body(data))

    assert response.status_code == 202
    (item,) = referenced(response)
    assert values(item, REFERENCED_SOP_INSTANCE_UID) == [dataset.SOPInstanceUID]
    assert values(item, WARNING_REASON) == [WarningReason.COERCION_OF_DATA_ELEMENTS]


@pytest.mark.parametrize(
    ("part", "reason", "message"),
    [
        (("application/dicom", b"this is not a DICOM file at all"), FailureReason.CANNOT_UNDERSTAND, "not a DICOM file"),
        (("application/dicom+json", b'[{"00080018": {"vr": "UI"}}]'), FailureReason.CANNOT_UNDERSTAND, "application/dicom+json"),
        (("application/octet-stream", b"\x00" * 200), FailureReason.CANNOT_UNDERSTAND, "only application/dicom parts"),
    ],
)
def test_part_that_is_not_dicom_fails(token_client, part, reason, message):
    response = post(token_client, multipart_body(part))

    assert response.status_code == 409
    (failure,) = failed(response)
    assert values(failure, FAILURE_REASON) == [reason]
    assert message in response["Warning"]
    assert Instance.objects.count() == 0


def test_truncated_dicom_part_fails_and_others_are_stored(token_client, sample_file):
    good = sample_file("MR_small.dcm").read_bytes()
    truncated = sample_file("CT_small.dcm").read_bytes()[:2000]

    response = post(token_client, multipart_body(good, truncated))

    assert response.status_code == 202
    assert len(referenced(response)) == 1
    (failure,) = failed(response)
    assert values(failure, FAILURE_REASON) == [FailureReason.CANNOT_UNDERSTAND]
    assert values(failure, REFERENCED_SOP_INSTANCE_UID) == [pydicom.dcmread(sample_file("CT_small.dcm")).SOPInstanceUID]
    assert Instance.objects.count() == 1


def test_unknown_transfer_syntax_fails(token_client, sample_file):
    dataset = pydicom.dcmread(sample_file("CT_small.dcm"))
    output = io.BytesIO()
    dataset.save_as(output, enforce_file_format=True)
    data = output.getvalue().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.99999.1.2.1\x00", 1)

    response = post(token_client, multipart_body(data))

    assert response.status_code == 409
    assert values(failed(response)[0], FAILURE_REASON) == [FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED]


def test_part_without_content_type_is_dicom(token_client, sample_file):
    response = post(token_client, multipart_body((None, sample_file("CT_small.dcm").read_bytes())))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        'multipart/related; type="application/dicom+json"; boundary=x',
        'multipart/related; type="application/dicom+xml"; boundary=x',
        "multipart/form-data; boundary=x",
        "",
    ],
)
def test_other_request_content_types_are_415(token_client, sample_file, content_type):
    response = post(token_client, sample_file("CT_small.dcm").read_bytes(), content_type=content_type)

    assert response.status_code == 415
    assert b"multipart/related" in response.content
    assert Instance.objects.count() == 0


def test_missing_boundary_is_400(token_client, sample_file):
    response = post(token_client, multipart_body(sample_file("CT_small.dcm").read_bytes()), content_type='multipart/related; type="application/dicom"')

    assert response.status_code == 400
    assert b"no boundary parameter" in response.content


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"just some text", b"does not contain the boundary"),
        (f"--{BOUNDARY}--\r\n".encode(), b"contains no parts"),
        (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDICM data without end".encode(), b"truncated"),
        (f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode(), b"ends in the headers of part 1"),
        (f"--{BOUNDARY}\r\nno colon here\r\n\r\ndata\r\n--{BOUNDARY}--".encode(), b"without a name and colon"),
        (f"--{BOUNDARY}garbage\r\n\r\ndata\r\n--{BOUNDARY}--".encode(), b"followed by other text"),
    ],
)
def test_malformed_body_is_400(token_client, body, message):
    response = post(token_client, body)

    assert response.status_code == 400
    assert message in response.content


def test_missing_close_delimiter_is_400(token_client, sample_file):
    body = multipart_body(sample_file("CT_small.dcm").read_bytes())
    without_close = body[: body.rindex(f"--{BOUNDARY}--".encode())]

    response = post(token_client, without_close)

    assert response.status_code == 400
    assert b"truncated" in response.content
    assert Instance.objects.count() == 0


def test_malformed_body_after_stored_part_is_202(token_client, sample_file):
    first = multipart_body(sample_file("CT_small.dcm").read_bytes())
    body = first[: first.rindex(f"--{BOUNDARY}--".encode())] + f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\ncut off".encode()

    response = post(token_client, body)

    assert response.status_code == 202
    assert len(referenced(response)) == 1
    assert "malformed after part 1" in response["Warning"]


def test_body_over_limit_is_413(token_client, sample_file, monkeypatch):
    monkeypatch.setattr(settings, "TELERAD", dataclasses.replace(settings.TELERAD, dicomweb_max_upload_mb=1))
    data = sample_file("MR2_UNCI.dcm").read_bytes()

    response = post(token_client, multipart_body(data))

    assert response.status_code == 413
    assert b"TELERAD_DICOMWEB_MAX_UPLOAD_MB" in response.content
    assert Instance.objects.count() == 0


def test_unacceptable_accept_is_406(token_client, sample_file):
    response = post(token_client, multipart_body(sample_file("CT_small.dcm").read_bytes()), Accept="application/dicom+xml")

    assert response.status_code == 406
    assert Instance.objects.count() == 0


def test_store_without_authentication_is_401(sample_file):
    response = post(Client(), multipart_body(sample_file("CT_small.dcm").read_bytes()))

    assert response.status_code == 401
    assert Instance.objects.count() == 0


def test_session_store_requires_csrf_token(radiologist, sample_file):
    client = Client(enforce_csrf_checks=True)
    client.force_login(radiologist)
    body = multipart_body(sample_file("CT_small.dcm").read_bytes())

    assert post(client, body).status_code == 403
    assert Instance.objects.count() == 0

    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    response = post(client, body, **{"X-CSRFToken": CSRF_SECRET})
    assert response.status_code == 200
    assert Instance.objects.count() == 1


def test_bearer_token_store_needs_no_csrf_token(token_client, sample_file):
    response = post(token_client, multipart_body(sample_file("CT_small.dcm").read_bytes()))

    assert response.status_code == 200


def test_store_to_study_rejects_unreadable_part(token_client):
    response = post(token_client, multipart_body(b"not DICOM"), url=f"{STUDIES_URL}/{CT_STUDY}")

    assert response.status_code == 409
    assert values(failed(response)[0], FAILURE_REASON) == [FailureReason.CANNOT_UNDERSTAND]
    assert "cannot be checked against the target study" in response["Warning"]


def test_many_failures_keep_warning_header_short(token_client):
    response = post(token_client, multipart_body(*[b"not DICOM"] * 30))

    assert response.status_code == 409
    assert len(failed(response)) == 30
    assert response["Warning"].count('299 http://testserver/dicom-web: "') == 20
    assert "11 more parts" in response["Warning"]
