"""WADO-RS on real sample files: instances, metadata, frames and bulk data (PS3.18 10.4)."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from telerad.archive import ingest
from telerad.archive.models import Instance
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.config import DuplicatePolicy
from telerad.dicomweb import dicomjson, metadata
from telerad.dicomweb.models import InstanceMetadata

pytestmark = pytest.mark.django_db

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
MULTIPART_OCTET = 'multipart/related; type="application/octet-stream"'

# Samples of every stored encoding that transcoding and frames must handle.
TRANSCODED_SAMPLES = [
    "CT_small.dcm",  # Explicit VR Little Endian, CT
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, colour
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE Lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "SC_rgb_rle_2frame.dcm",  # RLE, colour, two frames
    "examples_ybr_color.dcm",  # JPEG Baseline YBR_FULL_422, 30 frames
    "emri_small.dcm",  # native multi-frame MR
    "rtdose.dcm",  # Implicit VR, 32-bit, 15 frames
]


@pytest.fixture
def radiologist(make_user):
    return make_user("radiologist", "radiologist")


@pytest.fixture
def client(radiologist):
    client = Client()
    client.force_login(radiologist)
    return client


@pytest.fixture
def store(sample_file):
    """Store a named sample through the ingest path; return its dataset read from the stored file."""

    def store_sample(name: str, *, new_instance: bool = False) -> pydicom.Dataset:
        data = sample_file(name).read_bytes()
        if new_instance:
            # The MR_small variants share one SOP Instance UID; a copy gets its own.
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            data = buffer.getvalue()
        result = ingest.store_file(data, source=ingest.Source(kind="import"))
        assert result.outcome.succeeded, result.reason
        return pydicom.dcmread(stored_path(result.sop_instance_uid))

    return store_sample


def stored_path(sop_instance_uid: str):
    instance = Instance.objects.get(sop_instance_uid=sop_instance_uid)
    return ingest.default_storage().path(instance.storage_key)


def instance_url(ds: pydicom.Dataset) -> str:
    return f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def series_url(ds: pydicom.Dataset) -> str:
    return f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"


def parse_multipart(response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related response into (headers, content) pairs, checking the framing."""
    match = re.search(r"boundary=\"?([^\";]+)\"?", response["Content-Type"])
    assert match, response["Content-Type"]
    delimiter = b"--" + match.group(1).encode("ascii")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body.startswith(delimiter + b"\r\n")
    assert body.endswith(b"\r\n" + delimiter + b"--\r\n")
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 6)]
    parts = []
    for piece in inner.split(b"\r\n" + delimiter + b"\r\n"):
        header_block, _, content = piece.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in header_block.decode("ascii").split("\r\n"))
        parts.append((headers, content))
    return parts


def retrieve_events():
    return list(AuditEvent.objects.filter(action=Action.RETRIEVE).order_by("sequence"))


# Retrieve instances ------------------------------------------------------------


