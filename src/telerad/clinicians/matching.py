"""Match an exam's Referring Physician's Name (0008,0090) to a clinician's account.

Each clinician's profile lists the names they appear under in DICOM headers.
Names are compared by their first component group (the alphabetic one,
PS3.5 6.2.1) component by component, ignoring case, surrounding spaces and
empty trailing components, so "Welby^Marcus^^^" equals "WELBY^MARCUS". An
exam gets a referring clinician only when exactly one active clinician's
profile lists its name, and only when it has none yet, such as one set by hand.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from telerad.accounts.roles import Role
from telerad.audit import events as audit
from telerad.clinicians.models import ClinicianProfile
from telerad.reading.models import Exam

logger = logging.getLogger(__name__)

NameKey = tuple[str, ...]
# Exams the re-matching of existing exams reads at a time.
MATCH_BATCH_SIZE = 500


def name_key(name: str) -> NameKey:
    """Return the comparable form of one DICOM person name; an empty tuple for an empty name."""
    alphabetic = name.split("=")[0]
    components = [component.strip().casefold() for component in alphabetic.split("^")]
    while components and not components[-1]:
        components.pop()
    return tuple(components)


def name_keys(value: str) -> set[NameKey]:
    """Return the keys of each name in a value that may hold several, separated by backslashes."""
    return {key for key in (name_key(name) for name in value.split("\\")) if key}


class ClinicianMatcher:
    """The names of every active clinician's profile, for matching many exams with one query."""

    def __init__(self, names_by_user: dict[int, list[str]], usernames: dict[int, str]):
        self._users_by_key: dict[NameKey, set[int]] = {}
        for user_pk, names in names_by_user.items():
            for name in names:
                for key in name_keys(name):
                    self._users_by_key.setdefault(key, set()).add(user_pk)
        self._usernames = usernames

    @classmethod
    def load(cls) -> ClinicianMatcher:
        """Read the profiles of active users with the clinician role."""
        active_clinicians = get_user_model().objects.filter(is_active=True, groups__name=Role.CLINICIAN.value)
        rows = ClinicianProfile.objects.filter(user__in=active_clinicians).values_list("user_id", "user__username", "dicom_names")
        names_by_user: dict[int, list[str]] = {}
        usernames: dict[int, str] = {}
        for user_pk, username, dicom_names in rows:
            names_by_user[user_pk] = [line for line in dicom_names.splitlines() if line.strip()]
            usernames[user_pk] = username
        return cls(names_by_user, usernames)

    def __bool__(self) -> bool:
        return bool(self._users_by_key)

    def match(self, referring_physician_name: str) -> int | None:
        """Return the primary key of the one clinician whose profile lists the name; None for no clinician or several."""
        users: set[int] = set()
        for key in name_keys(referring_physician_name):
            users |= self._users_by_key.get(key, set())
        return next(iter(users)) if len(users) == 1 else None

    def username(self, user_pk: int) -> str:
        return self._usernames.get(user_pk, str(user_pk))


def assign_matched_clinician(exam: Exam, matcher: ClinicianMatcher) -> bool:
    """Set the exam's referring clinician from its Referring Physician's Name; return whether it was set.

    Changes only the object. An exam that has a referring clinician already keeps it.
    """
    if exam.referring_clinician_id is not None or not exam.referring_physician_name:
        return False
    user_pk = matcher.match(exam.referring_physician_name)
    if user_pk is None:
        return False
    exam.referring_clinician_id = user_pk
    return True


def record_match(exam: Exam, matcher: ClinicianMatcher, *, actor: str = "") -> None:
    """Write the audit event of a matched referring clinician, who may open the exam from then on."""
    first_uid = exam.exam_studies.order_by("id").values_list("study__study_instance_uid", flat=True).first() or ""
    audit.record_event(
        action=audit.Action.EXAM_DETAILS_CHANGED,
        user=actor,
        patient_id=exam.patient.patient_id,
        study_instance_uid=first_uid,
        detail=(
            f"exam={exam.pk}; accession={exam.accession_number}; fields=referring_clinician; "
            f"clinician {matcher.username(exam.referring_clinician_id)} matched by Referring Physician's Name"
        ),
    )


def match_existing_exams(*, actor: str) -> int:
    """Give every exam without a referring clinician the one whose profile matches its name; return how many got one."""
    matcher = ClinicianMatcher.load()
    if not matcher:
        return 0
    candidates = Exam.objects.filter(referring_clinician__isnull=True).exclude(referring_physician_name="").order_by("pk")
    matched = 0
    last_pk = 0
    while True:
        batch = list(candidates.filter(pk__gt=last_pk).select_related("patient")[:MATCH_BATCH_SIZE])
        if not batch:
            return matched
        for exam in batch:
            if assign_matched_clinician(exam, matcher):
                matched += _save_match(exam, matcher, actor=actor)
        last_pk = batch[-1].pk


def _save_match(exam: Exam, matcher: ClinicianMatcher, *, actor: str) -> int:
    with transaction.atomic():
        # The condition keeps a referring clinician that someone set by hand meanwhile.
        updated = Exam.objects.filter(pk=exam.pk, referring_clinician__isnull=True).update(
            referring_clinician_id=exam.referring_clinician_id, updated_at=timezone.now(),
        )
        if updated:
            record_match(exam, matcher, actor=actor)
    if updated:
        logger.info("referring clinician %s matched to exam %s accession=%s", matcher.username(exam.referring_clinician_id), exam.pk, exam.accession_number)
    return updated
