"""Two readers claiming one exam at the same moment, from two threads with their own database connections."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from telerad.reading import claims
from telerad.reading.models import Exam
from tests.reading.exam_factory import make_exam

ROUNDS = 5


def claim_in_thread(exam_pk: int, user, barrier: threading.Barrier, outcomes: list[str]) -> None:
    try:
        barrier.wait(timeout=10)
        claims.claim(exam_pk, user)
        outcomes.append(user.get_username())
    except claims.ClaimRefused:
        outcomes.append("refused")
    except Exception as exc:  # noqa: BLE001 - reported in the test's assertion
        outcomes.append(f"error: {exc!r}")
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_only_one_concurrent_claim_wins(make_user):
    first = make_user("ada", "radiologist")
    second = make_user("ben", "radiologist")

    for _ in range(ROUNDS):
        exam = make_exam()
        barrier = threading.Barrier(2)
        outcomes: list[str] = []
        threads = [threading.Thread(target=claim_in_thread, args=(exam.pk, user, barrier, outcomes)) for user in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        winners = [outcome for outcome in outcomes if outcome in ("ada", "ben")]
        assert sorted(outcomes) == sorted([*winners, "refused"]), outcomes
        assert len(winners) == 1
        assert Exam.objects.get(pk=exam.pk).claimed_by.get_username() == winners[0]
