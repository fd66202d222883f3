"""User administration in the Django admin, with roles in place of Django's groups and per-user permissions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad.accounts import roles, users as accounts
from telerad.accounts.user_sessions import client_address
from telerad.audit import events as audit

User = get_user_model()

ROLE_CHOICES = [(role.value, role.label) for role in roles.Role]
NO_ROLE = "none"


class RolesField(forms.MultipleChoiceField):
    def __init__(self, **kwargs: Any):
        super().__init__(
            choices=ROLE_CHOICES,
            widget=forms.CheckboxSelectMultiple,
            required=False,
            label=_("Roles"),
            help_text=_("Each role grants a fixed set of permissions. An account without a role can only sign in."),
            **kwargs,
        )


def _require_password(form: forms.Form) -> None:
    """Drop Django's choice to turn password login off, which only suits sites with single sign-on; telerad has none."""
    del form.fields["usable_password"]
    form.fields["password1"].required = True
    form.fields["password2"].required = True


class TeleradUserChangeForm(UserChangeForm):
    roles = RolesField()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["roles"].initial = accounts.role_names(self.instance)


class TeleradUserCreationForm(AdminUserCreationForm):
    roles = RolesField()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _require_password(self)


class TeleradPasswordChangeForm(AdminPasswordChangeForm):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if "usable_password" in self.fields:
            _require_password(self)


class RoleListFilter(admin.SimpleListFilter):
    title = _("role")
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [*ROLE_CHOICES, (NO_ROLE, _("No role"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == NO_ROLE:
            return queryset.exclude(groups__name__in=[role.value for role in roles.Role])
        if value in {role.value for role in roles.Role}:
            return queryset.filter(groups__name=value)
        return queryset


class TeleradUserAdmin(UserAdmin):
    form = TeleradUserChangeForm
    add_form = TeleradUserCreationForm
    change_password_form = TeleradPasswordChangeForm
    list_display = ("username", "first_name", "last_name", "email", "is_active", "role_list", "two_factor", "last_login")
    list_filter = ("is_active", RoleListFilter)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Personal information"), {"fields": ("first_name", "last_name", "email")}),
        (_("Access"), {"fields": ("is_active", "roles")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "password1", "password2", "roles")}),
    )
    readonly_fields = ("last_login", "date_joined")
    actions = ["disable_users", "enable_users", "reset_two_factor"]

    @admin.display(description=_("roles"))
    def role_list(self, user: Any) -> str:
        return ", ".join(accounts.role_names(user))

    @admin.display(description=_("two-factor login"), boolean=True)
    def two_factor(self, user: Any) -> bool:
        return user.has_authenticator

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        confirmed = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return super().get_queryset(request).prefetch_related("groups").annotate(has_authenticator=Exists(confirmed))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Also for superusers, whom Django grants every model permission
        # without asking the authentication backend.
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: forms.Form, change: bool) -> None:
        requested = {roles.Role(name) for name in form.cleaned_data.get("roles", [])}
        actor = request.user.get_username()
        address = client_address(request)
        with transaction.atomic():
            if not change:
                super().save_model(request, obj, form, change)
                roles.set_roles(obj, requested)
                after = sorted(role.value for role in requested)
                audit.record_event(action=audit.Action.USER_CREATED, user=actor, address=address, detail=f"user {obj.get_username()} with roles {', '.join(after) or '(none)'}")
                return
            super().save_model(request, obj, form, change)
            accounts.replace_roles(obj, requested, actor=actor, address=address)
            changed = [name for name in form.changed_data if name not in ("roles", "password", "is_active")]
            if changed:
                audit.record_event(action=audit.Action.USER_CHANGED, user=actor, address=address, detail=f"user {obj.get_username()}: {', '.join(changed)}")
            if "is_active" in form.changed_data:
                if obj.is_active:
                    accounts.enable_user(obj, actor=actor, address=address)
                else:
                    accounts.disable_user(obj, actor=actor, address=address)

    @admin.action(description=_("Disable the selected users, end their sessions and revoke their API tokens"))
    def disable_users(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = list(queryset.filter(is_active=True))
        for user in selected:
            accounts.disable_user(user, actor=request.user.get_username(), address=client_address(request))
        self.message_user(request, ngettext("Disabled %(count)d user.", "Disabled %(count)d users.", len(selected)) % {"count": len(selected)}, messages.SUCCESS)

    @admin.action(description=_("Enable the selected users"))
    def enable_users(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = list(queryset.filter(is_active=False))
        for user in selected:
            accounts.enable_user(user, actor=request.user.get_username(), address=client_address(request))
        self.message_user(request, ngettext("Enabled %(count)d user.", "Enabled %(count)d users.", len(selected)) % {"count": len(selected)}, messages.SUCCESS)

    @admin.action(description=_("Reset two-factor login of the selected users"))
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet) -> None:
        selected = list(queryset)
        for user in selected:
            accounts.reset_two_factor(user, actor=request.user.get_username(), address=client_address(request))
        self.message_user(
            request,
            ngettext(
                "Reset two-factor login of %(count)d user, who sets up a new authenticator at the next login when two-factor login is required.",
                "Reset two-factor login of %(count)d users, who set up a new authenticator at their next login when two-factor login is required.",
                len(selected),
            ) % {"count": len(selected)},
            messages.SUCCESS,
        )


admin.site.unregister(User)
admin.site.register(User, TeleradUserAdmin)
# Roles are defined in code; editing their groups here would change nothing they grant.
admin.site.unregister(Group)