def test_instance_retrieve_is_byte_identical(client, store, sample_file):
    ds = store("CT_small.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT=MULTIPART_DICOM)

    assert response.status_code == 200
    assert response["Content-Type"].startswith(MULTIPART_DICOM)
    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
    assert content == stored_path(ds.SOPInstanceUID).read_bytes()
    assert content == sample_file("CT_small.dcm").read_bytes()


def test_study_retrieve_sends_every_instance_as_stored(client, store):
    stored = [store(name, new_instance=True) for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small.dcm")]
    study_uids = {ds.StudyInstanceUID for ds in stored}
    assert len(study_uids) == 1, "the MR_small variants share one study"

    response = client.get(f"/dicom-web/studies/{stored[0].StudyInstanceUID}", HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax=*")

    parts = parse_multipart(response)
    by_uid = {pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID: (headers, content) for headers, content in parts}
    for ds in stored:
        headers, content = by_uid[ds.SOPInstanceUID]
        assert content == stored_path(ds.SOPInstanceUID).read_bytes()
        assert headers["Content-Type"].endswith(f"transfer-syntax={ds.file_meta.TransferSyntaxUID}")


def test_stored_retrieve_announces_length(client, store):
    stored = [store(name, new_instance=True) for name in ("MR_small_RLE.dcm", "MR_small.dcm")]

    response = client.get(f"/dicom-web/studies/{stored[0].StudyInstanceUID}", HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax=*")

    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    assert body.count(stored_path(stored[1].SOPInstanceUID).read_bytes()) == 1


def test_transcoded_retrieve_has_no_length(client, store):
    ds = store("MR_small_RLE.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}")

    assert response.status_code == 200
    assert not response.has_header("Content-Length")
    assert len(parse_multipart(response)) == 1


def test_retrieve_stops_at_resized_file(client, store):
    ds = store("CT_small.dcm")
    path = stored_path(ds.SOPInstanceUID)
    response = client.get(instance_url(ds), HTTP_ACCEPT=MULTIPART_DICOM)
    announced = int(response["Content-Length"])
    original = path.read_bytes()

    path.write_bytes(original + b"\0\0")
    try:
        with pytest.raises(OSError, match="were announced"):
            b"".join(response.streaming_content)
    finally:
        path.write_bytes(original)
    assert announced == len(b"".join(client.get(instance_url(ds), HTTP_ACCEPT=MULTIPART_DICOM).streaming_content))


def test_asgi_servers_get_the_same_stream(client, store):
    ds = store("CT_small.dcm")
    response = client.get(instance_url(ds))

    async def collect():
        return [chunk async for chunk in response]

    body = b"".join(async_to_sync(collect)())

    assert body.count(stored_path(ds.SOPInstanceUID).read_bytes()) == 1
    assert body.endswith(b"--\r\n")


def test_series_retrieve_without_accept_sends_stored_files(client, store):
    ds = store("MR_small_RLE.dcm")

    response = client.get(series_url(ds))

    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.5"
    assert content == stored_path(ds.SOPInstanceUID).read_bytes()


@pytest.mark.parametrize("name", TRANSCODED_SAMPLES)
def test_transcoded_instance_keeps_pixels(client, store, name):
    ds = store(name)

    response = client.get(instance_url(ds), HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}")

    assert response.status_code == 200
    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == f"application/dicom; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    transcoded = pydicom.dcmread(io.BytesIO(content))
    assert transcoded.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
    assert transcoded.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert transcoded.SOPInstanceUID == ds.SOPInstanceUID
    assert content[128:132] == b"DICM"
    np.testing.assert_array_equal(transcoded.pixel_array, ds.pixel_array)


def test_transcoded_instance_keeps_other_attributes(client, store):
    ds = store("MR_small_bigendian.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}")

    ((_headers, content),) = parse_multipart(response)
    transcoded = pydicom.dcmread(io.BytesIO(content))
    for keyword in ("PatientName", "Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "SliceThickness", "SmallestImagePixelValue"):
        assert transcoded[keyword].value == ds[keyword].value, keyword


def test_unproducible_transfer_syntax_is_406(client, store):
    ds = store("MR_small_RLE.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50")

    assert response.status_code == 406
    assert "1.2.840.10008.1.2.4.50" in response.content.decode()
    assert not retrieve_events()


def test_mixed_syntaxes_sent_as_stored(client, store):
    first = store("MR_small_RLE.dcm")
    store("MR_small_jpeg_ls_lossless.dcm", new_instance=True)
    study_url = f"/dicom-web/studies/{first.StudyInstanceUID}"

    assert client.get(study_url, HTTP_ACCEPT=f"{MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2.5").status_code == 406
    syntaxes = {headers["Content-Type"] for headers, _ in parse_multipart(client.get(study_url, HTTP_ACCEPT=MULTIPART_DICOM))}
    assert syntaxes == {"application/dicom; transfer-syntax=1.2.840.10008.1.2.5", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80"}


def test_other_media_type_is_406(client, store):
    ds = store("CT_small.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT="image/png")

    assert response.status_code == 406


def test_406_list_works_as_accept(client, store):
    ds = store("CT_small.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT="image/png")

    message = response.content.decode()
    assert response.status_code == 406
    assert message.count(f"{MULTIPART_DICOM}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}") == 1
    listed = message.partition("Available: ")[2].strip()
    assert client.get(instance_url(ds), HTTP_ACCEPT=listed).status_code == 200


def test_malformed_accept_is_400(client, store):
    ds = store("CT_small.dcm")

    response = client.get(instance_url(ds), HTTP_ACCEPT="dicom")

    assert response.status_code == 400
    assert "'dicom'" in response.content.decode()


def test_empty_accept_parameter_is_400(client, store):
    ds = store("CT_small.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT="multipart/related; type=")

    message = response.content.decode()
    assert response.status_code == 400
    assert "'type='" in message
    assert "has no value" in message


def test_missing_resources_are_404(client, store):
    ds = store("CT_small.dcm")
    other = store("MR_small.dcm")
    cases = {
        "/dicom-web/studies/1.2.3.999": "Study 1.2.3.999 not found",
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/1.2.3.999": "Series 1.2.3.999 not found",
        # A series that exists, but in another study.
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{other.SeriesInstanceUID}": f"Series {other.SeriesInstanceUID} not found in study",
        f"{series_url(ds)}/instances/1.2.3.999": "Instance 1.2.3.999 not found",
        f"{series_url(ds)}/instances/{other.SOPInstanceUID}/metadata": f"Instance {other.SOPInstanceUID} not found",
        "/dicom-web/studies/1.2.3.999/metadata": "Study 1.2.3.999 not found",
    }
    for url, message in cases.items():
        response = client.get(url)

        assert response.status_code == 404, url
        assert message in response.content.decode(), url


def test_retrieve_writes_one_audit_event_per_study(client, store, radiologist):
    ds = store("CT_small.dcm")

    client.get(f"/dicom-web/studies/{ds.StudyInstanceUID}")

    (event,) = retrieve_events()
    assert event.user == radiologist.username
    assert event.study_instance_uid == ds.StudyInstanceUID
    assert event.patient_id == ds.PatientID
    assert str(ds.PatientName) not in event.detail


def test_retrieve_without_credentials_is_401(store):
    ds = store("CT_small.dcm")

    response = Client().get(instance_url(ds))

    assert response.status_code == 401
    assert not retrieve_events()


# Metadata ----------------------------------------------------------------------


def assert_matches_pydicom(document: dict, expected: dict) -> None:
    """Compare metadata with pydicom's DICOM JSON of the stored file, element by element.

    `expected` has every binary value inline; the metadata must have the
    same value inline, or a BulkDataURI when the value is over the limit.
    Group lengths (gggg,0000) are left out of the metadata.
    """
    expected = {tag: element for tag, element in expected.items() if not tag.endswith("0000")}
    assert sorted(document) == sorted(expected)
    for tag, element in document.items():
        wanted = expected[tag]
        if "BulkDataURI" in element:
            assert element["vr"] == wanted["vr"], tag
            assert len(base64.b64decode(wanted["InlineBinary"])) > dicomjson.BULK_DATA_THRESHOLD, tag
        elif element["vr"] == "SQ" and "Value" not in element:
            # An empty sequence has no Value, where pydicom writes an empty list.
            assert wanted.get("Value", []) == [], tag
        elif element["vr"] == "SQ":
            assert len(element["Value"]) == len(wanted["Value"]), tag
            for item, wanted_item in zip(element["Value"], wanted["Value"]):
                assert_matches_pydicom(item, wanted_item)
        else:
            assert element == wanted, tag


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "chrH31.dcm", "rtplan.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm"])
def test_instance_metadata_matches_pydicom(client, store, name):
    ds = store(name)

    response = client.get(instance_url(ds) + "/metadata", HTTP_ACCEPT="application/dicom+json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    (document,) = json.loads(response.content)
    assert document.pop("00020010") == {"vr": "UI", "Value": [ds.file_meta.TransferSyntaxUID]}
    assert_matches_pydicom(document, ds.to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0))


def test_metadata_carries_non_latin_names(client, store):
    ds = store("chrH31.dcm")

    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)

    (name,) = document["00100010"]["Value"]
    assert name == {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}


def test_metadata_has_what_viewers_need(client, store):
    ds = store("MR_small.dcm")

    (document,) = json.loads(client.get(series_url(ds) + "/metadata").content)

    keywords = [
        "Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "WindowCenter", "WindowWidth",
        "PhotometricInterpretation", "BitsAllocated", "BitsStored", "PixelRepresentation", "SOPClassUID", "SamplesPerPixel",
    ]
    for keyword in keywords:
        tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
        assert tag in document, keyword
    assert document["00280010"] == {"vr": "US", "Value": [64]}
    assert document["00280030"] == {"vr": "DS", "Value": [0.3125, 0.3125]}
    assert document["00281050"] == {"vr": "DS", "Value": [600]}
    assert document["00200013"] == {"vr": "IS", "Value": [1]}


def test_viewer_metadata_leaves_out_private_attributes(client, store):
    ds = store("CT_small.dcm")
    path = series_url(ds).removeprefix("/dicom-web") + "/metadata"

    full = client.get("/dicom-web" + path, HTTP_ACCEPT_ENCODING="gzip")
    for_viewer = client.get("/viewer/dicom-web" + path, HTTP_ACCEPT_ENCODING="gzip")

    assert for_viewer.status_code == 200
    assert for_viewer["ETag"] != full["ETag"]
    [complete] = json.loads(gzip.decompress(full.content))
    [reduced] = json.loads(gzip.decompress(for_viewer.content))
    private = {tag for tag in complete if int(tag[:4], 16) % 2}
    assert private, "CT_small.dcm has private attributes"
    assert reduced == {tag: value for tag, value in complete.items() if tag not in private}
    assert reduced["7FE00010"]["BulkDataURI"] == complete["7FE00010"]["BulkDataURI"]
    assert reduced["7FE00010"]["BulkDataURI"].startswith("http://testserver/dicom-web/")
    # One user viewing one study, through either root, is one audit record.
    assert len(retrieve_events()) == 1


def test_viewer_metadata_cached_apart(client, store):
    ds = store("CT_small.dcm")
    url = "/viewer" + series_url(ds) + "/metadata"
    first = client.get(url, HTTP_ACCEPT_ENCODING="gzip")

    second = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    plain = client.get(url)

    assert second.content == first.content
    assert gzip.decompress(first.content) == plain.content
    assert not any(int(tag[:4], 16) % 2 for tag in json.loads(plain.content)[0])


def test_ct_metadata_has_rescale(client, store):
    ds = store("CT_small.dcm")

    (document,) = json.loads(client.get(series_url(ds) + "/metadata").content)

    assert document["00281053"] == {"vr": "DS", "Value": [1]}
    assert document["00281052"] == {"vr": "DS", "Value": [-1024]}


def test_pixel_data_becomes_a_bulk_data_uri(client, store):
    ds = store("CT_small.dcm")

    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)

    assert document["7FE00010"] == {"vr": "OW", "BulkDataURI": f"http://testserver{instance_url(ds)}/bulkdata/7FE00010"}


def test_multi_frame_metadata_names_frame_count(client, store):
    ds = store("examples_ybr_color.dcm")

    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)

    assert document["00280008"] == {"vr": "IS", "Value": [30]}
    assert document["00020010"]["Value"] == ["1.2.840.10008.1.2.4.50"]
    assert document["7FE00010"]["vr"] == "OB"


def test_study_metadata_lists_every_instance(client, store):
    stored = [store(name, new_instance=True) for name in ("MR_small_RLE.dcm", "MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm")]

    documents = json.loads(client.get(f"/dicom-web/studies/{stored[0].StudyInstanceUID}/metadata").content)

    assert sorted(document["00080018"]["Value"][0] for document in documents) == sorted(ds.SOPInstanceUID for ds in stored)


def test_metadata_is_stored_and_reused(client, store):
    ds = store("CT_small.dcm")
    url = series_url(ds) + "/metadata"
    first = client.get(url).content

    row = InstanceMetadata.objects.get()
    assert row.dataset_sha256 == Instance.objects.get().dataset_sha256
    assert metadata.json_array([zlib.decompress(row.document)], origin="http://testserver") == first
    # A second request reads the stored document and does not open the file.
    stored_path(ds.SOPInstanceUID).rename(stored_path(ds.SOPInstanceUID).with_suffix(".away"))
    try:
        assert client.get(url).content == first
    finally:
        stored_path(ds.SOPInstanceUID).with_suffix(".away").rename(stored_path(ds.SOPInstanceUID))


def test_metadata_is_rebuilt_when_the_instance_is_replaced(client, store, sample_file, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, duplicate_policy=DuplicatePolicy.OVERWRITE)
    ds = store("CT_small.dcm")
    url = instance_url(ds) + "/metadata"
    client.get(url)
    changed = pydicom.dcmread(sample_file("CT_small.dcm"))
    changed.SeriesDescription = "replaced copy"
    buffer = io.BytesIO()
    changed.save_as(buffer, enforce_file_format=True)
    assert ingest.store_file(buffer.getvalue(), source=ingest.Source(kind="import")).outcome is ingest.Outcome.REPLACED

    (document,) = json.loads(client.get(url).content)

    assert document["0008103E"]["Value"] == ["replaced copy"]
    assert InstanceMetadata.objects.get().dataset_sha256 == Instance.objects.get().dataset_sha256


def test_metadata_request_writes_audit_event(client, store):
    ds = store("CT_small.dcm")

    client.get(series_url(ds) + "/metadata")

    (event,) = retrieve_events()
    assert event.study_instance_uid == ds.StudyInstanceUID
    assert "metadata" in event.detail


def test_series_metadata_takes_few_queries(client, store):
    stored = [store(name, new_instance=True) for name in ("MR_small_RLE.dcm", "MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm")]
    url = f"/dicom-web/studies/{stored[0].StudyInstanceUID}/metadata"
    client.get(url)

    with CaptureQueriesContext(connection) as queries:
        client.get(url)

    metadata_queries = [query["sql"] for query in queries.captured_queries if "dicomweb_instancemetadata" in query["sql"]]
    assert len(metadata_queries) == 1



def test_frame_request_reads_index_once(client, store):
    ds = store("CT_small.dcm")
    url = f"{instance_url(ds)}/frames/1"
    client.get(url)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)

    assert response.status_code == 200
    index_queries = [query["sql"] for query in queries.captured_queries if '"archive_' in query["sql"]]
    assert len(index_queries) == 1, index_queries


# Frames ------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSCODED_SAMPLES)
def test_frames_equal_pixel_array(client, store, name):
    ds = store(name)
    pixels = ds.pixel_array
    frame_count = int(ds.get("NumberOfFrames", 1) or 1)
    numbers = [1] if frame_count == 1 else [frame_count, 1]
    frames_of = (lambda number: pixels[number - 1]) if frame_count > 1 else (lambda number: pixels)

    response = client.get(f"{instance_url(ds)}/frames/{','.join(map(str, numbers))}", HTTP_ACCEPT=f"{MULTIPART_OCTET}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}")

    assert response.status_code == 200, response.content if not response.streaming else ""
    parts = parse_multipart(response)
    assert len(parts) == len(numbers)
    for number, (headers, content) in zip(numbers, parts):
        assert headers["Content-Type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
        expected = frames_of(number)
        frame = np.frombuffer(content, dtype=expected.dtype.newbyteorder("<")).reshape(expected.shape)
        np.testing.assert_array_equal(frame, expected)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg"),
        ("MR_small_jp2klossless.dcm", "image/jp2"),
        ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
        ("SC_rgb_rle_2frame.dcm", "image/dicom-rle"),
        ("SC_rgb_rle_2frame.dcm", "image/x-dicom-rle"),
        ("examples_ybr_color.dcm", "image/jpeg"),
    ],
)
def test_compressed_frames_are_sent_as_stored(client, store, name, media_type):
    ds = store(name)
    syntax = ds.file_meta.TransferSyntaxUID
    frame_count = int(ds.get("NumberOfFrames", 1) or 1)
    stored_frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=frame_count))

    response = client.get(f"{instance_url(ds)}/frames/{frame_count}", HTTP_ACCEPT=f'multipart/related; type="{media_type}"')

    ((headers, content),) = parse_multipart(response)
    assert response["Content-Type"].startswith(f'multipart/related; type="{media_type}"')
    assert headers["Content-Type"] == f"{media_type}; transfer-syntax={syntax}"
    assert content == stored_frames[-1]


