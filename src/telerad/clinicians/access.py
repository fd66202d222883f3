"""Which exams and studies a user may see: all of them, or only a clinician's own.

A user whose roles grant VIEW_STUDIES sees the whole archive, and these
functions then add no query at all. A user with only VIEW_REFERRED_STUDIES
(a clinician) sees:

- the exams whose referring clinician they are,
- the exams of patients an administrator granted them,
- the exams whose department equals a department granted to them, ignoring
  case and surrounding spaces,

and the studies of those exams, plus every study of a granted patient.
Grants past their expiry time count for nothing. Anyone else sees nothing.

Every view that shows exams, studies, images or reports to clinicians asks
here, so that the portal, the viewer, DICOMweb, the report PDF and FHIR
agree. Views answer 404 for what lies outside the scope, as for an unknown
identifier, so that a guessed URL or UID does not reveal that it exists.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from telerad.accounts.roles import Permission, user_permissions
from telerad.archive.models import Study
from telerad.clinicians.models import ClinicianGrant
from telerad.reading.models import Exam, ExamStudy

AnyUser = AbstractBaseUser | AnonymousUser
RowType = TypeVar("RowType", bound=Model)


@dataclasses.dataclass(frozen=True)
class Grants:
    """The grants of one clinician that count now: patient primary keys and department names."""

    patient_pks: frozenset[int]
    departments: tuple[str, ...]


def sees_all_studies(user: AnyUser) -> bool:
    """Return whether the user's roles open every study of the archive (VIEW_STUDIES)."""
    return Permission.VIEW_STUDIES in user_permissions(user)


def sees_referred_studies(user: AnyUser) -> bool:
    """Return whether the user may see a limited set of exams: VIEW_REFERRED_STUDIES without VIEW_STUDIES."""
    granted = user_permissions(user)
    return Permission.VIEW_REFERRED_STUDIES in granted and Permission.VIEW_STUDIES not in granted


def active_grants(user: AnyUser) -> Grants:
    """Return the user's grants that have not expired."""
    now = timezone.now()
    rows = (
        ClinicianGrant.objects.filter(clinician_id=user.pk).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values_list("patient_id", "department")
    )
    patient_pks: set[int] = set()
    departments: list[str] = []
    for patient_pk, department in rows:
        if patient_pk is not None:
            patient_pks.add(patient_pk)
        elif department.strip():
            departments.append(department.strip())
    return Grants(frozenset(patient_pks), tuple(departments))


def _exam_condition(user: AnyUser, grants: Grants) -> Q:
    """Return the condition on Exam rows of a clinician's scope."""
    conditions = [Q(referring_clinician_id=user.pk)]
    if grants.patient_pks:
        conditions.append(Q(patient_id__in=sorted(grants.patient_pks)))
    # NOTE: iexact folds ASCII letters only on SQLite, so there a department
    # written with other letters in another case does not match.
    conditions += [Q(department__iexact=department) for department in grants.departments]
    return functools.reduce(operator.or_, conditions)


def visible_exams(user: AnyUser) -> QuerySet[Exam]:
    """Return the exams `user` may see: all for VIEW_STUDIES, a clinician's own for VIEW_REFERRED_STUDIES, else none."""
    if sees_all_studies(user):
        return Exam.objects.all()
    if not sees_referred_studies(user):
        return Exam.objects.none()
    return Exam.objects.filter(_exam_condition(user, active_grants(user)))


def can_view_exam(user: AnyUser, exam: Exam | int) -> bool:
    """Return whether `user` may see `exam` (an Exam or its primary key)."""
    if sees_all_studies(user):
        return True
    exam_pk = exam.pk if isinstance(exam, Exam) else exam
    return visible_exams(user).filter(pk=exam_pk).exists()


def visible_study_ids(user: AnyUser) -> QuerySet[Study] | None:
    """Return a subquery of the primary keys of the studies `user` may see, or None when they see every study.

    Callers filter with ``study__in=`` (or ``pk__in=``) on it, so that the
    check is part of their own query.
    """
    if sees_all_studies(user):
        return None
    if not sees_referred_studies(user):
        return Study.objects.none().values("pk")
    grants = active_grants(user)
    exam_studies = ExamStudy.objects.filter(exam__in=Exam.objects.filter(_exam_condition(user, grants)).values("pk")).values("study_id")
    condition = Q(pk__in=exam_studies)
    if grants.patient_pks:
        condition |= Q(patient_id__in=sorted(grants.patient_pks))
    return Study.objects.filter(condition).values("pk")


def restrict_to_visible_studies(queryset: QuerySet[RowType], user: AnyUser, study_path: str = "") -> QuerySet[RowType]:
    """Narrow rows of a study, series or instance query to those of studies `user` may see.

    `study_path` leads from the queryset's rows to their study ("" for
    studies themselves, "study" for series, "series__study" for
    instances). For a user who sees every study the queryset is returned
    unchanged, without a query.
    """
    study_ids = visible_study_ids(user)
    if study_ids is None:
        return queryset
    lookup = f"{study_path}__in" if study_path else "pk__in"
    return queryset.filter(**{lookup: study_ids})
