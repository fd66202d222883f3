"""Forms of the question pages: asking, replying, and the filters of the thread list."""

from __future__ import annotations

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from telerad.clinicians import questions
from telerad.clinicians.question_models import Question, QuestionMessage, QuestionState
from telerad.reading.models import Exam, SignedReport
from telerad.reading.worklist import user_subspecialty_ids


class SignedReportChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: SignedReport) -> str:
        return _("%(kind)s report signed by %(user)s on %(time)s") % {
            "kind": obj.get_kind_display(), "user": obj.signer.get_username(), "time": f"{obj.signed_at:%Y-%m-%d %H:%M}",
        }


class AskForm(forms.Form):
    subject = forms.CharField(label=_("Subject"), max_length=questions.MAX_SUBJECT_CHARACTERS)
    signed_report = SignedReportChoiceField(
        label=_("About"), queryset=SignedReport.objects.none(), required=False, empty_label=_("The exam in general"),
    )
    body = forms.CharField(
        label=_("Question"), max_length=questions.MAX_MESSAGE_CHARACTERS, widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("The radiologist reads it in telerad. Notifications and e-mails name only the accession number."),
    )

    def __init__(self, *args, exam: Exam, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["signed_report"].queryset = SignedReport.objects.filter(exam=exam).select_related("signer").order_by("signed_at", "id")


class ReplyForm(forms.Form):
    body = forms.CharField(label=_("Message"), max_length=questions.MAX_MESSAGE_CHARACTERS, widget=forms.Textarea(attrs={"rows": 4}))
    # Set by the "Send and mark answered" button.
    mark_answered = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_body(self) -> str:
        body = self.cleaned_data["body"].strip()
        if not body:
            raise forms.ValidationError(_("Write a message before sending."))
        return body


# Scopes of the thread list.
INVOLVED = "involved"
OPENED = "opened"
ASSIGNED = "assigned"
SUBSPECIALTIES = "subspecialties"
ALL_THREADS = "all"
# States of the thread list besides the single states.
ACTIVE = "active"
ALL_STATES = "all"


class ThreadFilterForm(forms.Form):
    scope = forms.ChoiceField(label=_("Threads"), required=False)
    state = forms.ChoiceField(
        label=_("State"), required=False,
        choices=[(ACTIVE, _("Open or answered")), *QuestionState.choices, (ALL_STATES, _("All"))],
    )
    exam = forms.IntegerField(label=_("Exam"), required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args, user: AbstractBaseUser, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        choices = [(INVOLVED, _("Mine: asked by me, assigned to me or written in")), (OPENED, _("Asked by me"))]
        if questions.may_answer(user):
            choices += [(ASSIGNED, _("Assigned to me")), (SUBSPECIALTIES, _("In my subspecialties or assigned to nobody"))]
        choices.append((ALL_THREADS, _("All that I may read")))
        self.fields["scope"].choices = choices

    def chosen_scope(self) -> str:
        """Return the chosen scope; a list of one exam's threads shows all of them unless a scope is given."""
        if self.cleaned_data.get("scope"):
            return self.cleaned_data["scope"]
        return ALL_THREADS if self.cleaned_data.get("exam") else INVOLVED

    def filter(self, threads: QuerySet[Question]) -> QuerySet[Question]:
        """Narrow the threads the user may read to the cleaned filters. Call it only on a valid form."""
        user = self.user
        scope = self.chosen_scope()
        if scope == INVOLVED:
            written_in = QuestionMessage.objects.filter(author=user).values("question_id")
            threads = threads.filter(Q(opened_by=user) | Q(assigned_to=user) | Q(pk__in=written_in))
        elif scope == OPENED:
            threads = threads.filter(opened_by=user)
        elif scope == ASSIGNED:
            threads = threads.filter(assigned_to=user)
        elif scope == SUBSPECIALTIES:
            threads = threads.filter(questions.in_subspecialties(user_subspecialty_ids(user)))

        state = self.cleaned_data.get("state") or ACTIVE
        if state == ACTIVE:
            threads = threads.filter(state__in=[QuestionState.OPEN, QuestionState.ANSWERED])
        elif state != ALL_STATES:
            threads = threads.filter(state=state)
        if self.cleaned_data.get("exam"):
            threads = threads.filter(exam_id=self.cleaned_data["exam"])
        return threads
