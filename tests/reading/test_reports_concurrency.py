"""Two browsers signing the final report of one exam at the same moment: one wins, the other gets a clear message."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from telerad.reading.models import ExamStatus, SignedReport

from tests.reading.reports_fixtures import PASSWORD, create_exam, htmx_client_for

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 3


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_concurrent_final_signing(make_user, round_number):
    radiologist = make_user(f"attending{round_number}", "radiologist")
    exam = create_exam(accession=f"RACE{round_number}", claimed_by=radiologist)
    browsers = [htmx_client_for(radiologist), htmx_client_for(radiologist)]
    start = threading.Barrier(len(browsers), timeout=30)

    def sign(index: int):
        try:
            start.wait()
            return browsers[index].post(f"/reports/exams/{exam.pk}/sign/", {
                "revision": "0", "section-findings": f"Findings from browser {index}.", "password": PASSWORD,
            })
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(browsers)) as pool:
        responses = list(pool.map(sign, range(len(browsers)), timeout=120))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 409]
    loser = next(response for response in responses if response.status_code == 409)
    assert f"already has a final report, signed by attending{round_number}" in loser.content.decode()
    assert SignedReport.objects.filter(exam=exam, kind="final").count() == 1
    exam.refresh_from_db()
    assert exam.status == ExamStatus.FINAL


def test_database_rejects_second_final(make_user):
    from django.db import IntegrityError, transaction
    from django.utils import timezone

    radiologist = make_user("attending", "radiologist")
    exam = create_exam(claimed_by=radiologist)
    fields = {"exam": exam, "kind": "final", "sections": {}, "section_order": [], "text": "Text.", "signer": radiologist, "content_hash": "0" * 64}
    SignedReport.objects.create(signed_at=timezone.now(), **fields)

    with pytest.raises(IntegrityError), transaction.atomic():
        SignedReport.objects.create(signed_at=timezone.now(), **fields)

    assert SignedReport.objects.filter(exam=exam).count() == 1
