"""The login steps: password, then an authenticator or recovery code (or enrolment of a first authenticator), and logout.

A user is logged in (django.contrib.auth.login) only after the last step, so
that every authenticated session has passed both factors whenever two-factor
login is required. Between the steps the session contains a pending login that
names the user and expires after PENDING_LOGIN_LIFETIME.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import django_otp
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp.models import Device

from telerad.accounts import lockout, two_factor
from telerad.accounts.forms import CodeForm
from telerad.accounts.user_sessions import LAST_ACTIVITY_COOKIE, client_address, idle_timeout_ended_session
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

PENDING_LOGIN_KEY = "telerad_pending_login"
# Time from a correct password to the second step's end.
PENDING_LOGIN_LIFETIME = 10 * 60
NEW_RECOVERY_CODES_KEY = "telerad_new_recovery_codes"

STEP_VERIFY = "verify"
STEP_ENROL = "enrol"


def lock_message(until: Any) -> str:
    minutes = max(1, math.ceil((until - timezone.now()).total_seconds() / 60))
    return ngettext(
        "Too many failed logins. Logins are blocked for %(minutes)d minute; try again then.",
        "Too many failed logins. Logins are blocked for %(minutes)d minutes; try again then.",
        minutes,
    ) % {"minutes": minutes}


def record_login_failure(request: HttpRequest, username: str, reason: str) -> Any:
    """Count and audit a failed login step; return the end of the lock it caused, or None."""
    address = client_address(request)
    audit.record_event(action=audit.Action.LOGIN_FAILED, outcome=audit.Outcome.MINOR_FAILURE, user=username, address=address, detail=reason)
    until = lockout.record_failure(username, address)
    if until is not None:
        audit.record_event(
            action=audit.Action.LOGIN_LOCKED,
            outcome=audit.Outcome.SERIOUS_FAILURE,
            user=username,
            address=address,
            detail=f"account and address locked until {until.isoformat()}",
        )
        logger.warning("locked logins of user %s and address %s until %s", username, address, until.isoformat())
    return until


def audit_locked_attempt(request: HttpRequest, username: str) -> None:
    audit.record_event(
        action=audit.Action.LOGIN_FAILED,
        outcome=audit.Outcome.MINOR_FAILURE,
        user=username,
        address=client_address(request),
        detail="rejected while locked",
    )


def complete_login(request: HttpRequest, user: AbstractBaseUser, backend: str, device: Device | None, method: str) -> None:
    """Log `user` in after the last step, remember the verifying device in the session, and audit the login."""
    request.session.pop(PENDING_LOGIN_KEY, None)
    auth_login(request, user, backend=backend)
    if device is not None:
        django_otp.login(request, device)
    lockout.clear_account(user.get_username())
    audit.record_event(action=audit.Action.LOGIN, user=user.get_username(), address=client_address(request), detail=method)
    logger.info("user %s logged in with %s", user.get_username(), method)


def start_pending_login(request: HttpRequest, user: AbstractBaseUser, step: str, next_url: str) -> None:
    request.session[PENDING_LOGIN_KEY] = {
        "user_id": user.pk,
        "backend": user.backend,
        "step": step,
        "next": next_url,
        "started": time.time(),
    }


def pending_login(request: HttpRequest, step: str) -> tuple[AbstractBaseUser, dict[str, Any]] | None:
    """Return the user and state of the pending login at `step`, or None when there is none or it expired."""
    state = request.session.get(PENDING_LOGIN_KEY)
    if not isinstance(state, dict) or state.get("step") != step:
        return None
    if time.time() - state.get("started", 0) > PENDING_LOGIN_LIFETIME:
        request.session.pop(PENDING_LOGIN_KEY, None)
        return None
    user = get_user_model().objects.filter(pk=state.get("user_id"), is_active=True).first()
    if user is None:
        request.session.pop(PENDING_LOGIN_KEY, None)
        return None
    return user, state


def restart_login(request: HttpRequest) -> HttpResponse:
    messages.info(request, _("Your login expired before it was complete. Log in again."))
    return redirect("login")


class LoginView(auth_views.LoginView):
    """Check the password unless the account or address is locked, then lead to the second step, enrolment or the next page."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Django's View also serves HEAD through this method, but only GET uses up the notice.
        notify = request.method == "GET" and idle_timeout_ended_session(request)
        if notify:
            minutes = settings.SESSION_COOKIE_AGE // 60
            messages.info(request, ngettext(
                "Your session ended after %(minutes)d minute without activity. Sign in again.",
                "Your session ended after %(minutes)d minutes without activity. Sign in again.",
                minutes,
            ) % {"minutes": minutes})
        response = super().get(request, *args, **kwargs)
        if request.method == "GET" and LAST_ACTIVITY_COOKIE in request.COOKIES:
            response.delete_cookie(LAST_ACTIVITY_COOKIE, samesite="Lax")
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        until = lockout.locked_until(username, client_address(request))
        if until is not None:
            # The password is not even checked, so a lock reveals nothing about it.
            audit_locked_attempt(request, username)
            return self.render_to_response(self.get_context_data(form=self.get_form(), lock_message=lock_message(until)))
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        username = form.data.get("username", "")
        if username and form.data.get("password"):
            until = record_login_failure(self.request, username, "wrong user name or password")
            if until is not None:
                return self.render_to_response(self.get_context_data(form=form, lock_message=lock_message(until)))
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        next_url = self.get_success_url()
        if two_factor.is_enrolled(user):
            start_pending_login(self.request, user, STEP_VERIFY, next_url)
            return redirect("login-verify")
        if two_factor.is_required():
            start_pending_login(self.request, user, STEP_ENROL, next_url)
            return redirect("login-enrol")
        complete_login(self.request, user, user.backend, None, "password; two-factor login is not required")
        return HttpResponseRedirect(next_url)