def test_any_transfer_syntax_gets_frames_as_stored(client, store):
    ds = store("MR_small_jpeg_ls_lossless.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT=f"{MULTIPART_OCTET}; transfer-syntax=*")

    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80"
    assert content == next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))


def test_octet_stream_without_syntax_gets_decoded_frames(client, store):
    ds = store("MR_small_jpeg_ls_lossless.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT=MULTIPART_OCTET)

    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    assert content == ds.pixel_array.astype("<u2").tobytes()


def test_one_frame_as_single_part_body(client, store):
    ds = store("CT_small.dcm")
    accept = f"application/octet-stream; transfer-syntax=*, {MULTIPART_OCTET}; transfer-syntax=*; q=0.9"

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    assert response.content == ds.pixel_array.astype("<i2").tobytes()


def test_compressed_frame_stays_multipart(client, store):
    ds = store("MR_small_jpeg_ls_lossless.dcm")
    accept = f"application/octet-stream; transfer-syntax=*, {MULTIPART_OCTET}; transfer-syntax=*; q=0.9"

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT=accept)

    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.80"
    assert content == next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))


def test_single_part_of_big_endian_frame(client, store):
    ds = store("MR_small_bigendian.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT="application/octet-stream")

    assert response["Content-Type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    assert response.content == ds.pixel_array.astype("<i2").tobytes()


def test_equal_preference_keeps_multipart_frames(client, store):
    ds = store("CT_small.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT=f"application/octet-stream, {MULTIPART_OCTET}")

    assert response["Content-Type"].startswith("multipart/related")


def test_several_frames_need_multipart(client, store):
    ds = store("emri_small.dcm")
    url = f"{instance_url(ds)}/frames/1,2"

    response = client.get(url, HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")

    message = response.content.decode()
    assert response.status_code == 406
    assert "Several frames need a multipart/related response" in message
    assert "(application/octet-stream; transfer-syntax=*)" in message
    assert message.strip().endswith(f"Accept: {MULTIPART_OCTET}; transfer-syntax=*")
    assert len(parse_multipart(client.get(url, HTTP_ACCEPT=f"{MULTIPART_OCTET}; transfer-syntax=*"))) == 2


def test_several_frames_suggestion_keeps_range(client, store):
    ds = store("emri_small.dcm")

    url = f"{instance_url(ds)}/frames/1,2"

    response = client.get(url, HTTP_ACCEPT="application/*")

    assert response.status_code == 406
    assert response.content.decode().strip().endswith('Accept: multipart/related; type="application/*"')
    assert client.get(url, HTTP_ACCEPT='multipart/related; type="application/*"').status_code == 200


@pytest.mark.parametrize("frame_numbers", ["1", "1,2"])
def test_compressed_frames_need_multipart(client, store, frame_numbers):
    ds = store("SC_rgb_rle_2frame.dcm")
    address = f"{instance_url(ds)}/frames/{frame_numbers}"

    response = client.get(address, HTTP_ACCEPT="application/octet-stream; transfer-syntax=*")
    message = response.content.decode()
    suggested = message.rsplit("Accept: ", 1)[-1].strip()
    again = client.get(address, HTTP_ACCEPT=suggested)

    assert response.status_code == 406
    assert "Compressed frames come only in a multipart/related response" in message
    assert suggested == 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    assert again.status_code == 200
    assert again["Content-Type"].startswith("multipart/related")


def test_compressed_frames_406_lists_offers(client, store):
    ds = store("SC_rgb_rle_2frame.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1,2", HTTP_ACCEPT="image/png")

    message = response.content.decode()
    assert response.status_code == 406
    assert "Compressed frames" not in message
    assert 'Available: multipart/related; type="image/dicom-rle"; transfer-syntax=1.2.840.10008.1.2.5, multipart/related; type="image/x-dicom-rle"' in message


def pixel_data_bulk_address(client, ds) -> str:
    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)
    return document["7FE00010"]["BulkDataURI"].removeprefix("http://testserver")


def test_pixel_data_bulk_needs_multipart(client, store):
    ds = store("emri_small.dcm")

    response = client.get(pixel_data_bulk_address(client, ds), HTTP_ACCEPT="application/octet-stream")

    message = response.content.decode()
    assert response.status_code == 406
    assert "Several frames need a multipart/related response" in message
    assert message.strip().endswith(f"Accept: {MULTIPART_OCTET}")


def test_one_frame_pixel_data_bulk_406(client, store):
    # Bulk data of pixel data is multipart even for one frame, so the number of frames is not the reason.
    ds = store("CT_small.dcm")

    response = client.get(pixel_data_bulk_address(client, ds), HTTP_ACCEPT="application/octet-stream")

    message = response.content.decode()
    assert response.status_code == 406
    assert "Several frames" not in message
    assert f"Available: {MULTIPART_OCTET}; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}" in message


def test_frame_beyond_the_last_is_404(client, store):
    ds = store("SC_rgb_rle_2frame.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1,3")

    assert response.status_code == 404
    assert "Frame 3 not found" in response.content.decode()
    assert "2 frames" in response.content.decode()


def test_frame_zero_is_400(client, store):
    ds = store("CT_small.dcm")

    response = client.get(f"{instance_url(ds)}/frames/0")

    assert response.status_code == 400
    assert "frame 0" in response.content.decode()


def test_frames_of_instance_without_pixels_is_404(client, store):
    ds = store("rtplan.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1")

    assert response.status_code == 404
    assert "has no pixel data" in response.content.decode()


def test_uncompressed_frames_refuse_compressed_types(client, store):
    ds = store("CT_small.dcm")

    response = client.get(f"{instance_url(ds)}/frames/1", HTTP_ACCEPT='multipart/related; type="image/jpeg"')

    assert response.status_code == 406


# Conditional requests ----------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/frames/1", "/metadata", ""])
def test_unchanged_response_is_304(client, store, suffix):
    ds = store("CT_small.dcm")
    url = instance_url(ds) + suffix
    first = client.get(url)
    tag = first["ETag"]

    again = client.get(url, HTTP_IF_NONE_MATCH=tag)

    assert first.status_code == 200
    assert first["Cache-Control"] == "private, no-cache"
    assert "Accept" in [name.strip() for name in first["Vary"].split(",")]
    assert again.status_code == 304
    assert again["ETag"] == tag


def test_entity_tag_follows_accept_and_content(client, store, sample_file, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, duplicate_policy=DuplicatePolicy.OVERWRITE)
    ds = store("CT_small.dcm")
    url = instance_url(ds) + "/frames/1"
    tag = client.get(url)["ETag"]
    changed = pydicom.dcmread(sample_file("CT_small.dcm"))
    changed.WindowCenter = 40
    buffer = io.BytesIO()
    changed.save_as(buffer, enforce_file_format=True)

    other_accept = client.get(url, HTTP_ACCEPT=f"{MULTIPART_OCTET}; transfer-syntax=*", HTTP_IF_NONE_MATCH=tag)
    assert ingest.store_file(buffer.getvalue(), source=ingest.Source(kind="import")).outcome is ingest.Outcome.REPLACED
    replaced = client.get(url, HTTP_IF_NONE_MATCH=tag)

    assert other_accept.status_code == 200
    assert replaced.status_code == 200
    assert replaced["ETag"] != tag


# Bulk data ---------------------------------------------------------------------


def test_bulk_data_of_pixel_data_follows_metadata_uri(client, store):
    ds = store("CT_small.dcm")
    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)
    uri = document["7FE00010"]["BulkDataURI"].removeprefix("http://testserver")

    response = client.get(uri, HTTP_ACCEPT=MULTIPART_OCTET)

    ((headers, content),) = parse_multipart(response)
    assert headers["Content-Type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_VR_LITTLE_ENDIAN}"
    assert content == ds.PixelData


def test_nested_bulk_data_is_returned(client, store, sample_file):
    # A private OB value inside a sequence item, larger than the inline limit.
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    item = pydicom.Dataset()
    item.add_new(0x00091010, "LO", "TELERAD TEST")
    item.add_new(0x00091011, "OB", bytes(range(256)) * 8)
    ds.add_new(0x00091001, "LO", "TELERAD TEST")
    ds.add_new(0x00091002, "SQ", pydicom.Sequence([item]))
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert ingest.store_file(buffer.getvalue(), source=ingest.Source(kind="import")).outcome.succeeded
    (document,) = json.loads(client.get(instance_url(ds) + "/metadata").content)
    uri = document["00091002"]["Value"][0]["00091011"]["BulkDataURI"].removeprefix("http://testserver")
    assert uri.endswith("/bulkdata/00091002/0/00091011")

    multipart = client.get(uri)
    single = client.get(uri, HTTP_ACCEPT="application/octet-stream")

    ((_headers, content),) = parse_multipart(multipart)
    assert content == bytes(range(256)) * 8
    assert single["Content-Type"] == "application/octet-stream"
    assert single.content == bytes(range(256)) * 8


def test_big_endian_bulk_data_is_little_endian(client, store):
    ds = store("MR_small_bigendian.dcm")

    response = client.get(f"{instance_url(ds)}/bulkdata/7FE00010", HTTP_ACCEPT=MULTIPART_OCTET)

    ((_headers, content),) = parse_multipart(response)
    assert content == ds.pixel_array.astype("<i2").tobytes()


@pytest.mark.parametrize(("path", "status", "message"), [
    ("7FE0", 400, "is not a tag"),
    ("00540016/x/00181072", 400, "is not a tag"),
    ("60003000", 404, "(6000,3000) not found"),
    ("00540016/0/00181072", 404, "sequence (0054,0016) not found"),
    ("00100010", 404, "not a binary value"),
])
def test_bad_bulk_data_paths(client, store, path, status, message):
    ds = store("CT_small.dcm")

    response = client.get(f"{instance_url(ds)}/bulkdata/{path}")

    assert response.status_code == status
    assert message in response.content.decode()


def sample_paths() -> list:
    import data_store

    folders = [Path(pydicom.__file__).parent / "data" / "test_files", Path(pydicom.__file__).parent / "data" / "charset_files", Path(data_store.DataStore().data_path)]
    return sorted(path for folder in folders for path in folder.glob("*.dcm"))


@pytest.mark.parametrize("path", sample_paths(), ids=lambda path: path.name)
def test_json_encoder_matches_pydicom(path):
    try:
        expected = pydicom.dcmread(path).to_json_dict(bulk_data_element_handler=None, bulk_data_threshold=0)
    except Exception as exc:  # noqa: BLE001 - files pydicom itself cannot read or encode are no reference
        pytest.skip(f"pydicom cannot encode {path.name}: {exc}")

    document = dicomjson.dataset_json(pydicom.dcmread(path, defer_size=dicomjson.BULK_DATA_THRESHOLD), lambda tag_path: tag_path)

    assert_matches_pydicom(document, expected)


def test_metadata_sent_again_from_compressed_cache(client, store, make_user):
    ds = store("CT_small.dcm")
    url = series_url(ds) + "/metadata"
    first = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    second_reader = Client()
    second_reader.force_login(make_user("second", "radiologist"))

    with CaptureQueriesContext(connection) as queries:
        second = second_reader.get(url, HTTP_ACCEPT_ENCODING="gzip")

    assert second.status_code == 200
    assert second["Content-Encoding"] == "gzip"
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]
    assert [query for query in queries.captured_queries if "dicomweb_instancemetadata" in query["sql"]] == []
    assert len(retrieve_events()) == 2


def test_metadata_cache_follows_replaced_content(client, store, sample_file, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, duplicate_policy=DuplicatePolicy.OVERWRITE)
    ds = store("CT_small.dcm")
    url = series_url(ds) + "/metadata"
    before = client.get(url, HTTP_ACCEPT_ENCODING="gzip")

    changed = pydicom.dcmread(sample_file("CT_small.dcm"))
    changed.InstitutionName = "Second Hospital"
    buffer = io.BytesIO()
    changed.save_as(buffer, enforce_file_format=True)
    assert ingest.store_file(buffer.getvalue(), source=ingest.Source(kind="import")).outcome is ingest.Outcome.REPLACED
    after = client.get(url, HTTP_ACCEPT_ENCODING="gzip")

    assert after["ETag"] != before["ETag"]
    [document] = json.loads(gzip.decompress(after.content))
    assert document["00080080"]["Value"] == ["Second Hospital"]


def test_metadata_is_gzipped_when_accepted(client, store):
    ds = store("CT_small.dcm")
    url = series_url(ds) + "/metadata"
    plain = client.get(url)

    compressed = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")

    assert "Content-Encoding" not in plain
    assert compressed["Content-Encoding"] == "gzip"
    assert gzip.decompress(compressed.content) == plain.content
    assert "Accept-Encoding" in [name.strip() for name in compressed["Vary"].split(",")]
