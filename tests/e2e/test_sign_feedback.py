"""Signing on the exam page in headless Chromium against a real ``telerad serve``: a rejected signature's message is in view, beside the focused password field."""

from __future__ import annotations

import pytest

from .conftest import ServerFactory, TeleradServer
from .test_viewer import ARTIFACTS, CHROMIUM, playwright_api

pytestmark = pytest.mark.e2e

USERNAME = "sign-reader"
PASSWORD = "a long passphrase for the signing test"
FINDINGS = "A 6 mm nodule in the left upper lobe."
IMPRESSION = "Indeterminate pulmonary nodule."
# Wide enough for the viewer to sit beside the report, as radiologists read.
WIDE_SCREEN = {"width": 1600, "height": 1000}
EDITOR_TIMEOUT_MS = 30_000
EXAM_ID_QUERY = """
import json
from telerad.reading.models import Exam
print(json.dumps(list(Exam.objects.order_by("pk").values_list("pk", flat=True))))
"""


DRAFT_QUERY = """
import json
from telerad.reading.models import Report
sections = Report.objects.get(exam_id={exam_id}).sections
print(json.dumps({{key: sections.get(key) for key in ("findings", "impression")}}))
"""


@pytest.fixture(scope="module")
def server(module_server_factory: ServerFactory) -> TeleradServer:
    # Two-factor sign-in is covered by tests/accounts; an authenticator code works only once.
    server = module_server_factory.start(calling_ae_titles=["E2E_SIGN"], http_tls=True, two_factor_required=False)
    server.add_user(USERNAME, "radiologist", password=PASSWORD)
    return server


@pytest.fixture(scope="module")
def exam_id(server: TeleradServer, sample_finder) -> int:
    server.run("import", str(sample_finder("CT_small.dcm")))
    server.run("exams", "sync")
    exam_ids = server.query(EXAM_ID_QUERY)
    assert len(exam_ids) == 1, f"expected one exam, found {exam_ids}"
    return exam_ids[0]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def in_view(page, selector: str) -> bool:
    """Return whether the element's box lies inside the visible part of the window."""
    return page.evaluate(
        """(selector) => {
          const box = document.querySelector(selector).getBoundingClientRect();
          return box.top >= 0 && box.bottom <= window.innerHeight && box.height > 0;
        }""",
        selector,
    )


def test_wrong_password_message_in_view_with_focus(server, exam_id, browser):
    context = browser.new_context(ignore_https_errors=True, base_url=f"https://127.0.0.1:{server.http_port}", viewport=WIDE_SCREEN)
    page = context.new_page()
    try:
        page.goto("/login/")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)
        page.goto(f"/worklist/{exam_id}/")
        page.get_by_role("button", name="Claim and read").click()
        page.wait_for_selector(f"#report-{exam_id}-findings", timeout=EDITOR_TIMEOUT_MS)

        page.fill(f"#report-{exam_id}-findings", FINDINGS)
        page.fill(f"#report-{exam_id}-impression", IMPRESSION)
        page.fill(f"#sign-password-{exam_id}", "not the password")
        with page.expect_response(lambda response: response.url.endswith(f"/reports/exams/{exam_id}/sign/")) as signing:
            page.get_by_role("button", name="Sign final report").click()
        page.wait_for_selector(f"#sign-error-{exam_id}", timeout=EDITOR_TIMEOUT_MS)
        page.wait_for_function(f"document.activeElement && document.activeElement.id === 'sign-password-{exam_id}'", timeout=EDITOR_TIMEOUT_MS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "exam-page-wrong-password.png"))

        assert signing.value.status == 403
        assert "The password is not correct" in page.inner_text(f"#sign-error-{exam_id}")
        assert in_view(page, f"#sign-error-{exam_id}"), "the error message is outside the visible part of the page"
        assert in_view(page, f"#sign-password-{exam_id}")
        assert page.input_value(f"#report-{exam_id}-findings") == FINDINGS
        assert page.input_value(f"#report-{exam_id}-impression") == IMPRESSION
        assert page.input_value(f"#sign-password-{exam_id}") == ""
        page.wait_for_selector(f"#report-save-status-{exam_id}:has-text('Draft saved at')", timeout=EDITOR_TIMEOUT_MS)
    finally:
        context.close()
    assert server.query(DRAFT_QUERY.format(exam_id=exam_id)) == {"findings": FINDINGS, "impression": IMPRESSION}
