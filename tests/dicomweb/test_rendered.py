"""Rendered images and thumbnails over DICOMweb, checked against pixels computed here from pydicom."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pydicom
import pytest
from django.contrib.auth.models import User
from django.test import Client
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from telerad.archive.ingest import Outcome, Source, default_storage, store_file
from telerad.archive.models import Instance
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.dicomweb import thumbnails

pytestmark = pytest.mark.django_db

MULTIPART_PNG = 'multipart/related; type="image/png"'


@pytest.fixture(autouse=True)
def empty_thumbnail_cache():
    # The data folder outlives each test's database, so cached thumbnails would too.
    shutil.rmtree(thumbnails.cache_dir(), ignore_errors=True)
    yield
    shutil.rmtree(thumbnails.cache_dir(), ignore_errors=True)


@pytest.fixture
def radiologist(make_user) -> Client:
    client = Client()
    client.force_login(make_user("radiologist", "radiologist"))
    return client


@pytest.fixture
def stored(sample_file):
    """Store a sample by name into the archive and return its Instance row."""

    def store(name: str) -> Instance:
        return store_bytes(sample_file(name).read_bytes())

    return store


def store_bytes(content: bytes) -> Instance:
    result = store_file(content, source=Source(kind="import"))
    assert result.outcome is Outcome.STORED, result.reason
    return Instance.objects.select_related("series__study__patient").get(sop_instance_uid=result.sop_instance_uid)


def url(row: Instance, suffix: str) -> str:
    series = row.series
    return f"/dicom-web/studies/{series.study.study_instance_uid}/series/{series.series_instance_uid}/instances/{row.sop_instance_uid}/{suffix}"


def series_url(row: Instance, suffix: str) -> str:
    return f"/dicom-web/studies/{row.series.study.study_instance_uid}/series/{row.series.series_instance_uid}/{suffix}"


def study_url(row: Instance, suffix: str) -> str:
    return f"/dicom-web/studies/{row.series.study.study_instance_uid}/{suffix}"


def decoded(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, computed in float64 with an 8-bit output range."""
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    inside = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.where(values <= low, 0.0, np.where(values > high, 255.0, inside))


def modality_values(dataset: pydicom.Dataset, frame: np.ndarray | None = None) -> np.ndarray:
    pixels = dataset.pixel_array if frame is None else frame
    return pixels.astype(np.float64) * float(dataset.get("RescaleSlope", 1)) + float(dataset.get("RescaleIntercept", 0))


def multipart_parts(response) -> tuple[str, list[bytes]]:
    content_type = response["Content-Type"]
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    body = b"".join(response.streaming_content)
    assert body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        headers, _blank, content = chunk.partition(b"\r\n\r\n")
        parts.append(content[: -len(b"\r\n")])
    return content_type, parts


# Greyscale pipeline


