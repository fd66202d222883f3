"""Write and verify audit events.

Every event carries the SHA-256 of its own content and of the previous event,
so that an altered, inserted or deleted row breaks the chain where it happened.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Iterable

from django.db import transaction
from django.utils import timezone

from telerad.audit.models import AuditChainHead, AuditEvent, AuditEventPatient

GENESIS_HASH = "0" * 64
# Other patients kept per event; a search that returns more names the first ones.
MAX_OTHER_PATIENTS = 1000


class Action(enum.StrEnum):
    INSTANCES_STORED = "instances-stored"
    ASSOCIATION_REJECTED = "association-rejected"
    QUERY = "query"
    PATIENT_UPDATED = "patient-updated"
    DUPLICATE_REJECTED = "duplicate-rejected"
    DUPLICATE_REPLACED = "duplicate-replaced"
    IMPORT = "import"
    STUDY_VIEWED = "study-viewed"
    STUDY_LIST_VIEWED = "study-list-viewed"
    REMOTE_AE_CHANGED = "remote-ae-changed"
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    LOGIN_LOCKED = "login-locked"
    PASSWORD_CHANGED = "password-changed"
    SESSIONS_ENDED = "sessions-ended"
    TWO_FACTOR_ENROLLED = "two-factor-enrolled"
    TWO_FACTOR_REMOVED = "two-factor-removed"
    # An administrator deleted another user's authenticator and recovery codes.
    TWO_FACTOR_RESET = "two-factor-reset"
    RECOVERY_CODES_CREATED = "recovery-codes-created"
    RETRIEVE = "retrieve"
    TOKEN_CREATED = "token-created"
    TOKEN_REVOKED = "token-revoked"
    USER_CREATED = "user-created"
    USER_CHANGED = "user-changed"
    USER_DISABLED = "user-disabled"
    USER_ENABLED = "user-enabled"
    ROLES_CHANGED = "roles-changed"
    AUDIT_SEARCHED = "audit-searched"
    AUDIT_EVENT_VIEWED = "audit-event-viewed"
    AUDIT_EXPORTED = "audit-exported"
    # A DIMSE request of a service the calling AE is not allowed to use.
    SERVICE_REFUSED = "service-refused"
    # A caller on the DICOM TLS port that did not complete the handshake, for example without a valid client certificate.
    TLS_HANDSHAKE_FAILED = "tls-handshake-failed"
    WORKLIST_VIEWED = "worklist-viewed"
    EXAM_VIEWED = "exam-viewed"
    EXAM_DETAILS_CHANGED = "exam-details-changed"
    EXAM_CLAIMED = "exam-claimed"
    CLAIM_RELEASED = "claim-released"
    # A claim ended because its holder made no request on the exam for the configured time.
    CLAIM_LAPSED = "claim-lapsed"
    CLAIM_REASSIGNED = "claim-reassigned"
    REPORT_VIEWED = "report-viewed"
    REPORT_DRAFT_SAVED = "report-draft-saved"
    REPORT_PRELIMINARY_SIGNED = "report-preliminary-signed"
    REPORT_FINAL_SIGNED = "report-final-signed"
    REPORT_ADDENDUM_SIGNED = "report-addendum-signed"
    # A wrong password or authenticator code given to confirm a signature.
    REAUTHENTICATION_FAILED = "reauthentication-failed"
    REPORT_TEMPLATE_CHANGED = "report-template-changed"
    REPORT_TEMPLATES_IMPORTED = "report-templates-imported"
    REPORT_TEMPLATES_EXPORTED = "report-templates-exported"
    # A signed report downloaded as a PDF or read as a FHIR DiagnosticReport.
    REPORT_EXPORTED = "report-exported"
    # A signed report sent to an HL7 or FHIR endpoint, or given up after its attempts.
    REPORT_SENT = "report-sent"
    QUALITY_ISSUE_RAISED = "quality-issue-raised"
    QUALITY_ISSUE_ANSWERED = "quality-issue-answered"
    # An image-quality issue marked fixed, closed or reopened.
    QUALITY_ISSUE_STATE_CHANGED = "quality-issue-state-changed"
    QUALITY_ISSUE_VIEWED = "quality-issue-viewed"
    QUALITY_QUEUE_VIEWED = "quality-queue-viewed"
    # The per-exam turnaround rows downloaded as CSV.
    TURNAROUND_EXPORTED = "turnaround-exported"
    # A report signed critical opened a critical result, its contact was notified, acknowledged it, or it escalated.
    CRITICAL_RESULT_OPENED = "critical-result-opened"
    CRITICAL_RESULT_NOTIFIED = "critical-result-notified"
    CRITICAL_RESULT_ACKNOWLEDGED = "critical-result-acknowledged"
    CRITICAL_RESULT_ESCALATED = "critical-result-escalated"
    # A notification e-mail accepted by the SMTP server, or given up after its attempts.
    NOTIFICATION_EMAILED = "notification-emailed"
    # Question threads on an exam: opened with its first message, a later message, marked answered, closed or reopened, read.
    QUESTION_ASKED = "question-asked"
    QUESTION_MESSAGE_WRITTEN = "question-message-written"
    QUESTION_STATE_CHANGED = "question-state-changed"
    QUESTION_VIEWED = "question-viewed"
    QUESTION_LIST_VIEWED = "question-list-viewed"
    # The list of a clinician's exams in the portal, opened or searched.
    PORTAL_LIST_VIEWED = "portal-list-viewed"
    # A clinician's grant of a patient or department added, changed or revoked, or their DICOM names changed.
    CLINICIAN_ACCESS_CHANGED = "clinician-access-changed"


class Outcome(enum.IntEnum):
    """RFC 3881 EventOutcomeIndicator."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


