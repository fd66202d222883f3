"""Links from the exam page, the report page and the versions page to report PDFs, addenda and signed versions."""

from __future__ import annotations

import pytest

from telerad.reading.models import SignedReport

from tests.reading.reports_fixtures import PASSWORD, client_for, create_exam, htmx_client_for
from tests.reading.reports_fixtures import exam, radiologist, resident  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def sign_final_and_addendum(user, exam) -> list[SignedReport]:
    client = htmx_client_for(user)
    client.post(f"/reports/exams/{exam.pk}/sign/", {"revision": "0", "section-findings": "A nodule.", "password": PASSWORD})
    client.post(f"/reports/exams/{exam.pk}/addendum/", {"text": "An addendum.", "password": PASSWORD})
    signed = list(SignedReport.objects.filter(exam=exam).order_by("id"))
    assert [report.kind for report in signed] == ["final", "addendum"]
    return signed


@pytest.mark.parametrize("page_url", ["/worklist/{exam}/", "/reports/exams/{exam}/", "/reports/exams/{exam}/versions/"])
def test_pages_link_signed_pdfs(exam, radiologist, page_url):
    signed = sign_final_and_addendum(radiologist, exam)

    page = client_for(radiologist).get(page_url.format(exam=exam.pk)).content.decode()

    for report in signed:
        assert f'href="/reports/pdf/{report.pk}/"' in page


def test_preliminary_report_has_no_pdf_link(resident):
    exam = create_exam(claimed_by=resident)
    htmx_client_for(resident).post(f"/reports/exams/{exam.pk}/sign/", {"revision": "0", "section-findings": "A nodule.", "password": PASSWORD})
    preliminary = SignedReport.objects.get(exam=exam)

    page = client_for(resident).get(f"/worklist/{exam.pk}/").content.decode()

    assert preliminary.kind == "preliminary"
    assert "A nodule." in page
    assert f'href="/reports/pdf/{preliminary.pk}/"' not in page


def test_pdf_link_downloads_pdf(exam, radiologist):
    final = sign_final_and_addendum(radiologist, exam)[0]

    response = client_for(radiologist).get(f"/reports/pdf/{final.pk}/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"


def test_exam_page_offers_addendum_after_final(exam, radiologist):
    sign_final_and_addendum(radiologist, exam)

    page = client_for(radiologist).get(f"/worklist/{exam.pk}/").content.decode()

    assert f'href="/reports/exams/{exam.pk}/"' in page
    assert "Add an addendum" in page
    assert f'href="/reports/exams/{exam.pk}/versions/"' in page


def test_exam_page_hides_addendum_link(exam, radiologist, resident):
    sign_final_and_addendum(radiologist, exam)

    page = client_for(resident).get(f"/worklist/{exam.pk}/").content.decode()

    assert f'href="/reports/exams/{exam.pk}/"' not in page
    assert "Add an addendum" not in page


def test_exam_page_before_final_has_no_addendum_link(exam, radiologist):
    page = client_for(radiologist).get(f"/worklist/{exam.pk}/").content.decode()

    assert "Add an addendum" not in page
    assert f'href="/reports/exams/{exam.pk}/versions/"' not in page
