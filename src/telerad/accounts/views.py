"""The user's own account page: roles, password, two-factor login, recovery codes, API tokens and sessions."""

from __future__ import annotations

import datetime
import functools
import logging
from typing import Any, Callable

import django_otp
from django.contrib import messages
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from telerad.accounts import tokens, two_factor
from telerad.accounts.forms import CodeForm, PasswordConfirmForm, TokenCreateForm
from telerad.accounts.login import NEW_RECOVERY_CODES_KEY, enrolment_context
from telerad.accounts.models import ApiToken
from telerad.accounts.roles import Permission, requires, user_roles
from telerad.accounts.user_sessions import client_address, end_other_sessions
from telerad.audit import events as audit

logger = logging.getLogger(__name__)

NEW_TOKEN_KEY = "telerad_new_api_token"


def browser_session_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Reject requests authenticated by an API token, so that a leaked token cannot change the account or mint new tokens."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "authenticated_by_token", False):
            return HttpResponseForbidden(_("API tokens cannot manage accounts; log in with a browser.") + "\n", content_type="text/plain; charset=utf-8")
        return view(request, *args, **kwargs)

    return wrapped


def token_state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return _("revoked")
    if not token.is_active:
        return _("expired")
    return _("active")


def record_account_event(request: HttpRequest, action: audit.Action, detail: str = "") -> None:
    audit.record_event(action=action, user=request.user.get_username(), address=client_address(request), detail=detail)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@never_cache
@require_http_methods(["GET", "HEAD"])
def account_view(request: HttpRequest) -> HttpResponse:
    return render_account_page(request, TokenCreateForm())


def render_account_page(request: HttpRequest, token_form: TokenCreateForm) -> HttpResponse:
    user = request.user
    api_tokens = list(ApiToken.objects.filter(user=user).order_by("-created_at"))
    context = {
        "roles": sorted(role.label for role in user_roles(user)),
        "two_factor_enrolled": two_factor.is_enrolled(user),
        "two_factor_required": two_factor.is_required(),
        "recovery_codes_left": two_factor.remaining_recovery_codes(user),
        "tokens": [(token, token_state(token)) for token in api_tokens],
        "token_form": token_form,
        # A token's text is shown once, on the page the creation leads to; a HEAD request does not use that up.
        "new_token": request.session.get(NEW_TOKEN_KEY) if request.method == "HEAD" else request.session.pop(NEW_TOKEN_KEY, None),
        "remove_form": PasswordConfirmForm(),
    }
    return render(request, "accounts/account.html", context)


@method_decorator(requires(Permission.MANAGE_OWN_ACCOUNT), name="dispatch")
@method_decorator(browser_session_only, name="dispatch")
class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, which keeps this session and ends every other session of the user.

    Saving the new password ends the other sessions and writes the audit
    event, in :func:`telerad.accounts.password_audit.audit_password_change`,
    as it does for a password changed in the Django admin.
    """

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("account:home")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, _("Your password is changed. Your other sessions have ended."))
        return response


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def two_factor_setup_view(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator or replace the current one, which keeps working until the new one is confirmed."""
    device = two_factor.pending_authenticator(request.user)
    form = CodeForm(request.POST or None)
    context: dict[str, Any] = {"form": form, "replacing": two_factor.is_enrolled(request.user), **enrolment_context(device)}
    if request.method == "POST" and form.is_valid():
        if two_factor.confirm_authenticator(device, form.cleaned_data["code"]):
            django_otp.login(request, device)
            codes = two_factor.create_recovery_codes(request.user)
            record_account_event(request, audit.Action.TWO_FACTOR_ENROLLED)
            request.session[NEW_RECOVERY_CODES_KEY] = {"codes": codes, "next": str(reverse_lazy("account:home"))}
            return redirect("account:recovery-codes")
        context["code_rejected"] = True
    return render(request, "accounts/two_factor_setup.html", context)


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@sensitive_post_parameters("password")
@require_POST
def two_factor_remove_view(request: HttpRequest) -> HttpResponse:
    if two_factor.is_required():
        messages.error(request, _("Two-factor login is required here, so it cannot be turned off. You can replace your authenticator instead."))
        return redirect("account:home")
    form = PasswordConfirmForm(request.POST)
    if not form.is_valid() or not request.user.check_password(form.cleaned_data["password"]):
        messages.error(request, _("The password is not correct, so two-factor login stays on."))
        return redirect("account:home")
    two_factor.remove_two_factor(request.user)
    record_account_event(request, audit.Action.TWO_FACTOR_REMOVED)
    messages.success(request, _("Two-factor login is off for your account. Your authenticator and recovery codes no longer work."))
    return redirect("account:home")


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def recovery_codes_view(request: HttpRequest) -> HttpResponse:
    """Show new recovery codes once (GET), or replace the current ones (POST)."""
    if request.method == "POST":
        if not two_factor.is_enrolled(request.user):
            messages.error(request, _("Set up an authenticator first; recovery codes stand in for it."))
            return redirect("account:home")
        codes = two_factor.create_recovery_codes(request.user)
        record_account_event(request, audit.Action.RECOVERY_CODES_CREATED)
        request.session[NEW_RECOVERY_CODES_KEY] = {"codes": codes, "next": str(reverse_lazy("account:home"))}
        return redirect("account:recovery-codes")
    # A HEAD request does not use up the one showing.
    stash = request.session.get(NEW_RECOVERY_CODES_KEY) if request.method == "HEAD" else request.session.pop(NEW_RECOVERY_CODES_KEY, None)
    if not isinstance(stash, dict):
        messages.info(request, _("Recovery codes are shown only once, when they are made. Create new ones if you lost them."))
        return redirect("account:home")
    return render(request, "registration/recovery_codes.html", {"codes": stash["codes"], "next": stash["next"]})


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@require_POST
def token_create_view(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return render_account_page(request, form)
    token, text = tokens.create_token(
        request.user,
        name=form.cleaned_data["name"],
        lifetime=datetime.timedelta(days=form.cleaned_data["days"]),
        created_by=request.user.get_username(),
        address=client_address(request),
    )
    request.session[NEW_TOKEN_KEY] = {"text": text, "name": token.name}
    return redirect("account:home")


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404(_("No such API token."))
    if token.revoked_at is None:
        tokens.revoke_token(token, revoked_by=request.user.get_username(), address=client_address(request))
        messages.success(request, _("The token %(prefix)s… is revoked.") % {"prefix": token.prefix})
    return redirect("account:home")


@requires(Permission.MANAGE_OWN_ACCOUNT)
@browser_session_only
@require_POST
def end_sessions_view(request: HttpRequest) -> HttpResponse:
    """Log out every session of the user, this one last."""
    ended = end_other_sessions(request.user, request)
    record_account_event(request, audit.Action.SESSIONS_ENDED, f"ended {ended} other sessions and this one")
    auth_logout(request)
    messages.success(request, _("All your sessions have ended."))
    return redirect("login")
