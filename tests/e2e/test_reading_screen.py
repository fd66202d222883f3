"""The exam page in headless Chromium against a real ``telerad serve``: OHIF framed beside the report, with the patient's priors."""

from __future__ import annotations

import pydicom
import pytest

from .conftest import ServerFactory, TeleradServer
from .test_viewer import ARTIFACTS, CHROMIUM, FIRST_IMAGE_TIMEOUT_MS, playwright_api, wait_for_image

pytestmark = pytest.mark.e2e

USERNAME = "screen-reader"
PASSWORD = "a long passphrase for the reading screen test"
# Wide enough for the viewer to sit beside the report (reading.css switches at 1200 px).
WIDE_SCREEN = {"width": 1600, "height": 1000}
NARROW_SCREEN = {"width": 900, "height": 1000}
# OHIF's date of the current study of PATIENT_HISTORY (20261120), as its viewport overlay shows it.
CURRENT_STUDY_DATE = "20-Nov-2026"
EXAM_ID_QUERY = """
import json
from telerad.reading.models import Exam
print(json.dumps(list(Exam.objects.filter(accession_number={accession!r}).values_list("pk", flat=True))))
"""


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    from telerad.viewer import install

    if install.installed_manifest() is None:
        pytest.fail("the OHIF viewer is not installed; scripts/setup-environment installs it")
    # Two-factor sign-in is covered by tests/accounts; an authenticator code works only once.
    server = module_server_factory.start(calling_ae_titles=["E2E_SCREEN"], http_tls=True, two_factor_required=False)
    server.add_user(USERNAME, "radiologist", password=PASSWORD)
    return server


@pytest.fixture(scope="module")
def current_exam(server: TeleradServer, tmp_path_factory) -> tuple[int, list[str]]:
    """Import a patient's current study and two priors, make their exams; return the current exam's id and the study UIDs, current first."""
    from telerad.core.demo import PATIENT_HISTORY, write_patient_history

    paths = write_patient_history(tmp_path_factory.mktemp("history"))
    if not paths:
        pytest.fail("pydicom-data is not installed; scripts/setup-environment test installs it")
    server.run("import", *map(str, paths))
    server.run("exams", "sync")
    current_accession = PATIENT_HISTORY[0][1]
    exam_ids = server.query(EXAM_ID_QUERY.format(accession=current_accession))
    assert len(exam_ids) == 1, f"expected one exam of accession {current_accession}, found {exam_ids}"
    uids = [str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID) for path in paths]
    return exam_ids[0], uids


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def signed_in_page(browser, server: TeleradServer, viewport: dict[str, int]):
    context = browser.new_context(ignore_https_errors=True, base_url=f"https://127.0.0.1:{server.http_port}", viewport=viewport)
    page = context.new_page()
    page.goto("/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    return context, page


def test_exam_page_frames_viewer_beside_report(server, current_exam, browser):
    exam_id, study_uids = current_exam
    context, page = signed_in_page(browser, server, WIDE_SCREEN)
    viewer_documents = []
    page.on("response", lambda response: viewer_documents.append(response) if response.request.resource_type == "document" and "/viewer/viewer" in response.url else None)
    try:
        exam_response = page.goto(f"/worklist/{exam_id}/")
        frame_element = page.wait_for_selector("iframe.viewer-frame[src]", timeout=FIRST_IMAGE_TIMEOUT_MS)
        frame = frame_element.content_frame()
        assert frame is not None
        pixels = wait_for_image(frame)
        overlay = frame.locator('[data-cy="viewport-overlay-top-left"]').first.inner_text()
        # The images of the current study and the history beside the viewer, both visible at once.
        frame_box = frame_element.bounding_box()
        history_box = page.locator("#clinical-heading").bounding_box()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "reading-screen.png"))

        assert pixels.std() > 5
        assert CURRENT_STUDY_DATE in overlay, f"the viewport shows another study than the current one: {overlay!r}"
        assert history_box["x"] >= frame_box["x"] + frame_box["width"] - 1, "the clinical information is not beside the viewer"
        assert history_box["y"] < WIDE_SCREEN["height"]
        source = frame_element.get_attribute("src")
        assert all(uid in source for uid in study_uids), "the framed viewer does not open the current study with its priors"
        assert source.index(study_uids[0]) < source.index(study_uids[1])
        assert "frame-src 'self'" in exam_response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in exam_response.headers["content-security-policy"]
        assert exam_response.headers["x-frame-options"] == "DENY"
        assert viewer_documents, "the frame did not load the viewer"
        assert viewer_documents[0].headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in viewer_documents[0].headers["content-security-policy"]
        assert page.get_by_role("button", name="Open the viewer in its own window").count() == 1
    finally:
        context.close()


def test_narrow_screen_links_to_viewer(server, current_exam, browser):
    exam_id, _uids = current_exam
    context, page = signed_in_page(browser, server, NARROW_SCREEN)
    try:
        page.goto(f"/worklist/{exam_id}/")
        page.wait_for_load_state("networkidle")

        assert page.locator("iframe.viewer-frame").get_attribute("src") is None
        assert not page.locator("iframe.viewer-frame").is_visible()
        assert page.get_by_role("button", name="Open the viewer in its own window").is_visible()
    finally:
        context.close()


# Tabs that reach the claim button from the top of the page: the skip link, the header's links and "Back to the worklist".
MAX_TABS_TO_CLAIM = 20


def test_keyboard_reaches_claim_before_viewer(server, current_exam, browser):
    exam_id, _uids = current_exam
    context, page = signed_in_page(browser, server, WIDE_SCREEN)
    try:
        page.goto(f"/worklist/{exam_id}/")
        page.wait_for_selector("iframe.viewer-frame[src]", timeout=FIRST_IMAGE_TIMEOUT_MS)
        focused = []
        for _ in range(MAX_TABS_TO_CLAIM):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("() => document.activeElement.tagName + ' ' + document.activeElement.textContent.trim()"))
            if focused[-1] == "BUTTON Claim and read":
                break

        assert focused[-1] == "BUTTON Claim and read", f"the claim button was not reached: {focused}"
        assert not any(element.startswith("IFRAME") for element in focused), f"the viewer took the focus before the claim: {focused}"
    finally:
        context.close()


def test_header_shares_reading_theme(server, current_exam, browser):
    exam_id, _uids = current_exam
    context, page = signed_in_page(browser, server, WIDE_SCREEN)
    try:
        page.goto(f"/worklist/{exam_id}/")
        page.wait_for_load_state("networkidle")
        # Pico paints the page's background on the html element; the regions inside should let it show through.
        backgrounds = page.evaluate("""() => ['html', 'body', 'body > header', 'main', '.reading-screen'].map(
            selector => getComputedStyle(document.querySelector(selector)).backgroundColor)""")
        page_background = backgrounds[0]
        red, green, blue = (int(value) for value in page_background.removeprefix("rgb(").removesuffix(")").split(","))

        assert max(red, green, blue) < 64, f"the page is not dark: {backgrounds}"
        for background in backgrounds[1:]:
            assert background in (page_background, "rgba(0, 0, 0, 0)"), f"a region has its own background: {backgrounds}"
    finally:
        context.close()
