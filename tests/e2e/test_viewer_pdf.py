"""A report's Encapsulated PDF in the OHIF viewer, in headless Chromium against a real ``telerad serve``: the policy lets its viewport load it."""

from __future__ import annotations

import io

import numpy
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from tests.conftest import pydicom_test_files

from .conftest import ServerFactory, TeleradServer
from .test_viewer import ARTIFACTS, CHROMIUM, FIRST_IMAGE_TIMEOUT_MS, playwright_api

pytestmark = pytest.mark.e2e

USERNAME = "pdf-reader"
PASSWORD = "a long passphrase for the PDF viewer test"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
REPORT_LINE = "Encapsulated report for the viewer test"
ACCESSION = "PDF-VIEWER-1"
EXAM_ID_QUERY = f"""
import json
from telerad.reading.models import Exam
print(json.dumps(list(Exam.objects.filter(accession_number={ACCESSION!r}).values_list("pk", flat=True))))
"""
# OHIF's viewport is dark; the rendered page is white and fills more than a fifth of it, framed or not.
WHITE_PAGE_SHARE = 0.2
# Records every content security policy violation of the page and its frames.
VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


def encapsulated_pdf(folder) -> tuple[str, str]:
    """Write an Encapsulated PDF instance of a real one-page PDF into `folder`; return its path and Study Instance UID."""
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4)
    page.drawString(72, 770, REPORT_LINE)
    page.save()
    pdf = buffer.getvalue()

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["viewer-pdf", "instance"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["viewer-pdf", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["viewer-pdf", "series"])
    ds.PatientName = "Pdf^Patricia"
    ds.PatientID = "PDF-VIEWER-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = ds.ContentDate = "20260301"
    ds.StudyTime = ds.ContentTime = "101500"
    ds.AccessionNumber = ACCESSION
    ds.StudyID = "1"
    ds.Modality = "DOC"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = "Report (PDF)"
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Radiology report"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    path = folder / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path), str(ds.StudyInstanceUID)


def wait_for_pdf_viewer(page) -> bool:
    """Wait up to 10 s for Chromium's PDF viewer, an extension frame inside the object; return whether it loaded."""
    for _ in range(20):
        if any(frame.url.startswith("chrome-extension://") for frame in page.frames):
            return True
        page.wait_for_timeout(500)
    return False


def wait_for_white_page(page, pdf_object) -> float:
    """Wait up to 20 s for the PDF's white page to fill part of the dark viewport; return the white share of the viewport."""
    share = 0.0
    for _ in range(40):
        picture = Image.open(io.BytesIO(page.screenshot(clip=pdf_object.bounding_box()))).convert("L")
        share = float((numpy.asarray(picture) > 245).mean())
        if share > WHITE_PAGE_SHARE:
            return share
        page.wait_for_timeout(500)
    return share


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    from telerad.viewer import install

    if install.installed_manifest() is None:
        pytest.fail("the OHIF viewer is not installed; scripts/setup-environment installs it")
    server = module_server_factory.start(calling_ae_titles=["E2E_PDF"], http_tls=True, two_factor_required=False)
    server.add_user(USERNAME, "radiologist", password=PASSWORD)
    return server


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def ct_image_of_study(folder, study_uid: str) -> str:
    """Write pydicom's CT_small.dcm as a second series of the PDF's study, after it in series order; return its path.

    Only a study with images becomes an exam, as an image study with a report stored back into it does.
    """
    ds = pydicom.dcmread(pydicom_test_files() / "CT_small.dcm")
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["viewer-pdf", "ct-series"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["viewer-pdf", "ct-instance"])
    ds.PatientName = "Pdf^Patricia"
    ds.PatientID = "PDF-VIEWER-1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20260301"
    ds.StudyTime = "101500"
    ds.AccessionNumber = ACCESSION
    ds.SeriesNumber = 2
    path = folder / "ct.dcm"
    ds.save_as(path, enforce_file_format=True)
    return str(path)


@pytest.fixture(scope="module")
def pdf_study(server, tmp_path_factory) -> str:
    """Import the Encapsulated PDF and a CT image of one study and make its exam; return its Study Instance UID."""
    folder = tmp_path_factory.mktemp("pdf")
    path, study_uid = encapsulated_pdf(folder)
    server.run("import", path, ct_image_of_study(folder, study_uid))
    server.run("exams", "sync")
    return study_uid


def signed_in_page(browser, server: TeleradServer, viewport: dict[str, int]):
    context = browser.new_context(ignore_https_errors=True, base_url=f"https://127.0.0.1:{server.http_port}", viewport=viewport)
    context.add_init_script(VIOLATION_RECORDER)
    page = context.new_page()
    page.goto("/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    return context, page


def test_pdf_viewport_loads_without_policy_violation(server, browser, pdf_study):
    context, page = signed_in_page(browser, server, {"width": 1280, "height": 900})
    console = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(f"/viewer/viewer?StudyInstanceUIDs={pdf_study}")
        pdf_object = page.wait_for_selector('object[type="application/pdf"][data^="blob:"]', timeout=FIRST_IMAGE_TIMEOUT_MS)
        viewer_loaded = wait_for_pdf_viewer(page)
        white_share = wait_for_white_page(page, pdf_object)
        violations = page.evaluate("window.__cspViolations")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-encapsulated-pdf.png"))

        assert pdf_object.get_attribute("data").startswith(f"blob:https://127.0.0.1:{server.http_port}/")
        assert [text for text in console if "Content Security Policy" in text] == []
        assert violations == []
        assert viewer_loaded, "Chromium's PDF viewer did not load into the viewport"
        assert white_share > WHITE_PAGE_SHARE, f"the viewport shows no rendered page: {white_share:.0%} of it is white"
        assert not page.get_by_text("No online PDF viewer installed").is_visible()
    finally:
        context.close()


def test_pdf_viewport_loads_in_exam_page(server, browser, pdf_study):
    exam_ids = server.query(EXAM_ID_QUERY)
    assert len(exam_ids) == 1, f"expected one exam of accession {ACCESSION}, found {exam_ids}"
    # Wide enough for the exam page to frame the viewer beside the report.
    context, page = signed_in_page(browser, server, {"width": 1600, "height": 1000})
    console = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(f"/worklist/{exam_ids[0]}/")
        frame = page.wait_for_selector("iframe.viewer-frame[src]", timeout=FIRST_IMAGE_TIMEOUT_MS).content_frame()
        pdf_object = frame.wait_for_selector('object[type="application/pdf"][data^="blob:"]', timeout=FIRST_IMAGE_TIMEOUT_MS)
        viewer_loaded = wait_for_pdf_viewer(page)
        white_share = wait_for_white_page(page, pdf_object)
        page.screenshot(path=str(ARTIFACTS / "exam-page-encapsulated-pdf.png"))

        assert [text for text in console if "Content Security Policy" in text] == []
        assert frame.evaluate("window.__cspViolations") == []
        assert viewer_loaded, "Chromium's PDF viewer did not load into the framed viewport"
        assert white_share > WHITE_PAGE_SHARE, f"the framed viewport shows no rendered page: {white_share:.0%} of it is white"
    finally:
        context.close()
