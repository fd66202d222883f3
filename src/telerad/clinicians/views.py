"""Notification pages: the header's counter, the list, marking read, and the e-mail preferences."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from telerad.accounts.roles import Permission, requires
from telerad.clinicians import notifications
from telerad.clinicians.models import ALWAYS_EMAILED, Notification, NotificationKind

# Notifications the list shows, newest first.
MAX_LISTED = 100


def _detach_session(request: HttpRequest) -> None:
    """Keep a poll from counting as activity: without a session on the request, Django neither saves it nor moves its expiry.

    Because SESSION_SAVE_EVERY_REQUEST renews the session on every request,
    a page left open would otherwise keep its session alive forever, past
    the idle timeout. The user was loaded before the view ran.
    """
    del request.session


def _list_context(request: HttpRequest) -> dict:
    listed = list(Notification.objects.filter(recipient=request.user)[:MAX_LISTED])
    return {"notifications": listed, "unread": sum(1 for notification in listed if notification.read_at is None)}


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    """Show the user's notifications; htmx reloads only the list, which it polls."""
    if not request.headers.get("HX-Request"):
        return render(request, "clinicians/notifications.html", _list_context(request))
    context = _list_context(request)
    _detach_session(request)
    return render(request, "clinicians/notification_list.html", context)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_GET
def notification_badge(request: HttpRequest) -> HttpResponse:
    """Return the header's counter of unread notifications, which htmx polls."""
    _detach_session(request)
    return render(request, "clinicians/notification_badge.html")


def _back_to_list(request: HttpRequest) -> HttpResponse:
    if request.headers.get("HX-Request"):
        return render(request, "clinicians/notification_list.html", _list_context(request))
    return HttpResponseRedirect(reverse("notifications:list"), status=303)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_POST
def mark_read(request: HttpRequest, notification_pk: int) -> HttpResponse:
    if not notifications.mark_read(request.user, notification_pk):
        raise Http404("no such notification of this user")
    return _back_to_list(request)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_POST
def mark_all_read(request: HttpRequest) -> HttpResponse:
    notifications.mark_all_read(request.user)
    return _back_to_list(request)


class EmailPreferencesForm(forms.Form):
    """One checkbox per kind of notification that the user may choose to get by e-mail."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for kind in notifications.optional_kinds():
            self.fields[kind.value] = forms.BooleanField(label=kind.label, required=False)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@require_http_methods(["GET", "POST"])
def email_preferences(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = EmailPreferencesForm(request.POST)
        if form.is_valid():
            notifications.save_email_choices(request.user, form.cleaned_data)
            messages.success(request, _("Your e-mail preferences are saved."))
            return HttpResponseRedirect(reverse("notifications:preferences"), status=303)
    else:
        form = EmailPreferencesForm(initial=notifications.email_choices(request.user))
    context = {
        "form": form,
        "always_emailed": [kind.label for kind in NotificationKind if kind in ALWAYS_EMAILED],
        "email_address": request.user.email,
    }
    return render(request, "clinicians/preferences.html", context)