def event_hash(event: AuditEvent) -> str:
    content = {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.isoformat(),
        "user": event.user,
        "address": event.address,
        "action": event.action,
        "outcome": event.outcome,
        "patient_id": event.patient_id,
        "study_instance_uid": event.study_instance_uid,
        "detail": event.detail,
        "previous_hash": event.previous_hash,
    }
    # Added to the hashed content only when present, so that the hashes of
    # events written before the field existed stay valid.
    if event.other_patient_ids:
        content["other_patient_ids"] = event.other_patient_ids
    encoded = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def record_event(
    *,
    action: Action,
    outcome: Outcome = Outcome.SUCCESS,
    user: str = "",
    address: str = "",
    patient_id: str = "",
    study_instance_uid: str = "",
    detail: str = "",
    patient_ids: Iterable[str] = (),
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction when there is one.

    `patient_ids` names further patients the event concerns besides
    `patient_id`, such as those a search returned; at most
    MAX_OTHER_PATIENTS are kept.
    """
    others = [value for value in dict.fromkeys(patient_ids) if value and value != patient_id][:MAX_OTHER_PATIENTS]
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            sequence=head.last_sequence + 1,
            occurred_at=timezone.now(),
            user=user[:150],
            address=address[:64],
            action=str(action),
            outcome=int(outcome),
            patient_id=patient_id,
            study_instance_uid=study_instance_uid[:64],
            detail=detail,
            other_patient_ids="\n".join(others),
            previous_hash=head.last_hash,
        )
        event.hash = event_hash(event)
        event.save()
        if others:
            AuditEventPatient.objects.bulk_create(AuditEventPatient(event=event, patient_id=value) for value in others)
        head.last_sequence = event.sequence
        head.last_hash = event.hash
        head.save(update_fields=["last_sequence", "last_hash"])
    return event


@dataclasses.dataclass(frozen=True)
class ChainProblem:
    sequence: int
    message: str


def verify_chain(batch_size: int = 5000) -> list[ChainProblem]:
    """Check every event's hash and link; return the problems found, in order."""
    problems: list[ChainProblem] = []
    expected_previous = GENESIS_HASH
    expected_sequence = 1
    # Events with other patients, by primary key: (sequence, patient IDs), checked against their index rows in batches.
    indexed: dict[int, tuple[int, list[str]]] = {}
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=batch_size):
        if event.sequence != expected_sequence:
            problems.append(ChainProblem(event.sequence, f"events {expected_sequence} to {event.sequence - 1} are missing"))
        if event.previous_hash != expected_previous:
            problems.append(ChainProblem(event.sequence, "the link to the previous event is broken (an event before it was changed, inserted or deleted)"))
        if event_hash(event) != event.hash:
            problems.append(ChainProblem(event.sequence, "the content does not match its hash (the event was altered)"))
        if event.other_patient_ids:
            indexed[event.pk] = (event.sequence, event.other_patient_ids.split("\n"))
            if len(indexed) >= batch_size:
                problems.extend(_check_patient_index(indexed))
                indexed = {}
        expected_previous = event.hash
        expected_sequence = event.sequence + 1
    problems.extend(_check_patient_index(indexed))
    problems.sort(key=lambda problem: problem.sequence)
    head = AuditChainHead.objects.filter(pk=1).first()
    last_sequence = expected_sequence - 1
    if head is not None and head.last_sequence > last_sequence:
        problems.append(ChainProblem(head.last_sequence, f"the chain should end at event {head.last_sequence} but ends at {last_sequence} (events at the end were deleted)"))
    elif head is not None and head.last_sequence < last_sequence:
        problems.append(ChainProblem(last_sequence, f"the chain should end at event {head.last_sequence} but ends at {last_sequence} (events were added outside telerad)"))
    return problems


def _check_patient_index(expected: dict[int, tuple[int, list[str]]]) -> list[ChainProblem]:
    """Compare the patient index rows of these events with the patient IDs their hashed content names."""
    if not expected:
        return []
    found: dict[int, list[str]] = {pk: [] for pk in expected}
    for event_id, patient_id in AuditEventPatient.objects.filter(event_id__in=list(expected)).values_list("event_id", "patient_id"):
        found[event_id].append(patient_id)
    return [
        ChainProblem(sequence, "the patient index of the event does not match its content (index rows were changed)")
        for pk, (sequence, patient_ids) in expected.items()
        if sorted(found[pk]) != sorted(patient_ids)
    ]
