"""WADO-RS of a real ``telerad serve`` over HTTPS, read by dicomweb-client with an API token."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import data_store
import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from .conftest import ServerFactory, TeleradServer

pytestmark = pytest.mark.e2e

SAMPLES = ["CT_small.dcm", "MR_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "examples_ybr_color.dcm"]
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory, sample_folder) -> TeleradServer:
    server = module_server_factory.start(calling_ae_titles=["E2E_WADO"], http_tls=True)
    server.run("import", "--quiet", str(sample_folder))
    server.add_user("reader", "radiologist")
    return server


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    folders = [Path(pydicom.__file__).parent / "data" / "test_files", Path(data_store.DataStore().data_path)]
    folder = tmp_path_factory.mktemp("samples")
    for name in SAMPLES:
        source = next(candidate / name for candidate in folders if (candidate / name).is_file())
        shutil.copy(source, folder / name)
    return folder


@pytest.fixture(scope="module")
def session(server) -> requests.Session:
    token = server.run("token", "create", "reader").stdout.strip().splitlines()[-1]
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE from the environment override session.verify,
    # and proxy variables must not divert traffic meant for 127.0.0.1.
    session.trust_env = False
    session.verify = str(server.data_dir / "tls" / "telerad.crt")
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture(scope="module")
def client(server, session) -> DICOMwebClient:
    return DICOMwebClient(url=f"https://127.0.0.1:{server.http_port}/dicom-web", session=session)


@pytest.fixture(scope="module")
def stored(server) -> dict[str, pydicom.Dataset]:
    """The stored files of the server, read with pydicom, by SOP Instance UID."""
    return {uid: pydicom.dcmread(row.path) for uid, row in server.index().instances.items()}


def stored_bytes(server: TeleradServer, sop_instance_uid: str) -> bytes:
    return server.index().instances[sop_instance_uid].path.read_bytes()


def multipart_contents(response: requests.Response) -> list[bytes]:
    boundary = re.search(r"boundary=\"?([^\";]+)\"?", response.headers["Content-Type"]).group(1).encode("ascii")
    delimiter = b"--" + boundary
    body = response.content
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 6)]
    return [piece.partition(b"\r\n\r\n")[2] for piece in inner.split(b"\r\n" + delimiter + b"\r\n")]


def test_retrieve_study_returns_every_instance(client, stored):
    study_uid = stored[next(iter(stored))].StudyInstanceUID
    expected = {uid for uid, ds in stored.items() if ds.StudyInstanceUID == study_uid}

    datasets = client.retrieve_study(study_uid)

    assert {ds.SOPInstanceUID for ds in datasets} == expected
    for ds in datasets:
        assert ds == stored[ds.SOPInstanceUID]


def test_retrieved_instances_are_byte_identical(server, session, stored):
    for uid, ds in stored.items():
        url = f"https://127.0.0.1:{server.http_port}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{uid}"

        response = session.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=30)

        assert response.status_code == 200
        assert multipart_contents(response) == [stored_bytes(server, uid)]


def test_retrieve_series_and_instance(client, stored):
    for uid, ds in stored.items():
        (series_instance,) = client.retrieve_series(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        instance = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, uid)

        assert series_instance == ds
        assert instance == ds


def test_retrieve_instance_transcoded_keeps_pixels(client, stored):
    for uid, ds in stored.items():
        instance = client.retrieve_instance(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, uid, media_types=(("application/dicom", EXPLICIT_VR_LITTLE_ENDIAN),),
        )

        assert instance.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
        np.testing.assert_array_equal(instance.pixel_array, ds.pixel_array)


def test_retrieve_series_metadata(client, stored):
    for uid, ds in stored.items():
        (document,) = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        metadata = pydicom.Dataset.from_json(document, bulk_data_uri_handler=lambda uri: b"")

        assert metadata.SOPInstanceUID == uid
        assert metadata.Rows == ds.Rows
        assert metadata.PatientName == ds.PatientName
        assert document["00020010"]["Value"] == [ds.file_meta.TransferSyntaxUID]
        assert document["7FE00010"]["BulkDataURI"].endswith(f"/series/{ds.SeriesInstanceUID}/instances/{uid}/bulkdata/7FE00010")


def test_bulk_data_uri_leads_to_pixel_data(server, session, stored):
    # dicomweb-client 0.61 sends a Host header without the port, so this request goes through requests alone.
    uid, ds = next((uid, ds) for uid, ds in stored.items() if ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN)
    url = f"https://127.0.0.1:{server.http_port}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
    (document,) = session.get(url, headers={"Accept": "application/dicom+json"}, timeout=30).json()
    uri = document["7FE00010"]["BulkDataURI"]

    response = session.get(uri, headers={"Accept": 'multipart/related; type="application/octet-stream"'}, timeout=30)

    assert uri.startswith(f"https://127.0.0.1:{server.http_port}/dicom-web/studies/")
    assert multipart_contents(response) == [ds.PixelData]


def test_retrieve_instance_frames_equal_pixels(client, stored):
    for uid, ds in stored.items():
        count = int(ds.get("NumberOfFrames", 1) or 1)
        numbers = [count, 1] if count > 1 else [1]
        pixels = ds.pixel_array if count > 1 else ds.pixel_array[np.newaxis]

        frames = client.retrieve_instance_frames(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, uid, frame_numbers=numbers,
            media_types=(("application/octet-stream", EXPLICIT_VR_LITTLE_ENDIAN),),
        )

        assert len(frames) == len(numbers)
        for number, frame in zip(numbers, frames):
            expected = pixels[number - 1]
            decoded = np.frombuffer(frame, dtype=expected.dtype.newbyteorder("<")).reshape(expected.shape)
            np.testing.assert_array_equal(decoded, expected)


def test_retrieve_compressed_frames_as_stored(client, stored):
    (uid, ds), = [(uid, ds) for uid, ds in stored.items() if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"]
    count = int(ds.NumberOfFrames)
    compressed = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=count))

    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, uid, frame_numbers=[2, 3], media_types=(("image/jls", "1.2.840.10008.1.2.4.80"),),
    )

    assert frames == compressed[1:3]


def test_frames_with_the_client_defaults(client, stored):
    # Without media types, dicomweb-client sends Accept: multipart/related; type="*/*".
    for uid, ds in stored.items():
        count = int(ds.get("NumberOfFrames", 1) or 1)

        frames = client.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, uid, frame_numbers=[1])

        if ds.file_meta.TransferSyntaxUID.is_compressed:
            expected = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=count))
            assert frames == [expected]
        else:
            pixels = ds.pixel_array if count == 1 else ds.pixel_array[0]
            decoded = np.frombuffer(frames[0], dtype=pixels.dtype.newbyteorder("<")).reshape(pixels.shape)
            np.testing.assert_array_equal(decoded, pixels)


def test_retrieves_are_audited(server, client, stored):
    ds = next(iter(stored.values()))
    client.retrieve_study(ds.StudyInstanceUID)

    events = server.index().events("retrieve")

    assert any(event["study_instance_uid"] == ds.StudyInstanceUID and event["user"] == "reader" for event in events)
    assert all(str(ds.PatientName) not in event["detail"] for event in events)
