"""Audit events as DICOM audit messages (PS3.15 A.5), the XML that IHE ATNA audit repositories store.

Each :class:`~telerad.audit.events.Action` maps to one event code of the DICOM
controlled terminology (PS3.16 CID 400 to 402) in ``EVENT_CODES``. A message
names the requesting user or AE, telerad itself, the audit source, and the
patient and study of the event when it has them.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import socket
import xml.etree.ElementTree as ET

from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent
from telerad.config import Config

DCM = "DCM"
# The code system name IHE gives the code tables of RFC 3881 (participant
# object ID types, audit source types).
RFC_3881 = "RFC-3881"

# A longer detail is cut in the message; the trail keeps the whole text. The
# limit keeps a message well inside the 8 KiB that rsyslog accepts by default.
MAX_DESCRIPTION_CHARACTERS = 4000


@dataclasses.dataclass(frozen=True)
class Code:
    """A coded value: csd-code, codeSystemName and originalText (the DICOM Code Meaning)."""

    value: str
    system: str
    meaning: str


class Flow(enum.Enum):
    """The direction in which instances moved, from which the participants' source and destination roles follow."""

    NONE = "none"
    TO_TELERAD = "to-telerad"
    FROM_TELERAD = "from-telerad"


@dataclasses.dataclass(frozen=True)
class EventCoding:
    event_id: Code
    # EventActionCode: C create, R read, U update, D delete, E execute.
    action_code: str
    type_code: Code | None = None
    flow: Flow = Flow.NONE
    # The event read or exported the audit trail itself, which the message names as a participant object.
    uses_audit_log: bool = False


