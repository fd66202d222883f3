"""Names of actions and outcomes as auditors read them."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from telerad.audit.events import Action, Outcome

OUTCOME_LABELS = {
    Outcome.SUCCESS: _("success"),
    Outcome.MINOR_FAILURE: _("minor failure"),
    Outcome.SERIOUS_FAILURE: _("serious failure"),
    Outcome.MAJOR_FAILURE: _("major failure"),
}

ACTION_LABELS = {
    Action.INSTANCES_STORED: _("Instances stored"),
    Action.ASSOCIATION_REJECTED: _("Association rejected"),
    Action.QUERY: _("Query"),
    Action.PATIENT_UPDATED: _("Patient updated"),
    Action.DUPLICATE_REJECTED: _("Duplicate rejected"),
    Action.DUPLICATE_REPLACED: _("Duplicate replaced"),
    Action.IMPORT: _("Import"),
    Action.STUDY_VIEWED: _("Study viewed"),
    Action.STUDY_LIST_VIEWED: _("Study list viewed"),
    Action.REMOTE_AE_CHANGED: _("Remote AE changed"),
    Action.LOGIN: _("Login"),
    Action.LOGIN_FAILED: _("Login failed"),
    Action.LOGOUT: _("Logout"),
    Action.RETRIEVE: _("Retrieve"),
    Action.TOKEN_CREATED: _("API token created"),
    Action.TOKEN_REVOKED: _("API token revoked"),
    Action.SERVICE_REFUSED: _("DICOM service refused"),
    Action.TLS_HANDSHAKE_FAILED: _("DICOM TLS handshake failed"),
    Action.LOGIN_LOCKED: _("Login locked"),
    Action.PASSWORD_CHANGED: _("Password changed"),
    Action.SESSIONS_ENDED: _("All sessions ended"),
    Action.TWO_FACTOR_ENROLLED: _("Two-factor login set up"),
    Action.TWO_FACTOR_REMOVED: _("Two-factor login removed"),
    Action.TWO_FACTOR_RESET: _("Two-factor login reset"),
    Action.RECOVERY_CODES_CREATED: _("Recovery codes created"),
    Action.USER_CREATED: _("User created"),
    Action.USER_CHANGED: _("User changed"),
    Action.USER_DISABLED: _("User disabled"),
    Action.USER_ENABLED: _("User enabled"),
    Action.ROLES_CHANGED: _("Roles changed"),
    Action.AUDIT_SEARCHED: _("Audit trail searched"),
    Action.AUDIT_EVENT_VIEWED: _("Audit event viewed"),
    Action.AUDIT_EXPORTED: _("Audit trail exported"),
    Action.WORKLIST_VIEWED: _("Worklist viewed"),
    Action.EXAM_VIEWED: _("Exam viewed"),
    Action.EXAM_DETAILS_CHANGED: _("Exam details changed"),
    Action.EXAM_CLAIMED: _("Exam claimed"),
    Action.CLAIM_RELEASED: _("Claim released"),
    Action.CLAIM_LAPSED: _("Claim lapsed"),
    Action.CLAIM_REASSIGNED: _("Claim reassigned"),
    Action.REPORT_VIEWED: _("Report viewed"),
    Action.REPORT_DRAFT_SAVED: _("Report draft saved"),
    Action.REPORT_PRELIMINARY_SIGNED: _("Preliminary report signed"),
    Action.REPORT_FINAL_SIGNED: _("Final report signed"),
    Action.REPORT_ADDENDUM_SIGNED: _("Addendum signed"),
    Action.REAUTHENTICATION_FAILED: _("Signature confirmation failed"),
    Action.REPORT_TEMPLATE_CHANGED: _("Report template changed"),
    Action.REPORT_TEMPLATES_IMPORTED: _("Report templates imported"),
    Action.REPORT_TEMPLATES_EXPORTED: _("Report templates exported"),
    Action.REPORT_EXPORTED: _("Report exported"),
    Action.REPORT_SENT: _("Report sent"),
    Action.QUALITY_ISSUE_RAISED: _("Image-quality issue raised"),
    Action.QUALITY_ISSUE_ANSWERED: _("Image-quality issue answered"),
    Action.QUALITY_ISSUE_STATE_CHANGED: _("Image-quality issue state changed"),
    Action.QUALITY_ISSUE_VIEWED: _("Image-quality issue viewed"),
    Action.QUALITY_QUEUE_VIEWED: _("Image-quality queue viewed"),
    Action.TURNAROUND_EXPORTED: _("Turnaround times exported"),
    Action.CRITICAL_RESULT_OPENED: _("Critical result opened"),
    Action.CRITICAL_RESULT_NOTIFIED: _("Critical result notified"),
    Action.CRITICAL_RESULT_ACKNOWLEDGED: _("Critical result acknowledged"),
    Action.CRITICAL_RESULT_ESCALATED: _("Critical result escalated"),
    Action.NOTIFICATION_EMAILED: _("Notification e-mailed"),
    Action.QUESTION_ASKED: _("Question asked"),
    Action.QUESTION_MESSAGE_WRITTEN: _("Question message written"),
    Action.QUESTION_STATE_CHANGED: _("Question state changed"),
    Action.QUESTION_VIEWED: _("Question viewed"),
    Action.QUESTION_LIST_VIEWED: _("Question list viewed"),
    Action.PORTAL_LIST_VIEWED: _("Portal exam list viewed"),
    Action.CLINICIAN_ACCESS_CHANGED: _("Clinician access changed"),
}


# Every action needs a label; a missing one fails at import instead of on the page.
_UNLABELLED = set(Action) - set(ACTION_LABELS)
if _UNLABELLED:
    raise RuntimeError(f"audit actions without a label: {sorted(_UNLABELLED)}")


def action_label(action: str) -> str:
    """Return the readable name of `action`, or the stored value for an action this version does not know."""
    try:
        return str(ACTION_LABELS[Action(action)])
    except ValueError:
        return action


def outcome_label(outcome: int) -> str:
    try:
        return str(OUTCOME_LABELS[Outcome(outcome)])
    except ValueError:
        return str(outcome)
