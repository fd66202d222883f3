"""Signing reports: re-authentication, final and preliminary reports, addenda, content hashes and immutability."""

from __future__ import annotations

import pytest
from django.db import connection

from telerad.accounts.models import LoginThrottle
from telerad.audit.models import AuditEvent
from telerad.reading.delivery.models import DeliveryJob
from telerad.reading.models import ExamStatus, SignedReport, SignedReportChangeError
from telerad.reading.reports_signing import compute_hash, hash_matches

from tests.accounts.conftest import enrol, totp_code
from tests.reading.reports_fixtures import PASSWORD, PATIENT_NAME, claim, client_for, create_exam, htmx_client_for
from tests.reading.reports_fixtures import exam, radiologist, resident  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

FINDINGS = "A 4 mm nodule in the right upper lobe."
IMPRESSION = "Small pulmonary nodule."


def sign(client, exam, revision: int = 0, **fields):
    data = {"revision": str(revision), "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD}
    data.update(fields)
    return client.post(f"/reports/exams/{exam.pk}/sign/", {key: value for key, value in data.items() if value is not None})


def addendum(client, exam, text: str, **fields):
    data = {"text": text, "password": PASSWORD, **fields}
    return client.post(f"/reports/exams/{exam.pk}/addendum/", data)


@pytest.fixture
def referred_exam(exam, make_user):
    """The claimed exam with a referring clinician, who receives its critical results."""
    exam.referring_clinician = make_user("referrer", "clinician")
    exam.save(update_fields=["referring_clinician"])
    return exam


def test_sign_final_with_password(exam, radiologist):
    response = sign(htmx_client_for(radiologist), exam)

    assert response.status_code == 200
    assert "The final report is signed." in response.content.decode()
    signed = SignedReport.objects.get(exam=exam)
    assert signed.kind == "final"
    assert signed.signer == radiologist
    assert signed.section_order[:3] == ["clinical_information", "technique", "comparison"]
    assert signed.sections["findings"] == FINDINGS
    assert signed.text.endswith(f"Findings:\n{FINDINGS}\n\nImpression:\n{IMPRESSION}")
    assert signed.critical is False
    assert len(signed.content_hash) == 64
    assert hash_matches(signed)
    exam.refresh_from_db()
    assert exam.status == ExamStatus.FINAL
    assert exam.signed_at == signed.signed_at
    assert exam.claimed_by is None


@pytest.mark.parametrize("signer", ["radiologist", "resident"])
def test_signing_audits_claim_release(signer, request):
    user = request.getfixturevalue(signer)
    exam = create_exam(claimed_by=user)

    sign(htmx_client_for(user), exam)

    event = AuditEvent.objects.get(action="claim-released")
    assert event.user == user.get_username()
    assert event.patient_id == exam.patient.patient_id
    assert f"exam={exam.pk};" in event.detail
    assert f"holder={user.get_username()}" in event.detail
    assert "signed" in event.detail
    assert FINDINGS not in event.detail


def test_sign_final_is_audited_without_text(referred_exam, radiologist):
    exam = referred_exam
    sign(htmx_client_for(radiologist), exam, critical="on")

    event = AuditEvent.objects.get(action="report-final-signed")
    assert event.user == "attending"
    assert event.patient_id == exam.patient.patient_id
    assert "accession ACC1" in event.detail
    assert "critical result" in event.detail
    assert "confirmed by password" in event.detail
    assert FINDINGS not in event.detail
    assert PATIENT_NAME not in event.detail


def test_critical_flag_is_stored(referred_exam, radiologist):
    sign(htmx_client_for(radiologist), referred_exam, critical="on")

    assert SignedReport.objects.get(exam=referred_exam).critical is True


def test_sign_with_authenticator_code(exam, radiologist):
    device, _codes = enrol(radiologist)

    response = sign(htmx_client_for(radiologist), exam, password=None, code=totp_code(device, steps_ahead=1))

    assert response.status_code == 200
    assert SignedReport.objects.get(exam=exam).kind == "final"
    assert "confirmed by authenticator code" in AuditEvent.objects.get(action="report-final-signed").detail


def test_wrong_code_is_rejected(exam, radiologist):
    enrol(radiologist)

    response = sign(htmx_client_for(radiologist), exam, password=None, code="000000")

    assert response.status_code == 403
    assert "authenticator code is not correct" in response.content.decode()
    assert not SignedReport.objects.exists()


def test_recovery_code_does_not_sign(exam, radiologist):
    _device, codes = enrol(radiologist)

    response = sign(htmx_client_for(radiologist), exam, password=None, code=codes[0])

    assert response.status_code == 403
    assert not SignedReport.objects.exists()


def test_wrong_password_is_rejected_counted_and_audited(exam, radiologist):
    response = sign(htmx_client_for(radiologist), exam, password="not the password")

    page = response.content.decode()
    assert response.status_code == 403
    assert "The password is not correct" in page
    assert FINDINGS in page
    assert not SignedReport.objects.exists()
    event = AuditEvent.objects.get(action="reauthentication-failed")
    assert event.user == "attending"
    assert event.outcome == 4
    assert "wrong password" in event.detail
    assert LoginThrottle.objects.get(kind="account", key="attending").failures == 1
    exam.refresh_from_db()
    assert exam.status != ExamStatus.FINAL


def test_repeated_wrong_passwords_block_signing(exam, radiologist, settings):
    client = htmx_client_for(radiologist)
    for _attempt in range(settings.TELERAD.login_max_failures):
        sign(client, exam, password="not the password")

    response = sign(client, exam)

    assert response.status_code == 403
    assert "Signing is blocked" in response.content.decode()
    assert AuditEvent.objects.filter(action="login-locked").count() == 1
    assert not SignedReport.objects.exists()


def test_missing_confirmation_is_rejected(exam, radiologist):
    response = sign(htmx_client_for(radiologist), exam, password=None)

    assert response.status_code == 403
    assert "Enter your password or a code" in response.content.decode()


def test_empty_report_is_not_signed(radiologist):
    exam = create_exam(description="Unlisted exam", modalities="US", claimed_by=radiologist)

    response = sign(htmx_client_for(radiologist), exam, **{"section-findings": " ", "section-impression": ""})

    assert response.status_code == 400
    assert "only the template&#x27;s starting text" in response.content.decode()
    assert not SignedReport.objects.exists()


def test_sign_requires_claim(radiologist, make_user):
    exam = create_exam(claimed_by=make_user("other", "radiologist"))

    response = sign(htmx_client_for(radiologist), exam)

    assert response.status_code == 403
    assert not SignedReport.objects.exists()


def test_sign_with_stale_revision_is_rejected(exam, radiologist):
    client = htmx_client_for(radiologist)
    client.post(f"/reports/exams/{exam.pk}/", {"revision": "0", "section-findings": "Saved elsewhere."})

    response = sign(client, exam, revision=0)

    assert response.status_code == 409
    assert not SignedReport.objects.exists()


def test_resident_then_attending_flow(resident, radiologist):
    exam = create_exam(claimed_by=resident)

    response = sign(htmx_client_for(resident), exam, **{"section-findings": "Resident findings."})

    assert response.status_code == 200
    assert "preliminary report is signed" in response.content.decode()
    preliminary = SignedReport.objects.get(exam=exam)
    assert preliminary.kind == "preliminary"
    exam.refresh_from_db()
    assert exam.status == ExamStatus.PRELIMINARY
    assert exam.preliminary_at == preliminary.signed_at
    assert exam.signed_at is None
    assert exam.claimed_by is None
    assert AuditEvent.objects.filter(action="report-preliminary-signed", user="resident").count() == 1

    claim(exam, radiologist)
    editor = client_for(radiologist).get(f"/reports/exams/{exam.pk}/").content.decode()
    assert "Resident findings." in editor
    assert "Sign final report" in editor
    response = sign(htmx_client_for(radiologist), exam, revision=1, **{"section-findings": "Resident findings, corrected."})

    assert response.status_code == 200
    final = SignedReport.objects.get(exam=exam, kind="final")
    assert final.signer == radiologist
    assert final.sections["findings"] == "Resident findings, corrected."
    preliminary.refresh_from_db()
    assert preliminary.sections["findings"] == "Resident findings."
    exam.refresh_from_db()
    assert exam.status == ExamStatus.FINAL
    assert exam.preliminary_at == preliminary.signed_at


def test_resident_cannot_add_addendum(resident, radiologist):
    exam = create_exam(claimed_by=radiologist)
    sign(htmx_client_for(radiologist), exam)

    response = addendum(htmx_client_for(resident), exam, "Resident note.")

    assert response.status_code == 403
    assert SignedReport.objects.filter(kind="addendum").count() == 0


def test_second_final_is_rejected(exam, radiologist):
    client = htmx_client_for(radiologist)
    sign(client, exam)
    claim(exam, radiologist)

    response = sign(client, exam, revision=1)

    assert response.status_code == 409
    assert "already has a final report, signed by attending" in response.content.decode()
    assert SignedReport.objects.filter(exam=exam, kind="final").count() == 1


def test_draft_cannot_change_after_final(exam, radiologist):
    client = htmx_client_for(radiologist)
    sign(client, exam)
    claim(exam, radiologist)

    response = client.post(f"/reports/exams/{exam.pk}/", {"revision": "1", "section-findings": "Changed."})

    assert response.status_code == 409
    assert "Add an addendum instead" in response.content.decode()


def test_addenda_newest_first_then_final(referred_exam, radiologist):
    exam = referred_exam
    client = htmx_client_for(radiologist)
    sign(client, exam)
    addendum(client, exam, "First addendum.")
    response = addendum(client, exam, "Second addendum.", critical="on")

    page = response.content.decode()
    assert response.status_code == 200
    assert page.index("Second addendum.") < page.index("First addendum.") < page.index(FINDINGS)
    second = SignedReport.objects.get(text="Second addendum.")
    assert second.kind == "addendum"
    assert second.critical is True
    assert hash_matches(second)
    exam.refresh_from_db()
    assert exam.status == ExamStatus.ADDENDED
    assert AuditEvent.objects.filter(action="report-addendum-signed").count() == 2


def test_addendum_needs_final_report(exam, radiologist):
    response = addendum(htmx_client_for(radiologist), exam, "Too early.")

    assert response.status_code == 400
    assert "this exam has none yet" in response.content.decode()


def test_addendum_with_wrong_password_keeps_text(exam, radiologist):
    client = htmx_client_for(radiologist)
    sign(client, exam)

    response = addendum(client, exam, "Unsigned addendum text.", password="wrong password here")

    assert response.status_code == 403
    assert "Unsigned addendum text." in response.content.decode()
    assert SignedReport.objects.filter(kind="addendum").count() == 0
    assert AuditEvent.objects.filter(action="reauthentication-failed").count() == 1


def test_versions_page_checks_hashes(exam, radiologist):
    client = htmx_client_for(radiologist)
    sign(client, exam)
    addendum(client, exam, "An addendum.")

    response = client_for(radiologist).get(f"/reports/exams/{exam.pk}/versions/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Every signed version still matches its content hash." in page
    assert page.count("The content matches its hash.") == 2
    assert page.index("An addendum.") < page.index(FINDINGS)
    for signed in SignedReport.objects.all():
        assert signed.content_hash in page


def test_versions_page_shows_altered_version(exam, radiologist):
    sign(htmx_client_for(radiologist), exam)
    signed = SignedReport.objects.get()
    # A change made directly in the database, outside telerad.
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {SignedReport._meta.db_table} SET text = %s WHERE id = %s", ["Altered text.", signed.pk])

    page = client_for(radiologist).get(f"/reports/exams/{exam.pk}/versions/").content.decode()

    assert "no longer matches its content hash" in page
    assert "The content does not match its hash" in page


def test_hash_covers_content_signer_and_time(exam, radiologist):
    sign(htmx_client_for(radiologist), exam)
    signed = SignedReport.objects.get()
    original = compute_hash(signed)

    signed.sections = {**signed.sections, "findings": "Different."}
    assert compute_hash(signed) != original
    signed.refresh_from_db()
    signed.signed_at = signed.signed_at.replace(microsecond=(signed.signed_at.microsecond + 1) % 1_000_000)
    assert compute_hash(signed) != original
    signed.refresh_from_db()
    signed.kind = "preliminary"
    assert compute_hash(signed) != original
    signed.refresh_from_db()
    signed.section_order = list(reversed(signed.section_order))
    assert compute_hash(signed) != original


def test_signed_report_cannot_be_saved_again(exam, radiologist):
    sign(htmx_client_for(radiologist), exam)
    signed = SignedReport.objects.get()

    signed.text = "Changed."
    with pytest.raises(SignedReportChangeError):
        signed.save()
    with pytest.raises(SignedReportChangeError):
        SignedReport.objects.filter(pk=signed.pk).update(text="Changed.")
    with pytest.raises(SignedReportChangeError):
        signed.delete()
    with pytest.raises(SignedReportChangeError):
        SignedReport.objects.filter(pk=signed.pk).delete()

    assert SignedReport.objects.get().text != "Changed."


def test_signed_report_with_existing_pk_cannot_be_inserted(exam, radiologist):
    sign(htmx_client_for(radiologist), exam)
    signed = SignedReport.objects.get()
    copy = SignedReport(
        pk=signed.pk, exam=exam, kind="final", sections={}, section_order=[], text="Replaced.", signer=radiologist,
        signed_at=signed.signed_at, content_hash="0" * 64,
    )

    with pytest.raises(SignedReportChangeError):
        copy.save()

    assert SignedReport.objects.get().text == signed.text


def test_signing_queues_delivery(exam, radiologist):
    client = htmx_client_for(radiologist)

    sign(client, exam)
    final = SignedReport.objects.get(exam=exam, kind="final")
    addendum(client, exam, "Comparison with the prior study added.")
    added = SignedReport.objects.get(exam=exam, kind="addendum")

    assert list(DeliveryJob.objects.filter(signed_report=final).values_list("target", flat=True)) == ["archive"]
    assert list(DeliveryJob.objects.filter(signed_report=added).values_list("target", flat=True)) == ["archive"]


def test_preliminary_report_queues_no_delivery(resident):
    exam = create_exam(claimed_by=resident)

    sign(htmx_client_for(resident), exam)

    assert SignedReport.objects.get(exam=exam).kind == "preliminary"
    assert not DeliveryJob.objects.exists()


def test_signing_from_exam_page_reloads_it(exam, radiologist):
    data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD}

    browser = client_for(radiologist)

    response = browser.post(
        f"/reports/exams/{exam.pk}/sign/", data, headers={"HX-Request": "true", "HX-Current-URL": f"https://127.0.0.1/worklist/{exam.pk}/"},
    )

    assert response.status_code == 204
    assert response["HX-Refresh"] == "true"
    assert SignedReport.objects.get(exam=exam).kind == "final"
    page = browser.get(f"/worklist/{exam.pk}/")
    assert "The final report is signed." in page.content.decode()