APPLICATION_ACTIVITY = Code("110100", DCM, "Application Activity")
AUDIT_LOG_USED = Code("110101", DCM, "Audit Log Used")
INSTANCES_ACCESSED = Code("110103", DCM, "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = Code("110104", DCM, "DICOM Instances Transferred")
EXPORT = Code("110106", DCM, "Export")
IMPORT = Code("110107", DCM, "Import")
PATIENT_RECORD = Code("110110", DCM, "Patient Record")
PROCEDURE_RECORD = Code("110111", DCM, "Procedure Record")
QUERY = Code("110112", DCM, "Query")
SECURITY_ALERT = Code("110113", DCM, "Security Alert")
USER_AUTHENTICATION = Code("110114", DCM, "User Authentication")

LOGIN = Code("110122", DCM, "Login")
LOGOUT = Code("110123", DCM, "Logout")
NODE_AUTHENTICATION = Code("110126", DCM, "Node Authentication")
NETWORK_CONFIGURATION = Code("110128", DCM, "Network Configuration")
SECURITY_ROLES_CHANGED = Code("110136", DCM, "Security Roles Changed")
USER_SECURITY_ATTRIBUTES_CHANGED = Code("110137", DCM, "User Security Attributes Changed")

APPLICATION_ROLE = Code("110150", DCM, "Application")
DESTINATION_ROLE = Code("110152", DCM, "Destination Role ID")
SOURCE_ROLE = Code("110153", DCM, "Source Role ID")

PATIENT_NUMBER = Code("2", RFC_3881, "Patient Number")
URI = Code("12", RFC_3881, "URI")
STUDY_INSTANCE_UID = Code("110180", DCM, "Study Instance UID")
APPLICATION_SERVER_PROCESS = Code("4", RFC_3881, "Application Server Process")

EVENT_CODES: dict[Action, EventCoding] = {
    Action.INSTANCES_STORED: EventCoding(INSTANCES_TRANSFERRED, "C", flow=Flow.TO_TELERAD),
    Action.DUPLICATE_REJECTED: EventCoding(INSTANCES_TRANSFERRED, "C", flow=Flow.TO_TELERAD),
    Action.DUPLICATE_REPLACED: EventCoding(INSTANCES_TRANSFERRED, "U", flow=Flow.TO_TELERAD),
    Action.IMPORT: EventCoding(IMPORT, "C", flow=Flow.TO_TELERAD),
    Action.RETRIEVE: EventCoding(INSTANCES_TRANSFERRED, "R", flow=Flow.FROM_TELERAD),
    Action.STUDY_VIEWED: EventCoding(INSTANCES_ACCESSED, "R"),
    Action.QUERY: EventCoding(QUERY, "E"),
    # The study list is a search of the archive, like a C-FIND or QIDO-RS query.
    Action.STUDY_LIST_VIEWED: EventCoding(QUERY, "E"),
    Action.PATIENT_UPDATED: EventCoding(PATIENT_RECORD, "U"),
    Action.LOGIN: EventCoding(USER_AUTHENTICATION, "E", LOGIN),
    Action.LOGIN_FAILED: EventCoding(USER_AUTHENTICATION, "E", LOGIN),
    Action.LOGOUT: EventCoding(USER_AUTHENTICATION, "E", LOGOUT),
    Action.ASSOCIATION_REJECTED: EventCoding(SECURITY_ALERT, "E", NODE_AUTHENTICATION),
    Action.REMOTE_AE_CHANGED: EventCoding(SECURITY_ALERT, "E", NETWORK_CONFIGURATION),
    Action.TOKEN_CREATED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.TOKEN_REVOKED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.USER_CREATED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.USER_CHANGED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.USER_DISABLED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.USER_ENABLED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.ROLES_CHANGED: EventCoding(SECURITY_ALERT, "E", SECURITY_ROLES_CHANGED),
    Action.SERVICE_REFUSED: EventCoding(SECURITY_ALERT, "E", NODE_AUTHENTICATION),
    Action.TLS_HANDSHAKE_FAILED: EventCoding(SECURITY_ALERT, "E", NODE_AUTHENTICATION),
    Action.LOGIN_LOCKED: EventCoding(USER_AUTHENTICATION, "E", LOGIN),
    Action.SESSIONS_ENDED: EventCoding(USER_AUTHENTICATION, "E", LOGOUT),
    Action.PASSWORD_CHANGED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.TWO_FACTOR_ENROLLED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.TWO_FACTOR_REMOVED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.TWO_FACTOR_RESET: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.RECOVERY_CODES_CREATED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
    Action.AUDIT_SEARCHED: EventCoding(AUDIT_LOG_USED, "R", uses_audit_log=True),
    Action.AUDIT_EVENT_VIEWED: EventCoding(AUDIT_LOG_USED, "R", uses_audit_log=True),
    Action.AUDIT_EXPORTED: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD, uses_audit_log=True),
    # The worklist is a search of the exams, like the study list.
    Action.WORKLIST_VIEWED: EventCoding(QUERY, "E"),
    Action.EXAM_VIEWED: EventCoding(PATIENT_RECORD, "R"),
    Action.EXAM_DETAILS_CHANGED: EventCoding(PATIENT_RECORD, "U"),
    # Claims change who is reading the exam, part of the exam's record.
    Action.EXAM_CLAIMED: EventCoding(PATIENT_RECORD, "U"),
    Action.CLAIM_RELEASED: EventCoding(PATIENT_RECORD, "U"),
    Action.CLAIM_LAPSED: EventCoding(PATIENT_RECORD, "U"),
    Action.CLAIM_REASSIGNED: EventCoding(PATIENT_RECORD, "U"),
    # A report is part of the record of the procedure it reports on.
    Action.REPORT_VIEWED: EventCoding(PROCEDURE_RECORD, "R"),
    Action.REPORT_DRAFT_SAVED: EventCoding(PROCEDURE_RECORD, "U"),
    Action.REPORT_PRELIMINARY_SIGNED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.REPORT_FINAL_SIGNED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.REPORT_ADDENDUM_SIGNED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.REAUTHENTICATION_FAILED: EventCoding(USER_AUTHENTICATION, "E"),
    # Templates are settings of the application, not patient data.
    Action.REPORT_TEMPLATE_CHANGED: EventCoding(APPLICATION_ACTIVITY, "U"),
    Action.REPORT_TEMPLATES_IMPORTED: EventCoding(IMPORT, "C", flow=Flow.TO_TELERAD),
    Action.REPORT_TEMPLATES_EXPORTED: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD),
    Action.REPORT_EXPORTED: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD),
    Action.REPORT_SENT: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD),
    Action.QUALITY_ISSUE_RAISED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.QUALITY_ISSUE_ANSWERED: EventCoding(PROCEDURE_RECORD, "U"),
    Action.QUALITY_ISSUE_STATE_CHANGED: EventCoding(PROCEDURE_RECORD, "U"),
    Action.QUALITY_ISSUE_VIEWED: EventCoding(PROCEDURE_RECORD, "R"),
    # The queue is a search of the issues, like the worklist of the exams.
    Action.QUALITY_QUEUE_VIEWED: EventCoding(QUERY, "E"),
    Action.TURNAROUND_EXPORTED: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD),
    # A critical result is part of the record of the procedure whose report it flags.
    Action.CRITICAL_RESULT_OPENED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.CRITICAL_RESULT_NOTIFIED: EventCoding(PROCEDURE_RECORD, "E"),
    Action.CRITICAL_RESULT_ACKNOWLEDGED: EventCoding(PROCEDURE_RECORD, "U"),
    Action.CRITICAL_RESULT_ESCALATED: EventCoding(PROCEDURE_RECORD, "U"),
    # The e-mail names the exam by accession number and leaves telerad, like a report sent.
    Action.NOTIFICATION_EMAILED: EventCoding(EXPORT, "R", flow=Flow.FROM_TELERAD),
    # Questions and their answers belong to the record of the procedure they ask about.
    Action.QUESTION_ASKED: EventCoding(PROCEDURE_RECORD, "C"),
    Action.QUESTION_MESSAGE_WRITTEN: EventCoding(PROCEDURE_RECORD, "U"),
    Action.QUESTION_STATE_CHANGED: EventCoding(PROCEDURE_RECORD, "U"),
    Action.QUESTION_VIEWED: EventCoding(PROCEDURE_RECORD, "R"),
    # The list is a search of the threads, like the worklist of the exams.
    Action.QUESTION_LIST_VIEWED: EventCoding(QUERY, "E"),
    Action.PORTAL_LIST_VIEWED: EventCoding(QUERY, "E"),
    # A grant changes which patients' records a user may open, as a role change does.
    Action.CLINICIAN_ACCESS_CHANGED: EventCoding(SECURITY_ALERT, "E", USER_SECURITY_ATTRIBUTES_CHANGED),
}

