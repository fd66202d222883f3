"""STOW-RS against a real ``telerad serve`` over HTTPS, with dicomweb-client as the user agent."""

from __future__ import annotations

import hashlib
import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from telerad.archive import header

from .conftest import ServerFactory, TeleradServer

pytestmark = pytest.mark.e2e

USER = "stow-client"
MAX_UPLOAD_MB = 6


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    server = module_server_factory.start(http_tls=True, dicomweb_max_upload_mb=str(MAX_UPLOAD_MB))
    server.add_user(USER, "technologist")
    return server


def https_client(server: TeleradServer, *, token: str = "") -> DICOMwebClient:
    session = requests.Session()
    # Without this, REQUESTS_CA_BUNDLE in the environment would replace
    # session.verify, and proxy variables could route the traffic elsewhere.
    session.trust_env = False
    # The server's self-signed certificate is the only one trusted.
    session.verify = str(server.data_dir / "tls" / "telerad.crt")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return DICOMwebClient(url=f"https://127.0.0.1:{server.http_port}/dicom-web", session=session)


@pytest.fixture(scope="module")
def client(server: TeleradServer) -> DICOMwebClient:
    return https_client(server, token=server.run("token", "create", USER).stdout.strip())


def encoded(dataset: pydicom.Dataset) -> bytes:
    """Return the Part 10 bytes dicomweb-client sends for `dataset`."""
    output = io.BytesIO()
    pydicom.dcmwrite(output, dataset)
    return output.getvalue()


def dataset_part(data: bytes) -> bytes:
    meta = header.read_file_meta(data)
    assert meta is not None
    return data[meta.dataset_offset:]


def test_store_instances_over_https(server, client, sample_file):
    # RG1_J2KR.dcm is 4.3 MB, so dicomweb-client sends the body with chunked transfer encoding.
    names = ("CT_small.dcm", "MR_small.dcm", "RG1_J2KR.dcm")
    datasets = [pydicom.dcmread(sample_file(name)) for name in names]

    response = client.store_instances(datasets)

    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [dataset.SOPInstanceUID for dataset in datasets]
    assert "FailedSOPSequence" not in response
    index = server.index()
    for dataset in datasets:
        (row,) = index.rows_for(dataset.SOPInstanceUID)
        assert row.study_instance_uid == dataset.StudyInstanceUID
        sent = dataset_part(encoded(dataset))
        assert row.dataset_sha256 == hashlib.sha256(sent).hexdigest()
        assert dataset_part(row.path.read_bytes()) == sent
    stored_events = [event for event in index.events("instances-stored") if event["user"] == USER]
    assert {event["study_instance_uid"] for event in stored_events} == {dataset.StudyInstanceUID for dataset in datasets}


def test_store_to_other_study_is_409(server, client, sample_file):
    ct, mr = (pydicom.dcmread(sample_file(name)) for name in ("CT_small.dcm", "MR2_UNCR.dcm"))

    with pytest.raises(requests.HTTPError) as raised:
        client.store_instances([mr], study_instance_uid=ct.StudyInstanceUID)

    assert raised.value.response.status_code == 409
    assert server.index().rows_for(mr.SOPInstanceUID) == []


def test_chunked_upload_over_limit_is_413(server, client, sample_file):
    dataset = pydicom.dcmread(sample_file("RG1_UNCI.dcm"))
    assert len(encoded(dataset)) > MAX_UPLOAD_MB * 1024 * 1024

    with pytest.raises(requests.HTTPError) as raised:
        client.store_instances([dataset])

    assert raised.value.response.status_code == 413
    assert "TELERAD_DICOMWEB_MAX_UPLOAD_MB" in raised.value.response.text
    assert server.index().rows_for(dataset.SOPInstanceUID) == []


def test_store_with_unknown_token_is_401(server, sample_file):
    dataset = pydicom.dcmread(sample_file("JPEG2000.dcm"))

    with pytest.raises(requests.HTTPError) as raised:
        https_client(server, token="trt_not-a-real-token").store_instances([dataset])

    assert raised.value.response.status_code == 401
    assert raised.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.index().rows_for(dataset.SOPInstanceUID) == []
