"""The partial index of open exams: the worklist's query can use it on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from telerad.reading import worklist
from telerad.reading.models import OPEN_STATUSES, Exam, ExamStatus
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db

INDEX = "exam_open_worklist"


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


def plan_forcing_index(queryset) -> str:
    """Return the query plan of `queryset` when the database must read the open-exam index, or raise when it cannot."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            # INDEXED BY fails with "no query solution" when the WHERE does not contain the index's condition.
            forced = sql.replace('FROM "reading_exam"', f'FROM "reading_exam" INDEXED BY {INDEX}', 1)
            cursor.execute(f"EXPLAIN QUERY PLAN {forced}", params)
            return "\n".join(str(row) for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(
    "filters",
    [{}, {"status": [ExamStatus.DRAFT.value]}, {"priority": [1]}, {"modality": "CT"}],
    ids=["default", "status", "priority", "modality"],
)
def test_worklist_query_can_use_open_index(reader, filters):
    make_exam(accession="OPEN")
    make_exam(accession="SIGNED", status=ExamStatus.FINAL)

    plan = plan_forcing_index(worklist.filtered_exams(filters, reader)[:50])

    if "status" in filters and connection.vendor == "postgresql":
        # PostgreSQL may serve one status by exam_worklist, whose first column is the status.
        assert INDEX in plan or "exam_worklist" in plan
    else:
        assert INDEX in plan


def test_plain_status_filter_cannot_use_index_on_sqlite(reader):
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL matches bound parameters against a partial index's condition")
    queryset = Exam.objects.filter(status__in=OPEN_STATUSES).order_by("priority", "study_received_at", "id")

    with pytest.raises(OperationalError, match="no query solution"):
        plan_forcing_index(queryset)


def test_worklist_lists_only_open_exams(reader):
    for status in ExamStatus:
        make_exam(accession=status.value, status=status)

    listed = {exam.accession_number for exam in worklist.filtered_exams({}, reader)}

    assert listed == {status.value for status in OPEN_STATUSES}


def test_status_lookup_rejects_other_values():
    with pytest.raises(ValueError, match="ExamStatus values"):
        list(Exam.objects.filter(status__in_literals=["unread", "x') OR ('1'='1"]))


def test_status_lookup_rejects_empty_list():
    with pytest.raises(ValueError, match="non-empty"):
        list(Exam.objects.filter(status__in_literals=[]))
