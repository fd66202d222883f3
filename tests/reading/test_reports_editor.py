"""The report editor: showing a draft, autosave with revisions, changing the template, claims and draft audit events."""

from __future__ import annotations

import datetime
import re

import pytest

from telerad.audit.models import AuditEvent
from telerad.reading.models import ExamStatus, Report, ReportTemplate

from tests.reading.reports_fixtures import PATIENT_NAME, claim, client_for, create_exam, htmx_client_for
from tests.reading.reports_fixtures import exam, radiologist  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def editor_url(exam) -> str:
    return f"/reports/exams/{exam.pk}/"


def test_editor_shows_best_template_sections(exam, radiologist):
    response = client_for(radiologist).get(editor_url(exam))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="section-findings"' in page
    assert "Axial CT of the head without intravenous contrast" in page
    assert "Normal CT head" in page
    assert 'name="revision" id="report-revision-%d" value="0"' % exam.pk in page
    assert "<script>" not in page
    assert " style=" not in page


def test_editor_fragment_for_htmx(exam, radiologist):
    response = htmx_client_for(radiologist).get(editor_url(exam))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'class="report-editor"' in page
    assert "<html" not in page


def test_editor_view_is_audited_without_names(exam, radiologist):
    client_for(radiologist).get(editor_url(exam))

    event = AuditEvent.objects.get(action="report-viewed")
    assert event.user == "attending"
    assert event.patient_id == exam.patient.patient_id
    assert "ACC1" in event.detail
    assert PATIENT_NAME not in event.detail


def test_first_save_creates_report(exam, radiologist):
    response = htmx_client_for(radiologist).post(editor_url(exam), {"revision": "0", "section-findings": "Small lesion."})

    assert response.status_code == 200
    report = Report.objects.get(exam=exam)
    assert report.revision == 1
    assert report.sections["findings"] == "Small lesion."
    assert report.template.name == "CT head"
    assert report.author == radiologist
    assert 'value="1" hx-swap-oob="true"' in response.content.decode()
    exam.refresh_from_db()
    assert exam.status == ExamStatus.DRAFT


def test_save_increments_revision(exam, radiologist):
    client = htmx_client_for(radiologist)
    client.post(editor_url(exam), {"revision": "0", "section-findings": "One."})

    client.post(editor_url(exam), {"revision": "1", "section-findings": "One. Two."})

    report = Report.objects.get(exam=exam)
    assert report.revision == 2
    assert report.sections["findings"] == "One. Two."


def test_unchanged_save_keeps_revision(exam, radiologist):
    client = htmx_client_for(radiologist)
    client.post(editor_url(exam), {"revision": "0", "section-findings": "One."})

    response = client.post(editor_url(exam), {"revision": "1", "section-findings": "One."})

    assert response.status_code == 200
    assert Report.objects.get(exam=exam).revision == 1


def test_stale_revision_is_rejected_with_409(exam, radiologist):
    first_window = htmx_client_for(radiologist)
    second_window = htmx_client_for(radiologist)
    first_window.post(editor_url(exam), {"revision": "0", "section-findings": "Base."})
    first_window.post(editor_url(exam), {"revision": "1", "section-findings": "Saved in the first window."})

    response = second_window.post(editor_url(exam), {"revision": "1", "section-findings": "Typed in the second window."})

    assert response.status_code == 409
    assert "saved in another window" in response.content.decode()
    assert "revision 2" in response.content.decode()
    report = Report.objects.get(exam=exam)
    assert report.sections["findings"] == "Saved in the first window."
    assert report.revision == 2


def test_stale_revision_without_htmx_keeps_typed_text(exam, radiologist):
    client = client_for(radiologist)
    client.post(editor_url(exam), {"revision": "0", "section-findings": "Base."})

    response = client.post(editor_url(exam), {"revision": "0", "section-findings": "Text typed meanwhile."})

    assert response.status_code == 409
    assert "Text typed meanwhile." in response.content.decode()


def test_first_save_from_two_windows(exam, radiologist):
    htmx_client_for(radiologist).post(editor_url(exam), {"revision": "0", "section-findings": "First."})

    response = htmx_client_for(radiologist).post(editor_url(exam), {"revision": "0", "section-findings": "Second."})

    assert response.status_code == 409
    assert Report.objects.get(exam=exam).sections["findings"] == "First."


