"""The demo's critical result contact: its lead radiologist, so that critical results reach someone out of the box."""

from __future__ import annotations

import dataclasses
import io

import pytest
from django.core.management import call_command

from telerad import config
from telerad.accounts.roles import Role
from telerad.clinicians import critical
from telerad.core.demo import DEMO_ACCOUNTS
from tests.reading.reports_fixtures import create_exam


def load(tmp_path, **values: str) -> config.Config:
    environ = {"TELERAD_DATA_DIR": str(tmp_path)}
    environ.update({f"TELERAD_{name.upper()}": value for name, value in values.items()})
    return config.load(environ)


def test_demo_contacts_default_to_lead(tmp_path):
    loaded = load(tmp_path, demo="true")

    assert loaded.critical_department_contact == config.DEMO_CRITICAL_CONTACT
    assert loaded.critical_escalation_contact == config.DEMO_CRITICAL_CONTACT
    lead_roles = {username: roles for username, _password, roles in DEMO_ACCOUNTS}[config.DEMO_CRITICAL_CONTACT]
    assert Role.LEAD_RADIOLOGIST.value in lead_roles


def test_demo_contacts_can_be_overridden(tmp_path):
    loaded = load(tmp_path, demo="true", critical_department_contact="desk", critical_escalation_contact="on-call")

    assert loaded.critical_department_contact == "desk"
    assert loaded.critical_escalation_contact == "on-call"


def test_contacts_unset_outside_demo(tmp_path):
    loaded = load(tmp_path)

    assert loaded.critical_department_contact == ""
    assert loaded.critical_escalation_contact == ""


@pytest.mark.django_db
def test_demo_command_makes_lead_the_contact(settings, tmp_path):
    demo_config = load(tmp_path, demo="true")
    settings.TELERAD = dataclasses.replace(
        settings.TELERAD, demo=True, critical_department_contact=demo_config.critical_department_contact,
        critical_escalation_contact=demo_config.critical_escalation_contact,
    )
    output = io.StringIO()

    call_command("demo", "--no-images", stdout=output)
    route = critical.route_critical_result(create_exam(accession="DEMO-CT-2026"))

    assert route.source is critical.RecipientSource.DEPARTMENT_CONTACT
    assert route.user.get_username() == "lead"
    assert "critical results of exams without a referring clinician go to lead" in output.getvalue()
    assert "critical results not acknowledged in time escalate to lead" in output.getvalue()
