"""Question pages: the user's threads, asking about an exam, and one thread with its messages, replies and state buttons.

Every view starts from the threads or exams the user may read, so that
anything else is 404, whether it does not exist or is not theirs. Reading a
thread and writing in it are audited for the exam's patient.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from telerad.accounts.roles import Permission, has_permission, requires
from telerad.audit import events as audit
from telerad.clinicians import notifications, questions
from telerad.clinicians.question_forms import AskForm, ReplyForm, ThreadFilterForm
from telerad.clinicians.question_models import Question
from telerad.clinicians.views import _detach_session
from telerad.reading.models import Exam
from telerad.reading.reports import audit_fields, exam_label

THREADS_PER_PAGE = 50


def _address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _is_htmx(request: HttpRequest) -> bool:
    return bool(request.headers.get("HX-Request"))


def _question_or_404(request: HttpRequest, question_pk: int) -> Question:
    related = ("exam__patient", "exam__subspecialty", "signed_report__signer", "opened_by", "assigned_to", "answered_by", "closed_by")
    return get_object_or_404(questions.visible_questions(request.user).select_related(*related), pk=question_pk)


def _exam_or_404(request: HttpRequest, exam_pk: int) -> Exam:
    exam = get_object_or_404(Exam.objects.select_related("patient", "subspecialty"), pk=exam_pk)
    if not questions.may_ask(request.user, exam):
        raise Http404("no such exam for this user")
    return exam


def _audit_view(request: HttpRequest, question: Question, detail: str) -> None:
    audit.record_event(
        action=audit.Action.QUESTION_VIEWED, user=request.user.get_username(), address=_address(request),
        detail=f"question {question.pk}, {exam_label(question.exam)}: {detail}", **audit_fields(question.exam),
    )


@requires(Permission.ASK_QUESTIONS)
@require_GET
def question_list(request: HttpRequest) -> HttpResponse:
    """List the user's threads by scope and state; ?exam=ID lists one exam's threads."""
    form = ThreadFilterForm(request.GET, user=request.user)
    threads = questions.visible_questions(request.user).select_related("exam__patient", "opened_by", "assigned_to")
    if form.is_valid():
        if form.cleaned_data.get("exam"):
            _exam_or_404(request, form.cleaned_data["exam"])
        threads = form.filter(threads).order_by("-last_message_at", "-id")
    else:
        threads = threads.none()
    page = Paginator(threads, THREADS_PER_PAGE).get_page(request.GET.get("page"))
    parameters = "; ".join(f"{name}={value}" for name, value in sorted((form.cleaned_data if form.is_valid() else {}).items()) if value)
    audit.record_event(
        action=audit.Action.QUESTION_LIST_VIEWED, user=request.user.get_username(), address=_address(request),
        detail=f"{parameters or 'default filters'}; page={page.number}", patient_ids=[question.exam.patient.patient_id for question in page.object_list],
    )
    context = {
        "form": form,
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "now": timezone.now(),
    }
    return render(request, "clinicians/question_list.html", context, status=200 if form.is_valid() else 400)


@requires(Permission.ASK_QUESTIONS)
@require_http_methods(["GET", "POST"])
def new_question(request: HttpRequest) -> HttpResponse:
    """Show the form to ask about the exam named by ?exam=ID, and open the thread when it is posted."""
    exam_value = request.GET.get("exam", "")
    if not exam_value.isdigit():
        return HttpResponseBadRequest(_("Name the exam to ask about, as in /questions/new/?exam=42.") + "\n", content_type="text/plain; charset=utf-8")
    exam = _exam_or_404(request, int(exam_value))

    form = AskForm(request.POST if request.method == "POST" else None, exam=exam)
    if request.method == "POST" and form.is_valid():
        try:
            question = questions.ask(
                exam, request.user, subject=form.cleaned_data["subject"], body=form.cleaned_data["body"],
                signed_report=form.cleaned_data["signed_report"], address=_address(request),
            )
        except questions.QuestionActionRejected as exc:
            messages.error(request, str(exc))
        else:
            if question.assigned_to is not None:
                messages.success(request, _("Your question is sent to %(name)s.") % {"name": question.assigned_to.get_username()})
            else:
                messages.warning(request, _("Your question is saved, but no radiologist could be assigned. The radiologists see it in their list."))
            return HttpResponseRedirect(questions.thread_link(question), status=303)
    if request.method == "GET":
        audit.record_event(
            action=audit.Action.EXAM_VIEWED, user=request.user.get_username(), address=_address(request),
            detail=f"{exam_label(exam)}: question form", **audit_fields(exam),
        )
    context = {"exam": exam, "patient": exam.patient, "form": form}
    return render(request, "clinicians/question_new.html", context, status=400 if form.is_bound else 200)


def _thread_context(request: HttpRequest, question: Question, reply_form: ReplyForm | None = None) -> dict:
    return {
        "question": question,
        "exam": question.exam,
        "patient": question.exam.patient,
        "thread_messages": questions.thread_messages(question),
        "version": questions.thread_version(question),
        "reply_form": reply_form or ReplyForm(),
        "can_answer": questions.may_answer(request.user),
        "can_close": questions.may_close(request.user, question),
        "can_open_exam": has_permission(request.user, Permission.READ_EXAMS),
        "now": timezone.now(),
    }


@requires(Permission.ASK_QUESTIONS)
@require_GET
def thread(request: HttpRequest, question_pk: int) -> HttpResponse:
    """Show a thread; htmx polls it with ?version= and gets 204 while nothing changed, else the new thread section."""
    question = _question_or_404(request, question_pk)
    polled_version = request.GET.get("version")
    if _is_htmx(request) and polled_version is not None:
        _detach_session(request)
        if polled_version == questions.thread_version(question):
            return HttpResponse(status=204)
        _audit_view(request, question, "refreshed after a change")
        notifications.mark_link_read(request.user, questions.thread_link(question))
        return render(request, "clinicians/question_thread.html", _thread_context(request, question))

    _audit_view(request, question, "thread page")
    notifications.mark_link_read(request.user, questions.thread_link(question))
    return render(request, "clinicians/question_page.html", _thread_context(request, question))


@requires(Permission.ASK_QUESTIONS)
@require_POST
def reply(request: HttpRequest, question_pk: int) -> HttpResponse:
    """Add a message; htmx gets the new thread section and an empty form, other browsers a redirect to the thread."""
    question = _question_or_404(request, question_pk)
    form = ReplyForm(request.POST)
    if form.is_valid():
        try:
            question = questions.write_message(
                question.pk, request.user, body=form.cleaned_data["body"], mark_answered=form.cleaned_data["mark_answered"],
                address=_address(request),
            )
        except questions.QuestionActionRejected as exc:
            messages.error(request, str(exc))
            return _back_to_thread(request, question)
        if not _is_htmx(request):
            messages.success(request, _("Your message is sent."))
            return HttpResponseRedirect(questions.thread_link(question), status=303)
        question = _question_or_404(request, question.pk)
        form = ReplyForm()
    elif not _is_htmx(request):
        return render(request, "clinicians/question_page.html", _thread_context(request, question, form), status=400)
    # htmx swaps only 2xx responses, so an invalid message comes back with 200 and its errors in the form.
    return render(request, "clinicians/question_reply_response.html", _thread_context(request, question, form))


def _back_to_thread(request: HttpRequest, question: Question) -> HttpResponse:
    if _is_htmx(request):
        # A full page load shows the message; htmx performs it on this header.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = questions.thread_link(question)
        return response
    return HttpResponseRedirect(questions.thread_link(question), status=303)


@requires(Permission.ANSWER_QUESTIONS)
@require_POST
def mark_answered(request: HttpRequest, question_pk: int) -> HttpResponse:
    question = _question_or_404(request, question_pk)
    try:
        questions.mark_answered(question.pk, request.user, address=_address(request))
    except questions.QuestionActionRejected as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The question is marked answered."))
    return _back_to_thread(request, question)


@requires(Permission.ASK_QUESTIONS)
@require_POST
def close(request: HttpRequest, question_pk: int) -> HttpResponse:
    question = _question_or_404(request, question_pk)
    try:
        questions.close(question.pk, request.user, address=_address(request))
    except questions.QuestionActionRejected as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The question is closed. A new message reopens it."))
    return _back_to_thread(request, question)