def test_save_requires_claim(make_user, radiologist):
    exam = create_exam(claimed_by=make_user("other", "radiologist"))

    response = htmx_client_for(radiologist).post(editor_url(exam), {"revision": "0", "section-findings": "Mine."})

    assert response.status_code == 403
    assert "other is reading this exam" in response.content.decode()
    assert not Report.objects.filter(exam=exam).exists()


def test_unclaimed_exam_editor_is_read_only(radiologist):
    exam = create_exam()

    response = client_for(radiologist).get(editor_url(exam))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Claim this exam on the worklist" in page
    assert "<textarea" not in page


def test_editor_rejects_technologist(make_user, exam):
    response = client_for(make_user("tech", "technologist")).get(editor_url(exam))

    assert response.status_code == 403


def test_change_template_keeps_written_text(exam, radiologist):
    client = htmx_client_for(radiologist)
    client.post(editor_url(exam), {"revision": "0", "section-findings": "Written findings.", "section-technique": ""})
    generic = ReportTemplate.objects.create(
        name="Short", sections=[{"key": "impression", "title": "Conclusion", "text": "Start."}],
    )

    response = client.post(f"/reports/exams/{exam.pk}/template/", {
        "template": str(generic.pk), "revision": "1", "section-findings": "Written findings, changed.",
    })

    assert response.status_code == 200
    report = Report.objects.get(exam=exam)
    assert report.template == generic
    assert report.section_order[0] == "impression"
    assert report.sections["impression"] == "Start."
    assert report.sections["findings"] == "Written findings, changed."
    assert "findings" in report.section_order
    assert "Conclusion" in response.content.decode()


def test_autosave_updates_template_form_revision(exam, radiologist):
    client = htmx_client_for(radiologist)
    editor = client.get(editor_url(exam)).content.decode()
    template_form = re.search(r'<form[^>]*class="report-template-choice".*?</form>', editor, re.S)
    assert template_form is not None
    revision_input = re.search(r'<input type="hidden" name="revision" id="([^"]+)" value="0">', template_form.group(0))
    assert revision_input is not None

    saved = client.post(editor_url(exam), {"revision": "0", "section-findings": "Lesion."}).content.decode()

    swap = rf'<input type="hidden" name="revision" id="{revision_input.group(1)}" value="1" hx-swap-oob="true">'
    assert swap in saved


def test_change_template_rejects_unknown_template(exam, radiologist):
    response = htmx_client_for(radiologist).post(f"/reports/exams/{exam.pk}/template/", {"template": "99999", "revision": "0"})

    assert response.status_code == 400
    assert not Report.objects.filter(exam=exam).exists()


def test_draft_audit_once_per_ten_minutes(exam, radiologist):
    client = htmx_client_for(radiologist)
    for revision in range(3):
        client.post(editor_url(exam), {"revision": str(revision), "section-findings": f"Version {revision}."})
    assert AuditEvent.objects.filter(action="report-draft-saved").count() == 1

    AuditEvent.objects.filter(action="report-draft-saved").update(occurred_at=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    client.post(editor_url(exam), {"revision": "3", "section-findings": "Version 3."})

    events = AuditEvent.objects.filter(action="report-draft-saved").order_by("sequence")
    assert events.count() == 2
    assert events.last().detail == f"exam {exam.pk}, accession ACC1, revision 4"
    assert all("Version" not in event.detail for event in events)


def test_draft_audit_per_exam(radiologist):
    first = create_exam(accession="A1", claimed_by=radiologist)
    second = create_exam(accession="A2", claimed_by=radiologist)
    client = htmx_client_for(radiologist)

    client.post(editor_url(first), {"revision": "0", "section-findings": "One."})
    client.post(editor_url(second), {"revision": "0", "section-findings": "Two."})

    assert AuditEvent.objects.filter(action="report-draft-saved").count() == 2


def test_save_after_preliminary_keeps_status(exam, radiologist):
    exam.status = ExamStatus.PRELIMINARY
    exam.save()
    claim(exam, radiologist)

    htmx_client_for(radiologist).post(editor_url(exam), {"revision": "0", "section-findings": "Edited."})

    exam.refresh_from_db()
    assert exam.status == ExamStatus.PRELIMINARY