# An event whose action this version does not know (written by a newer one)
# is still forwarded, as application activity.
UNKNOWN_ACTION = EventCoding(APPLICATION_ACTIVITY, "E")


@dataclasses.dataclass(frozen=True)
class AuditSource:
    """telerad as it names itself in audit messages."""

    source_id: str
    enterprise_site_id: str
    ae_title: str
    machine_name: str
    # The URI that names the audit trail in messages about reading or exporting it.
    audit_log_uri: str

    @classmethod
    def from_config(cls, config: Config) -> "AuditSource":
        machine = socket.gethostname() or "localhost"
        scheme = "https" if config.http_tls else "http"
        return cls(
            source_id=config.audit_source_id or config.ae_title,
            enterprise_site_id=config.audit_enterprise_site_id,
            ae_title=config.ae_title,
            machine_name=machine,
            audit_log_uri=f"{scheme}://{machine}:{config.http_port}/audit/",
        )


def event_coding(action: str) -> EventCoding:
    try:
        return EVENT_CODES[Action(action)]
    except ValueError:
        return UNKNOWN_ACTION


def format_datetime(moment: datetime.datetime) -> str:
    """Format `moment` in UTC as xsd:dateTime and RFC 3339, with microseconds and a Z."""
    utc = moment.astimezone(datetime.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _add_code(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code.value, "codeSystemName": code.system, "originalText": code.meaning})


