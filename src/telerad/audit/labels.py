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
    Action.AUDIT_SEARCHED: _("Audit trail searched"),
    Action.AUDIT_EVENT_VIEWED: _("Audit event viewed"),
    Action.AUDIT_EXPORTED: _("Audit trail exported"),
}


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