def test_ct_window_matches_the_linear_formula(radiologist, stored, sample_file):
    row = stored("CT_small.dcm")
    expected = linear_window(modality_values(pydicom.dcmread(sample_file("CT_small.dcm"))), 40, 400)

    response = radiologist.get(url(row, "rendered"), {"window": "40,400,linear"}, HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    rendered = decoded(response.content).astype(np.float64)
    assert rendered.shape == (128, 128)
    assert np.abs(rendered - expected).max() <= 1


def test_ct_without_window_uses_the_stored_window(radiologist, stored, sample_file):
    row = stored("693_UNCI.dcm")
    dataset = pydicom.dcmread(sample_file("693_UNCI.dcm"))
    expected = linear_window(modality_values(dataset), float(dataset.WindowCenter), float(dataset.WindowWidth))

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    assert np.abs(decoded(response.content).astype(np.float64) - expected).max() <= 1


def test_linear_exact_and_sigmoid_windows_follow_their_formulas(radiologist, stored, sample_file):
    row = stored("CT_small.dcm")
    values = modality_values(pydicom.dcmread(sample_file("CT_small.dcm")))
    exact = np.clip(((values - 40) / 400 + 0.5) * 255, 0, 255)
    sigmoid = 255 / (1 + np.exp(-4 * (values - 40) / 400))

    exact_response = radiologist.get(url(row, "rendered"), {"window": "40,400,linear-exact"}, HTTP_ACCEPT="image/png")
    sigmoid_response = radiologist.get(url(row, "rendered"), {"window": "40,400,sigmoid"}, HTTP_ACCEPT="image/png")

    assert np.abs(decoded(exact_response.content) - exact).max() <= 1
    assert np.abs(decoded(sigmoid_response.content) - sigmoid).max() <= 1


def test_monochrome1_is_inverted(radiologist, stored, sample_file):
    row = stored("RG3_UNCR.dcm")
    dataset = pydicom.dcmread(sample_file("RG3_UNCR.dcm"))
    assert dataset.PhotometricInterpretation == "MONOCHROME1"
    expected = 255 - linear_window(modality_values(dataset), 550, 1024)

    response = radiologist.get(url(row, "rendered"), {"window": "550,1024"}, HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert np.abs(decoded(response.content).astype(np.float64) - expected).max() <= 1


def test_jpeg_2000_renders_as_its_uncompressed_original(radiologist, stored, sample_file):
    row = stored("MR_small_jp2klossless.dcm")
    expected = linear_window(modality_values(pydicom.dcmread(sample_file("MR_small.dcm"))), 600, 1200)

    response = radiologist.get(url(row, "rendered"), {"window": "600,1200"}, HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert np.abs(decoded(response.content).astype(np.float64) - expected).max() <= 1


def test_jpeg_ls_renders_as_its_uncompressed_original(radiologist, stored, sample_file):
    row = stored("MR_small_jpeg_ls_lossless.dcm")
    expected = linear_window(modality_values(pydicom.dcmread(sample_file("MR_small.dcm"))), 600, 1200)

    response = radiologist.get(url(row, "rendered"), {"window": "600,1200"}, HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert np.abs(decoded(response.content).astype(np.float64) - expected).max() <= 1


def test_image_without_window_spans_its_minimum_to_maximum(radiologist, stored, sample_file):
    row = stored("emri_small.dcm")
    dataset = pydicom.dcmread(sample_file("emri_small.dcm"))
    assert "WindowCenter" not in dataset
    assert "VOILUTSequence" not in dataset
    values = modality_values(dataset, dataset.pixel_array[0])
    expected = (values - values.min()) / (values.max() - values.min()) * 255

    response = radiologist.get(url(row, "frames/1/rendered"), HTTP_ACCEPT="image/png")

    assert np.abs(decoded(response.content) - expected).max() <= 1


def test_modality_lut_sequence_is_applied(radiologist, stored, sample_file):
    row = stored("mlut_18.dcm")
    dataset = pydicom.dcmread(sample_file("mlut_18.dcm"))
    assert "ModalityLUTSequence" in dataset
    values = apply_modality_lut(dataset.pixel_array, dataset).astype(np.float64)
    expected = (values - values.min()) / (values.max() - values.min()) * 255

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    assert np.abs(decoded(response.content) - expected).max() <= 1


def test_voi_lut_sequence_is_applied(radiologist, stored, sample_file):
    row = stored("vlut_04.dcm")
    dataset = pydicom.dcmread(sample_file("vlut_04.dcm"))
    bits = dataset.VOILUTSequence[0].LUTDescriptor[2]
    expected = apply_voi_lut(dataset.pixel_array, dataset, index=0).astype(np.float64) * 255 / (2**bits - 1)

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    assert np.abs(decoded(response.content) - expected).max() <= 1


def test_enhanced_ct_uses_its_functional_groups(radiologist, stored, sample_file):
    row = stored("eCT_Supplemental.dcm")
    dataset = pydicom.dcmread(sample_file("eCT_Supplemental.dcm"))
    shared = dataset.SharedFunctionalGroupsSequence[0]
    rescale = shared.PixelValueTransformationSequence[0]
    window = shared.FrameVOILUTSequence[0]
    values = dataset.pixel_array[1].astype(np.float64) * float(rescale.RescaleSlope) + float(rescale.RescaleIntercept)
    expected = linear_window(values, float(window.WindowCenter), float(window.WindowWidth))

    response = radiologist.get(url(row, "frames/2/rendered"), HTTP_ACCEPT="image/png")

    assert np.abs(decoded(response.content) - expected).max() <= 1


# Colour


def test_rgb_is_rendered_unchanged(radiologist, stored, sample_file):
    row = stored("SC_rgb.dcm")
    expected = pydicom.dcmread(sample_file("SC_rgb.dcm")).pixel_array

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert np.array_equal(decoded(response.content), expected)


def test_ybr_jpeg_is_converted_to_rgb(radiologist, stored, sample_file):
    row = stored("SC_rgb_dcmtk_+eb+cy+np.dcm")
    assert pydicom.dcmread(sample_file("SC_rgb_dcmtk_+eb+cy+np.dcm")).PhotometricInterpretation == "YBR_FULL_422"
    # The same image decompressed to RGB by another toolkit.
    reference = pydicom.dcmread(sample_file("SC_rgb_dcmtk_ebcynp_dcmd.dcm")).pixel_array.astype(np.int16)

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    difference = np.abs(decoded(response.content).astype(np.int16) - reference)
    assert difference.mean() < 1
    assert difference.max() <= 8


def test_palette_colour_goes_through_its_lookup_tables(radiologist, stored, sample_file):
    row = stored("examples_palette.dcm")
    dataset = pydicom.dcmread(sample_file("examples_palette.dcm"))
    expected = (apply_color_lut(dataset.pixel_array, dataset) >> 8).astype(np.uint8)

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert np.array_equal(decoded(response.content), expected)


def test_colour_ignores_the_window(radiologist, stored):
    row = stored("SC_rgb.dcm")

    plain = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")
    windowed = radiologist.get(url(row, "rendered"), {"window": "10,20"}, HTTP_ACCEPT="image/png")

    assert plain.content == windowed.content


# Multi-frame


def test_multi_frame_multipart_part_per_frame(radiologist, stored):
    row = stored("emri_small.dcm")

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT=MULTIPART_PNG)

    content_type, parts = multipart_parts(response)
    assert content_type.startswith('multipart/related; type="image/png"')
    assert len(parts) == 10
    for number, part in enumerate(parts, start=1):
        single = radiologist.get(url(row, f"frames/{number}/rendered"), HTTP_ACCEPT="image/png")
        assert part == single.content


def test_multi_frame_without_multipart_is_its_first_frame(radiologist, stored):
    row = stored("emri_small.dcm")

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")
    first = radiologist.get(url(row, "frames/1/rendered"), HTTP_ACCEPT="image/png")

    assert response["Content-Type"] == "image/png"
    assert response.content == first.content


def test_frame_list_as_multipart_keeps_the_requested_order(radiologist, stored):
    row = stored("emri_small.dcm")

    _content_type, parts = multipart_parts(radiologist.get(url(row, "frames/3,1/rendered"), HTTP_ACCEPT=MULTIPART_PNG))

    assert parts[0] == radiologist.get(url(row, "frames/3/rendered"), HTTP_ACCEPT="image/png").content
    assert parts[1] == radiologist.get(url(row, "frames/1/rendered"), HTTP_ACCEPT="image/png").content


def test_single_frame_as_multipart_has_one_part(radiologist, stored):
    row = stored("CT_small.dcm")

    _content_type, parts = multipart_parts(radiologist.get(url(row, "rendered"), HTTP_ACCEPT=MULTIPART_PNG))

    assert parts == [radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png").content]


def test_frame_list_without_multipart_is_406(radiologist, stored):
    row = stored("emri_small.dcm")

    response = radiologist.get(url(row, "frames/1,2/rendered"), HTTP_ACCEPT="image/jpeg")

    assert response.status_code == 406


def test_frame_beyond_the_last_is_404(radiologist, stored):
    row = stored("emri_small.dcm")

    response = radiologist.get(url(row, "frames/11/rendered"))

    assert response.status_code == 404
    assert "has 10 frames" in response.content.decode()


def test_frame_zero_is_400(radiologist, stored):
    row = stored("emri_small.dcm")

    response = radiologist.get(url(row, "frames/0/rendered"))

    assert response.status_code == 400
    assert "start at 1" in response.content.decode()


# Media types


def test_default_media_type_is_jpeg(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"))

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


@pytest.mark.parametrize(("accept", "media_type", "image_format"), [("image/png", "image/png", "PNG"), ("image/gif", "image/gif", "GIF"), ("image/*", "image/jpeg", "JPEG")])
def test_accept_chooses_the_format(radiologist, stored, accept, media_type, image_format):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT=accept)

    assert response["Content-Type"] == media_type
    assert Image.open(io.BytesIO(response.content)).format == image_format


def test_accept_query_parameter_replaces_the_header(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), {"accept": "image/png"}, HTTP_ACCEPT="image/jpeg")

    assert response["Content-Type"] == "image/png"


def test_unacceptable_media_type_is_406(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="application/dicom")

    assert response.status_code == 406
    assert "image/jpeg" in response.content.decode()


def test_quality_changes_the_jpeg_size(radiologist, stored):
    row = stored("CT_small.dcm")

    low = radiologist.get(url(row, "rendered"), {"quality": "10"})
    high = radiologist.get(url(row, "rendered"), {"quality": "100"})

    assert len(low.content) < len(high.content)


# Viewport


@pytest.mark.parametrize(
    ("viewport", "size"),
    [("64,32", (32, 32)), ("256,256", (256, 256)), ("64,64,0,0,64,32", (64, 32)), ("10,100", (10, 10))],
)
def test_viewport_fits_keeping_aspect_ratio(radiologist, stored, viewport, size):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), {"viewport": viewport})

    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == size


def test_viewport_fits_a_tall_image(radiologist, stored):
    row = stored("JPEG2000.dcm")

    response = radiologist.get(url(row, "rendered"), {"viewport": "128,128"})

    assert Image.open(io.BytesIO(response.content)).size == (32, 128)


def test_viewport_negative_width_flips_horizontally(radiologist, stored):
    row = stored("CT_small.dcm")

    plain = decoded(radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png").content)
    flipped = decoded(radiologist.get(url(row, "rendered"), {"viewport": "128,128,0,0,-128,128"}, HTTP_ACCEPT="image/png").content)

    assert np.array_equal(flipped, plain[:, ::-1])


def test_viewport_region_outside_the_image_is_400(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), {"viewport": "64,64,500,0,10,10"})

    assert response.status_code == 400
    assert "viewport" in response.content.decode()


# Bad parameters


@pytest.mark.parametrize(
    ("parameters", "named", "problem"),
    [
        ({"window": "abc,400"}, "window", "'abc' is not a number"),
        ({"window": "40,nan"}, "window", "'nan' is not a number"),
        ({"window": "40"}, "window", "expected center,width"),
        ({"window": "40,0"}, "window", "greater than 0"),
        ({"window": "40,-5,sigmoid"}, "window", "greater than 0"),
        ({"window": "40,0.5,linear"}, "window", "at least 1"),
        ({"window": "40,400,cubic"}, "window", "'cubic' is not one of"),
        ({"viewport": "0,64"}, "viewport", "vw 0"),
        ({"viewport": "64,-1"}, "viewport", "vh -1"),
        ({"viewport": "64"}, "viewport", "expected vw,vh"),
        ({"viewport": "64,64,0,0,0,10"}, "viewport", "must not be 0"),
        ({"viewport": "64,64,-1,0,10,10"}, "viewport", "must not be negative"),
        ({"viewport": "64.5,64"}, "viewport", "not a whole number"),
        ({"viewport": "100000,64"}, "viewport", "from 1 to 8192"),
        ({"quality": "0"}, "quality", "not from 1 to 100"),
        ({"quality": "101"}, "quality", "not from 1 to 100"),
        ({"quality": "high"}, "quality", "not a whole number"),
    ],
)
def test_bad_parameter_is_400_naming_it(radiologist, stored, parameters, named, problem):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered"), parameters)

    assert response.status_code == 400
    message = response.content.decode()
    assert f"query parameter {named}" in message
    assert problem in message


def test_repeated_parameter_is_400(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered") + "?quality=10&quality=20")

    assert response.status_code == 400
    assert "only once" in response.content.decode()


def test_annotation_is_accepted_and_ignored(radiologist, stored):
    row = stored("CT_small.dcm")

    plain = radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png")
    annotated = radiologist.get(url(row, "rendered"), {"annotation": "patient,technique"}, HTTP_ACCEPT="image/png")

    assert annotated.status_code == 200
    assert annotated.content == plain.content


# Missing resources and non-images


def test_unknown_instance_is_404(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "rendered").replace(row.sop_instance_uid, "1.2.3.4"))

    assert response.status_code == 404


def test_series_of_another_study_is_404(radiologist, stored):
    ct = stored("CT_small.dcm")
    mr = stored("MR_small.dcm")
    path = f"/dicom-web/studies/{ct.series.study.study_instance_uid}/series/{mr.series.series_instance_uid}/rendered"

    response = radiologist.get(path)

    assert response.status_code == 404
    assert "not found in study" in response.content.decode()


def test_unknown_study_is_404(radiologist, db):
    assert radiologist.get("/dicom-web/studies/1.2.3.4/rendered").status_code == 404
    assert radiologist.get("/dicom-web/studies/1.2.3.4/thumbnail").status_code == 404


@pytest.mark.parametrize("suffix", ["rendered", "thumbnail"])
def test_structured_report_is_406_naming_why(radiologist, stored, suffix):
    row = stored("test-SR.dcm")

    response = radiologist.get(url(row, suffix))

    assert response.status_code == 406
    assert "no pixel data" in response.content.decode()


def test_study_without_images_has_no_thumbnail(radiologist, stored):
    row = stored("test-SR.dcm")

    response = radiologist.get(study_url(row, "thumbnail"))

    assert response.status_code == 406
    assert "no image instances" in response.content.decode()


def test_anonymous_request_is_401(client, stored):
    row = stored("CT_small.dcm")

    assert client.get(url(row, "rendered")).status_code == 401


# Study and series


def ct_series(sample_file, count: int) -> list[Instance]:
    """Store `count` copies of CT_small as one series, numbered 1 to count, each with its own window so that their renderings differ."""
    rows = []
    for number in range(1, count + 1):
        dataset = pydicom.dcmread(sample_file("CT_small.dcm"))
        dataset.SOPInstanceUID = f"{dataset.SOPInstanceUID}.{number}"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = number
        dataset.WindowCenter = 100 * number
        dataset.WindowWidth = 400
        buffer = io.BytesIO()
        dataset.save_as(buffer)
        rows.append(store_bytes(buffer.getvalue()))
    return rows


def test_series_rendered_instances_in_order(radiologist, sample_file):
    rows = ct_series(sample_file, 3)

    content_type, parts = multipart_parts(radiologist.get(series_url(rows[0], "rendered"), HTTP_ACCEPT=MULTIPART_PNG))

    assert content_type.startswith('multipart/related; type="image/png"')
    assert parts == [radiologist.get(url(row, "rendered"), HTTP_ACCEPT="image/png").content for row in rows]


def test_study_rendered_leaves_out_non_images(radiologist, stored, sample_file):
    ct = stored("CT_small.dcm")
    report = pydicom.dcmread(sample_file("test-SR.dcm"))
    report.StudyInstanceUID = ct.series.study.study_instance_uid
    report.PatientID = ct.series.study.patient.patient_id
    buffer = io.BytesIO()
    report.save_as(buffer)
    store_bytes(buffer.getvalue())

    _content_type, parts = multipart_parts(radiologist.get(study_url(ct, "rendered"), HTTP_ACCEPT="multipart/related"))

    assert len(parts) == 1
    assert Image.open(io.BytesIO(parts[0])).format == "JPEG"


def test_study_rendered_needs_multipart(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(study_url(row, "rendered"), HTTP_ACCEPT="image/jpeg")

    assert response.status_code == 406


# Thumbnails


def test_thumbnails_at_every_level_fit_128(radiologist, stored):
    row = stored("JPEG2000.dcm")

    for path in (study_url(row, "thumbnail"), series_url(row, "thumbnail"), url(row, "thumbnail"), url(row, "frames/1/thumbnail")):
        response = radiologist.get(path)
        assert response.status_code == 200, path
        assert response["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).size == (32, 128), path


def test_thumbnail_respects_the_viewport(radiologist, stored):
    row = stored("CT_small.dcm")

    response = radiologist.get(url(row, "thumbnail"), {"viewport": "40,40"}, HTTP_ACCEPT="image/png")

    assert response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (40, 40)


def test_series_and_study_thumbnails_show_the_middle_instance(radiologist, sample_file):
    rows = ct_series(sample_file, 3)
    middle = radiologist.get(url(rows[1], "thumbnail")).content

    assert radiologist.get(series_url(rows[0], "thumbnail")).content == middle
    assert radiologist.get(study_url(rows[0], "thumbnail")).content == middle
    assert radiologist.get(url(rows[0], "thumbnail")).content != middle


def test_multi_frame_thumbnail_shows_the_middle_frame(radiologist, stored):
    row = stored("emri_small.dcm")

    instance = radiologist.get(url(row, "thumbnail"), HTTP_ACCEPT="image/png")
    frame = radiologist.get(url(row, "frames/6/thumbnail"), HTTP_ACCEPT="image/png")

    assert instance.content == frame.content


def test_thumbnail_is_served_from_the_cache(radiologist, stored):
    row = stored("CT_small.dcm")
    first = radiologist.get(url(row, "thumbnail"))
    path = thumbnails.cache_path(row.sop_instance_uid, row.dataset_sha256, 1, "image/jpeg")
    assert path.read_bytes() == first.content
    # A cached entry is served as it is, so a changed entry shows that no rendering happened.
    path.write_bytes(first.content + b"cached")

    second = radiologist.get(url(row, "thumbnail"))

    assert second.content == first.content + b"cached"


def test_thumbnail_with_viewport_is_not_cached(radiologist, stored):
    row = stored("CT_small.dcm")

    radiologist.get(url(row, "thumbnail"), {"viewport": "40,40"})

    assert not thumbnails.cache_dir().exists() or not any(thumbnails.cache_dir().rglob("*.jpg"))


# Audit


def test_rendered_request_writes_one_retrieve_event(radiologist, stored):
    row = stored("CT_small.dcm")
    before = AuditEvent.objects.count()

    radiologist.get(url(row, "rendered"))

    events = list(AuditEvent.objects.order_by("sequence")[before:])
    assert len(events) == 1
    assert events[0].action == Action.RETRIEVE
    assert events[0].user == "radiologist"
    assert events[0].patient_id == row.series.study.patient.patient_id
    assert events[0].study_instance_uid == row.series.study.study_instance_uid
    assert row.sop_instance_uid in events[0].detail


def test_thumbnail_request_writes_a_retrieve_event(radiologist, stored):
    row = stored("CT_small.dcm")

    radiologist.get(study_url(row, "thumbnail"))

    assert AuditEvent.objects.filter(action=Action.RETRIEVE, study_instance_uid=row.series.study.study_instance_uid).count() == 1


def test_failed_request_writes_no_retrieve_event(radiologist, stored):
    row = stored("CT_small.dcm")

    radiologist.get(url(row, "rendered"), {"quality": "0"})

    assert not AuditEvent.objects.filter(action=Action.RETRIEVE).exists()


def test_missing_stored_file_is_500_without_its_path(radiologist, stored):
    row = stored("CT_small.dcm")
    path = default_storage().path(row.storage_key)
    moved = path.with_suffix(".moved")
    path.rename(moved)
    try:
        response = radiologist.get(url(row, "rendered"))
    finally:
        moved.rename(path)

    assert response.status_code == 500
    assert "could not be read" in response.content.decode()
    assert str(path) not in response.content.decode()
