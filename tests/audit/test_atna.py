"""Audit events as DICOM audit messages (PS3.15 A.5), parsed back and checked field by field."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from telerad.audit import atna, events
from telerad.audit.events import Action, Outcome

pytestmark = pytest.mark.django_db

STUDY_UID = "1.2.826.0.1.3680043.8.498.10"
SOURCE = atna.AuditSource(
    source_id="TELERAD",
    enterprise_site_id="Radiology North",
    ae_title="TELERAD",
    machine_name="pacs01",
    audit_log_uri="https://pacs01:8443/audit/",
)
MOMENT = datetime.datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)


def message_of(**fields) -> ET.Element:
    with mock.patch.object(events.timezone, "now", return_value=MOMENT):
        event = events.record_event(**fields)
    document = atna.build_message(event, SOURCE)
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    return ET.fromstring(document)


def code_of(element: ET.Element) -> tuple[str, str, str]:
    return element.get("csd-code"), element.get("codeSystemName"), element.get("originalText")


def participants(root: ET.Element) -> list[ET.Element]:
    return root.findall("ActiveParticipant")


def objects_by_type(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {
        (element.get("ParticipantObjectTypeCode"), element.get("ParticipantObjectTypeCodeRole")): element
        for element in root.findall("ParticipantObjectIdentification")
    }


def test_every_action_has_an_event_code():
    assert set(atna.EVENT_CODES) == set(Action)


def test_study_viewed_message():
    root = message_of(action=Action.STUDY_VIEWED, user="dr.house", address="192.0.2.7", patient_id="PAT-1", study_instance_uid=STUDY_UID)

    assert root.tag == "AuditMessage"
    identification = root.find("EventIdentification")
    assert identification.get("EventActionCode") == "R"
    assert identification.get("EventDateTime") == "2026-05-06T07:08:09.123456Z"
    assert identification.get("EventOutcomeIndicator") == "0"
    assert code_of(identification.find("EventID")) == ("110103", "DCM", "DICOM Instances Accessed")
    assert identification.find("EventTypeCode") is None
    assert identification.find("EventOutcomeDescription") is None

    requestor, telerad = participants(root)
    assert requestor.get("UserID") == "dr.house"
    assert requestor.get("UserIsRequestor") == "true"
    assert requestor.get("NetworkAccessPointID") == "192.0.2.7"
    assert requestor.get("NetworkAccessPointTypeCode") == "2"
    assert telerad.get("UserID") == "TELERAD"
    assert telerad.get("AlternativeUserID") == "AETITLES=TELERAD"
    assert telerad.get("UserIsRequestor") == "false"
    assert telerad.get("NetworkAccessPointID") == "pacs01"
    assert telerad.get("NetworkAccessPointTypeCode") == "1"
    assert code_of(telerad.find("RoleIDCode")) == ("110150", "DCM", "Application")

    source = root.find("AuditSourceIdentification")
    assert source.get("AuditSourceID") == "TELERAD"
    assert source.get("AuditEnterpriseSiteID") == "Radiology North"
    assert code_of(source.find("AuditSourceTypeCode")) == ("4", "RFC-3881", "Application Server Process")

    objects = objects_by_type(root)
    assert set(objects) == {("1", "1"), ("2", "3")}
    patient, study = objects[("1", "1")], objects[("2", "3")]
    assert patient.get("ParticipantObjectID") == "PAT-1"
    assert code_of(patient.find("ParticipantObjectIDTypeCode")) == ("2", "RFC-3881", "Patient Number")
    assert study.get("ParticipantObjectID") == STUDY_UID
    assert code_of(study.find("ParticipantObjectIDTypeCode")) == ("110180", "DCM", "Study Instance UID")


def test_query_message_carries_the_detail():
    root = message_of(action=Action.QUERY, user="MODALITY1", address="192.0.2.8", detail="C-FIND study level; PatientID=PAT-2; 3 matches")

    identification = root.find("EventIdentification")
    assert code_of(identification.find("EventID")) == ("110112", "DCM", "Query")
    assert identification.get("EventActionCode") == "E"
    assert identification.find("EventOutcomeDescription").text == "C-FIND study level; PatientID=PAT-2; 3 matches"
    assert root.findall("ParticipantObjectIdentification") == []


def test_failed_login_message():
    root = message_of(action=Action.LOGIN_FAILED, outcome=Outcome.MINOR_FAILURE, user="mallory", address="198.51.100.9")

    identification = root.find("EventIdentification")
    assert code_of(identification.find("EventID")) == ("110114", "DCM", "User Authentication")
    assert code_of(identification.find("EventTypeCode")) == ("110122", "DCM", "Login")
    assert identification.get("EventActionCode") == "E"
    assert identification.get("EventOutcomeIndicator") == "4"
    assert participants(root)[0].get("UserID") == "mallory"


def test_logout_message():
    root = message_of(action=Action.LOGOUT, user="dr.house", address="192.0.2.7")

    assert code_of(root.find("EventIdentification/EventTypeCode")) == ("110123", "DCM", "Logout")


def test_stored_instances_name_source_and_destination():
    root = message_of(action=Action.INSTANCES_STORED, user="CT_SCANNER", address="192.0.2.20", patient_id="PAT-3", study_instance_uid=STUDY_UID)

    assert code_of(root.find("EventIdentification/EventID")) == ("110104", "DCM", "DICOM Instances Transferred")
    assert root.find("EventIdentification").get("EventActionCode") == "C"
    sender, telerad = participants(root)
    assert code_of(sender.find("RoleIDCode")) == ("110153", "DCM", "Source Role ID")
    assert code_of(telerad.find("RoleIDCode")) == ("110152", "DCM", "Destination Role ID")


def test_retrieve_names_telerad_as_source():
    root = message_of(action=Action.RETRIEVE, user="VIEWER", address="192.0.2.21", patient_id="PAT-3", study_instance_uid=STUDY_UID)

    assert root.find("EventIdentification").get("EventActionCode") == "R"
    receiver, telerad = participants(root)
    assert code_of(receiver.find("RoleIDCode")) == ("110152", "DCM", "Destination Role ID")
    assert code_of(telerad.find("RoleIDCode")) == ("110153", "DCM", "Source Role ID")


def test_rejected_association_is_a_security_alert():
    root = message_of(action=Action.ASSOCIATION_REJECTED, outcome=Outcome.MINOR_FAILURE, user="UNKNOWN_AE", address="192.0.2.30")

    assert code_of(root.find("EventIdentification/EventID")) == ("110113", "DCM", "Security Alert")
    assert code_of(root.find("EventIdentification/EventTypeCode")) == ("110126", "DCM", "Node Authentication")


def test_patient_update_names_only_the_patient():
    root = message_of(action=Action.PATIENT_UPDATED, patient_id="PAT-4", detail="attributes updated from a newer study")

    assert code_of(root.find("EventIdentification/EventID")) == ("110110", "DCM", "Patient Record")
    assert root.find("EventIdentification").get("EventActionCode") == "U"
    # Without a user or address, telerad is the only participant and the requestor.
    (telerad,) = participants(root)
    assert telerad.get("UserIsRequestor") == "true"
    assert set(objects_by_type(root)) == {("1", "1")}


def test_audit_export_names_the_audit_log():
    root = message_of(action=Action.AUDIT_EXPORTED, user="auditor", address="192.0.2.40", patient_id="PAT-5", detail="CSV export; patient_id=PAT-5")

    assert code_of(root.find("EventIdentification/EventID")) == ("110106", "DCM", "Export")
    log = objects_by_type(root)[("2", "13")]
    assert log.get("ParticipantObjectID") == "https://pacs01:8443/audit/"
    assert code_of(log.find("ParticipantObjectIDTypeCode")) == ("12", "RFC-3881", "URI")
    assert log.find("ParticipantObjectName").text == "Security Audit Log"
    assert objects_by_type(root)[("1", "1")].get("ParticipantObjectID") == "PAT-5"


def test_audit_search_is_audit_log_used():
    root = message_of(action=Action.AUDIT_SEARCHED, user="auditor", address="192.0.2.40", detail="page=1")

    assert code_of(root.find("EventIdentification/EventID")) == ("110101", "DCM", "Audit Log Used")
    assert ("2", "13") in objects_by_type(root)


def test_unknown_action_is_application_activity():
    root = message_of(action="reading-started", user="dr.house")

    assert code_of(root.find("EventIdentification/EventID")) == ("110100", "DCM", "Application Activity")


def test_markup_in_values_is_escaped():
    root = message_of(action=Action.QUERY, user='a<b>&"c', detail="PatientID=<script>&amp;")

    assert participants(root)[0].get("UserID") == 'a<b>&"c'
    assert root.find("EventIdentification/EventOutcomeDescription").text == "PatientID=<script>&amp;"


def test_long_detail_is_cut_with_a_pointer():
    root = message_of(action=Action.QUERY, user="pacs", detail="x" * 10_000)

    text = root.find("EventIdentification/EventOutcomeDescription").text
    assert text.startswith("x" * atna.MAX_DESCRIPTION_CHARACTERS)
    assert text.endswith("(cut; the whole text is in telerad audit event 1)")
