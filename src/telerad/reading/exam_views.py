"""One exam: its page with clinical information, studies and priors, its claim, and the editing of its details.

A request of the claim's holder on an exam page keeps the claim alive (see
reading.claims). Every page writes an audit event.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts.roles import Permission, Role, has_permission, requires
from telerad.audit import events as audit
from telerad.core.security import embeds_same_origin_frames
from telerad.reading import claims, quality
from telerad.reading.models import Exam, ExamStudy, SignedReport, Subspecialty
from telerad.reading.priors import with_study_dates
from telerad.reading.reports import SIGNED_STATUSES
from telerad.reading.views import record_view
from telerad.reading.worklist import exam_reference

# Prior exams shown on an exam page, newest first.
MAX_PRIORS = 20


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _studies_of(exams: list[Exam]) -> dict[int, list]:
    by_exam: dict[int, list] = {exam.pk: [] for exam in exams}
    links = ExamStudy.objects.filter(exam__in=exams).select_related("study").order_by("study__study_date", "study__study_time", "study_id")
    for link in links:
        by_exam[link.exam_id].append(link.study)
    return by_exam


def _viewer_uids(studies: list) -> str:
    # OHIF opens several studies from one comma-separated StudyInstanceUIDs parameter.
    return ",".join(study.study_instance_uid for study in studies)


class ReassignForm(forms.Form):
    reader = forms.ModelChoiceField(label=gettext_lazy("Reader"), queryset=get_user_model().objects.none())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        reading_roles = [Role.RADIOLOGIST.value, Role.RESIDENT.value, Role.LEAD_RADIOLOGIST.value]
        self.fields["reader"].queryset = get_user_model().objects.filter(is_active=True, groups__name__in=reading_roles).distinct().order_by("username")


@requires(Permission.READ_EXAMS)
@require_http_methods(["GET"])
@embeds_same_origin_frames
def exam_page(request: HttpRequest, exam_pk: int) -> HttpResponse:
    claims.record_activity(exam_pk, request.user)
    exam = get_object_or_404(Exam.objects.select_related("patient", "subspecialty", "claimed_by", "referring_clinician"), pk=exam_pk)
    signed = Prefetch("signed_reports", queryset=SignedReport.objects.select_related("signer").order_by("signed_at", "id"))
    # Priors without a Study Date have no date to show and come last, by arrival.
    priors = list(
        with_study_dates(Exam.objects.filter(patient=exam.patient).exclude(pk=exam.pk).select_related("subspecialty"))
        .prefetch_related(signed)
        .order_by(F("study_datetime").desc(nulls_last=True), "-study_received_at", "-id")[:MAX_PRIORS]
    )
    studies = _studies_of([exam, *priors])
    own_reports = list(SignedReport.objects.filter(exam=exam).select_related("signer").order_by("signed_at", "id"))

    now = timezone.now()
    holder_id = claims.active_holder_id(exam, claims.lapse_cutoff(now))
    record_view(
        request, audit.Action.EXAM_VIEWED,
        patient_id=exam.patient.patient_id,
        study_instance_uid=studies[exam.pk][0].study_instance_uid if studies[exam.pk] else "",
        detail=f"exam={exam.pk}; accession={exam.accession_number}",
    )
    can_manage = has_permission(request.user, Permission.MANAGE_READING)
    # The embedded viewer lists the current studies first and the priors after
    # them in its study browser. Without an initial series its hanging
    # protocol may put a prior in the viewport, so it names the current
    # exam's first series.
    prior_studies = [study for prior in priors for study in studies[prior.pk]]
    current_series = quality.exam_series(exam)
    context = {
        "exam": exam,
        "patient": exam.patient,
        "studies": studies[exam.pk],
        "viewer_uids": _viewer_uids(studies[exam.pk]),
        "frame_uids": _viewer_uids([*studies[exam.pk], *prior_studies]),
        "frame_initial_series": current_series[0].series_instance_uid if current_series else "",
        "quality_issues": quality.issues_of_exam(exam),
        "quality_form": quality.RaiseIssueForm(exam=exam, series=current_series) if studies[exam.pk] else None,
        "priors": [(prior, studies[prior.pk], _viewer_uids(studies[prior.pk])) for prior in priors],
        "own_reports": own_reports,
        "holder": exam.claimed_by if holder_id is not None else None,
        "held_by_me": holder_id == request.user.pk,
        "claimable": exam.status in claims.OPEN_STATUSES and holder_id is None,
        "can_manage": can_manage,
        "can_edit_details": has_permission(request.user, Permission.EDIT_EXAM_DETAILS),
        # The addendum form is on the report page, which the exam page does not embed once the claim ends.
        "can_addend": exam.status in SIGNED_STATUSES and has_permission(request.user, Permission.SIGN_REPORTS),
        "reassign_form": ReassignForm() if can_manage and exam.status in claims.OPEN_STATUSES else None,
    }
    return render(request, "reading/exam.html", context)


def _claim_refused(request: HttpRequest, exc: claims.ClaimRefused, exam_pk: int) -> HttpResponse:
    messages.error(request, str(exc))
    return HttpResponseRedirect(reverse("reading:exam", args=[exam_pk]), status=303)


@requires(Permission.READ_EXAMS)
@require_POST
def claim_exam(request: HttpRequest, exam_pk: int) -> HttpResponse:
    """Claim the exam and open it; a refused claim opens it read-only with the reason."""
    get_object_or_404(Exam.objects.only("pk"), pk=exam_pk)
    try:
        claims.claim(exam_pk, request.user, address=_address(request))
    except claims.ClaimRefused as exc:
        return _claim_refused(request, exc, exam_pk)
    return HttpResponseRedirect(reverse("reading:exam", args=[exam_pk]), status=303)


@requires(Permission.READ_EXAMS)
@require_POST
def release_claim(request: HttpRequest, exam_pk: int) -> HttpResponse:
    """End the user's claim, or anyone's for a lead radiologist, and return to the worklist."""
    get_object_or_404(Exam.objects.only("pk"), pk=exam_pk)
    try:
        exam = claims.release(exam_pk, request.user, address=_address(request))
    except claims.ClaimRefused as exc:
        return _claim_refused(request, exc, exam_pk)
    messages.success(request, _("The exam (%(exam)s) is back on the worklist for anyone to claim.") % {"exam": exam_reference(exam)})
    return HttpResponseRedirect(reverse("reading:worklist"), status=303)


@requires(Permission.MANAGE_READING)
@require_POST
def reassign_claim(request: HttpRequest, exam_pk: int) -> HttpResponse:
    get_object_or_404(Exam.objects.only("pk"), pk=exam_pk)
    form = ReassignForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a reader from the list."))
        return HttpResponseRedirect(reverse("reading:exam", args=[exam_pk]), status=303)
    try:
        exam = claims.reassign(exam_pk, form.cleaned_data["reader"], request.user, address=_address(request))
    except claims.ClaimRefused as exc:
        return _claim_refused(request, exc, exam_pk)
    messages.success(request, _("The exam (%(exam)s) is now claimed by %(name)s.") % {"exam": exam_reference(exam), "name": form.cleaned_data["reader"].get_username()})
    return HttpResponseRedirect(reverse("reading:exam", args=[exam_pk]), status=303)


class ExamDetailsForm(forms.ModelForm):
    class Meta:
        model = Exam
        fields = ["priority", "subspecialty", "referring_clinician", "department", "reason_for_study", "clinical_history"]
        help_texts = {"department": gettext_lazy("The ward or department that asked for the exam. Clinicians granted it see the exam.")}
        widgets = {
            "reason_for_study": forms.Textarea(attrs={"rows": 3}),
            "clinical_history": forms.Textarea(attrs={"rows": 5}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subspecialty"].queryset = Subspecialty.objects.filter(active=True)
        self.fields["referring_clinician"].queryset = (
            get_user_model().objects.filter(is_active=True, groups__name=Role.CLINICIAN.value).order_by("username")
        )


@requires(Permission.EDIT_EXAM_DETAILS)
@require_http_methods(["GET", "POST"])
def edit_exam_details(request: HttpRequest, exam_pk: int) -> HttpResponse:
    """Complete or correct the exam's clinical information, priority, subspecialty, referring clinician and department."""
    claims.record_activity(exam_pk, request.user)
    exam = get_object_or_404(Exam.objects.select_related("patient"), pk=exam_pk)
    first_uid = ExamStudy.objects.filter(exam=exam).order_by("id").values_list("study__study_instance_uid", flat=True).first() or ""
    if request.method == "POST":
        form = ExamDetailsForm(request.POST, instance=exam)
        if form.is_valid():
            changed = form.changed_data
            if changed:
                with transaction.atomic():
                    form.save()
                    # Field names only: the clinical text stays out of the trail.
                    record_view(
                        request, audit.Action.EXAM_DETAILS_CHANGED, patient_id=exam.patient.patient_id, study_instance_uid=first_uid,
                        detail=f"exam={exam.pk}; accession={exam.accession_number}; fields={','.join(changed)}",
                    )
                messages.success(request, _("The exam details are saved."))
            back = reverse("reading:exam", args=[exam.pk]) if has_permission(request.user, Permission.READ_EXAMS) else reverse("reading:exam-details", args=[exam.pk])
            return HttpResponseRedirect(back, status=303)
    else:
        form = ExamDetailsForm(instance=exam)
        record_view(
            request, audit.Action.EXAM_VIEWED, patient_id=exam.patient.patient_id, study_instance_uid=first_uid,
            detail=f"exam={exam.pk}; accession={exam.accession_number}; details form",
        )
    return render(request, "reading/exam_details.html", {"exam": exam, "patient": exam.patient, "form": form})