def _description(event: AuditEvent) -> str:
    if len(event.detail) <= MAX_DESCRIPTION_CHARACTERS:
        return event.detail
    return event.detail[:MAX_DESCRIPTION_CHARACTERS] + f" … (cut; the whole text is in telerad audit event {event.sequence})"


def _participant_roles(flow: Flow) -> tuple[Code | None, Code | None]:
    """Return the role codes of the requestor and of telerad."""
    if flow is Flow.TO_TELERAD:
        return SOURCE_ROLE, DESTINATION_ROLE
    if flow is Flow.FROM_TELERAD:
        return DESTINATION_ROLE, SOURCE_ROLE
    return None, APPLICATION_ROLE


def build_message(event: AuditEvent, source: AuditSource) -> bytes:
    """Build the DICOM audit message of `event` as UTF-8 XML with a declaration."""
    coding = event_coding(event.action)
    root = ET.Element("AuditMessage")

    identification = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": coding.action_code,
        "EventDateTime": format_datetime(event.occurred_at),
        "EventOutcomeIndicator": str(event.outcome),
    })
    _add_code(identification, "EventID", coding.event_id)
    if coding.type_code is not None:
        _add_code(identification, "EventTypeCode", coding.type_code)
    if event.detail:
        ET.SubElement(identification, "EventOutcomeDescription").text = _description(event)

    requestor_role, telerad_role = _participant_roles(coding.flow)
    if event.user or event.address:
        requestor = ET.SubElement(root, "ActiveParticipant", {
            # Events from the network without a user name still name their address.
            "UserID": event.user or event.address,
            "UserIsRequestor": "true",
        })
        if event.address:
            # NetworkAccessPointTypeCode 2: an IP address.
            requestor.set("NetworkAccessPointID", event.address)
            requestor.set("NetworkAccessPointTypeCode", "2")
        if requestor_role is not None:
            _add_code(requestor, "RoleIDCode", requestor_role)
    telerad = ET.SubElement(root, "ActiveParticipant", {
        "UserID": source.source_id,
        "AlternativeUserID": f"AETITLES={source.ae_title}",
        # telerad acted on its own when no user or peer is named.
        "UserIsRequestor": "false" if event.user or event.address else "true",
        # NetworkAccessPointTypeCode 1: a machine name.
        "NetworkAccessPointID": source.machine_name,
        "NetworkAccessPointTypeCode": "1",
    })
    if telerad_role is not None:
        _add_code(telerad, "RoleIDCode", telerad_role)

    audit_source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": source.source_id})
    if source.enterprise_site_id:
        audit_source.set("AuditEnterpriseSiteID", source.enterprise_site_id)
    _add_code(audit_source, "AuditSourceTypeCode", APPLICATION_SERVER_PROCESS)

    if event.study_instance_uid:
        # Type 2 (system object), role 3 (report): the form PS3.15 A.5.3 uses for studies.
        study = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": event.study_instance_uid,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
        })
        _add_code(study, "ParticipantObjectIDTypeCode", STUDY_INSTANCE_UID)
    other_patients = event.other_patient_ids.split("\n") if event.other_patient_ids else []
    for patient_id in filter(None, [event.patient_id, *other_patients]):
        # Type 1 (person), role 1 (patient).
        patient = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": patient_id,
            "ParticipantObjectTypeCode": "1",
            "ParticipantObjectTypeCodeRole": "1",
        })
        _add_code(patient, "ParticipantObjectIDTypeCode", PATIENT_NUMBER)
    if coding.uses_audit_log:
        # Type 2 (system object), role 13 (security resource), as PS3.15 A.5.3.2 names an audit log.
        log = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": source.audit_log_uri,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "13",
        })
        _add_code(log, "ParticipantObjectIDTypeCode", URI)
        ET.SubElement(log, "ParticipantObjectName").text = "Security Audit Log"

    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def is_failure(event: AuditEvent) -> bool:
    return event.outcome != Outcome.SUCCESS