@login_not_required
@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def verify_view(request: HttpRequest) -> HttpResponse:
    """Check the second step: a code from the authenticator app, or a recovery code."""
    pending = pending_login(request, STEP_VERIFY)
    if pending is None:
        return restart_login(request)
    user, state = pending
    username = user.get_username()
    form = CodeForm(request.POST or None)
    context: dict[str, Any] = {"form": form}

    if request.method == "POST" and form.is_valid():
        until = lockout.locked_until(username, client_address(request))
        if until is not None:
            audit_locked_attempt(request, username)
            request.session.pop(PENDING_LOGIN_KEY, None)
            messages.error(request, lock_message(until))
            return redirect("login")

        device = two_factor.verify_code(user, form.cleaned_data["code"])
        if device is None:
            until = record_login_failure(request, username, "wrong second-factor code")
            if until is not None:
                request.session.pop(PENDING_LOGIN_KEY, None)
                messages.error(request, lock_message(until))
                return redirect("login")
            context["code_rejected"] = True
        else:
            recovery = two_factor.is_recovery_device(device)
            complete_login(request, user, state["backend"], device, "password and recovery code" if recovery else "password and authenticator code")
            if recovery:
                left = two_factor.remaining_recovery_codes(user)
                messages.warning(
                    request,
                    ngettext(
                        "You used a recovery code. %(count)d is left; create new ones on your account page.",
                        "You used a recovery code. %(count)d are left; create new ones on your account page.",
                        left,
                    ) % {"count": left},
                )
            return HttpResponseRedirect(state["next"])
    return render(request, "registration/login_verify.html", context)


@login_not_required
@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def enrol_view(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator before the first login completes, when two-factor login is required."""
    pending = pending_login(request, STEP_ENROL)
    if pending is None:
        return restart_login(request)
    user, state = pending
    device = two_factor.pending_authenticator(user)
    form = CodeForm(request.POST or None)
    context: dict[str, Any] = {"form": form, **enrolment_context(device)}

    if request.method == "POST" and form.is_valid():
        if two_factor.confirm_authenticator(device, form.cleaned_data["code"]):
            codes = two_factor.create_recovery_codes(user)
            audit.record_event(action=audit.Action.TWO_FACTOR_ENROLLED, user=user.get_username(), address=client_address(request))
            complete_login(request, user, state["backend"], device, "password and a new authenticator")
            request.session[NEW_RECOVERY_CODES_KEY] = {"codes": codes, "next": state["next"]}
            return redirect("login-recovery-codes")
        context["code_rejected"] = True
    return render(request, "registration/login_enrol.html", context)


@login_not_required
@never_cache
@require_http_methods(["GET", "HEAD"])
def new_recovery_codes_view(request: HttpRequest) -> HttpResponse:
    """Show the recovery codes made at enrolment, once, before the page the user asked for at login."""
    if not request.user.is_authenticated:
        return redirect("login")
    # A HEAD request does not use up the one showing.
    stash = request.session.get(NEW_RECOVERY_CODES_KEY) if request.method == "HEAD" else request.session.pop(NEW_RECOVERY_CODES_KEY, None)
    if not isinstance(stash, dict):
        return redirect("home")
    return render(request, "registration/recovery_codes.html", {"codes": stash["codes"], "next": stash["next"]})


def enrolment_context(device: Any) -> dict[str, Any]:
    return {
        "qr_code": two_factor.qr_code_svg(device, title=_("QR code for your authenticator app")),
        "secret": two_factor.secret_text(device),
    }


@method_decorator(login_not_required, name="dispatch")
class LogoutView(auth_views.LogoutView):
    """Django's logout, open to anonymous requests. The user_logged_out receiver in telerad.accounts.user_sessions audits it."""
