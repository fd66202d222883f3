"""The servers' background work, started and stopped as one set of threads.

The parts are exam sync and lapsed claims with the escalation of critical
results (:mod:`telerad.reading.background`), the e-mail outbox
(:mod:`telerad.clinicians.mail`), the report delivery outbox
(:mod:`telerad.reading.delivery.outbox`) and audit forwarding
(:mod:`telerad.audit.forwarder`). Each keeps its state in the database, so
several processes may run them at once. ``telerad serve`` and
``telerad worker`` run all of them, and ``telerad web`` all but report
delivery.
"""

from __future__ import annotations

import dataclasses

from telerad.audit import forwarder as audit_forwarder
from telerad.clinicians import critical, mail
from telerad.reading import background as worklist_background
from telerad.reading import claims, exams
from telerad.reading.delivery import outbox as report_delivery


def start(*, report_deliveries: bool = True) -> None:
    """Start this process's background threads, except those already running."""
    audit_forwarder.start()
    worklist_background.start()
    mail.start()
    if report_deliveries:
        report_delivery.start()


def stop() -> None:
    """Stop every background thread that start() started in this process."""
    report_delivery.stop()
    mail.stop()
    worklist_background.stop()
    audit_forwarder.stop()


@dataclasses.dataclass(frozen=True)
class PassSummary:
    """The counts of one pass of the background work."""

    studies_linked: int
    claims_cleared: int
    critical_results_escalated: int
    emails_attempted: int
    deliveries_attempted: int


def run_once(owner: str) -> PassSummary:
    """Do one pass of every part in this thread, except audit forwarding (see ``telerad audit forward``).

    Escalations come before the e-mails, so that the e-mails they queue go
    out in the same pass. The outboxes attempt one batch each.
    """
    synced = exams.sync_exams()
    cleared = claims.expire_lapsed_claims()
    escalated = critical.check_escalations()
    emails = mail.send_due_email(owner)
    deliveries = report_delivery.process_due_jobs(owner)
    return PassSummary(
        studies_linked=synced.studies_linked, claims_cleared=cleared, critical_results_escalated=escalated,
        emails_attempted=emails, deliveries_attempted=deliveries,
    )
