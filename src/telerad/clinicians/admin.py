"""The notification e-mails that failed or wait, with a retry action, beside the report deliveries.

The list opens to the roles that grant MANAGE_REMOTE_AES, as the report
delivery list does: telerad.accounts.backends maps that permission to the
view and change permissions of EmailJob. E-mails carry no patient data
beyond the accession number and a link, so the list shows them whole.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from telerad.clinicians import mail
from telerad.clinicians.models import EmailJob, EmailState
from telerad.core.admin import FailedOrPendingFilter

logger = logging.getLogger(__name__)


class OpenEmailFilter(FailedOrPendingFilter):
    states = EmailState


@admin.register(EmailJob)
class EmailJobAdmin(admin.ModelAdmin):
    list_display = ("id", "state", "kind", "to_address", "accession_number", "attempts", "next_attempt_at", "last_error", "created_at", "sent_at")
    list_filter = (OpenEmailFilter, "kind")
    list_select_related = ("exam",)
    search_fields = ("exam__accession_number", "to_address", "last_error")
    actions = ["retry"]
    readonly_fields = [field.name for field in EmailJob._meta.fields]

    @admin.display(description=_("accession number"))
    def accession_number(self, job: EmailJob) -> str:
        return job.exam.accession_number if job.exam is not None else ""

    # E-mails come from notifications only, so the list shows and retries them but never adds or deletes one.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description=_("Retry the selected e-mails now"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[EmailJob]) -> None:
        retried = 0
        with transaction.atomic():
            for job in queryset.exclude(state=EmailState.SENT):
                if mail.retry_now(job):
                    retried += 1
                    logger.info("e-mail job %s queued again by %s", job.pk, request.user.get_username())
        self.message_user(
            request,
            ngettext("%(count)d e-mail queued again.", "%(count)d e-mails queued again.", retried) % {"count": retried},
            messages.SUCCESS,
        )
