"""User administration in the Django admin, with roles in place of Django's groups and per-user permissions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from telerad.accounts import roles
from telerad.audit import events as audit

User = get_user_model()

ROLE_CHOICES = [(role.value, role.label) for role in roles.Role]


def _current_role_names(user: Any) -> list[str]:
    valid = {role.value for role in roles.Role}
    return sorted(group.name for group in user.groups.all() if group.name in valid)


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


class TeleradUserChangeForm(UserChangeForm):
    roles = RolesField()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["roles"].initial = _current_role_names(self.instance)


class TeleradUserCreationForm(AdminUserCreationForm):
    roles = RolesField()


class TeleradUserAdmin(UserAdmin):
    form = TeleradUserChangeForm
    add_form = TeleradUserCreationForm
    list_display = ("username", "first_name", "last_name", "email", "is_active", "role_list", "last_login")
    list_filter = ("is_active", "groups")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        (_("Personal information"), {"fields": ("first_name", "last_name", "email")}),
        (_("Access"), {"fields": ("is_active", "roles")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "usable_password", "password1", "password2", "roles")}),
    )
    readonly_fields = ("last_login", "date_joined")
    actions = ["disable_users"]

    @admin.display(description=_("roles"))
    def role_list(self, user: Any) -> str:
        return ", ".join(_current_role_names(user))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).prefetch_related("groups")

    def save_model(self, request: HttpRequest, obj: Any, form: forms.Form, change: bool) -> None:
        requested = {roles.Role(name) for name in form.cleaned_data.get("roles", [])}
        with transaction.atomic():
            before = _current_role_names(obj) if change else []
            super().save_model(request, obj, form, change)
            roles.set_roles(obj, requested)
            after = sorted(role.value for role in requested)
            actor = request.user.get_username()
            address = request.META.get("REMOTE_ADDR", "")
            if not change:
                audit.record_event(action=audit.Action.USER_CREATED, user=actor, address=address, detail=f"user {obj.get_username()} with roles {', '.join(after) or '(none)'}")
                return
            changed = [name for name in form.changed_data if name not in ("roles", "password")]
            if changed:
                audit.record_event(action=audit.Action.USER_CHANGED, user=actor, address=address, detail=f"user {obj.get_username()}: {', '.join(changed)}")
            if before != after:
                audit.record_event(
                    action=audit.Action.ROLES_CHANGED, user=actor, address=address,
                    detail=f"user {obj.get_username()}: {', '.join(before) or '(none)'} -> {', '.join(after) or '(none)'}",
                )

    @admin.action(description=_("Disable the selected users"))
    def disable_users(self, request: HttpRequest, queryset: QuerySet) -> None:
        with transaction.atomic():
            names = list(queryset.filter(is_active=True).values_list("username", flat=True))
            queryset.filter(username__in=names).update(is_active=False)
            for name in names:
                audit.record_event(action=audit.Action.USER_DISABLED, user=request.user.get_username(), address=request.META.get("REMOTE_ADDR", ""), detail=f"user {name}")
        self.message_user(request, _("Disabled %(count)d users.") % {"count": len(names)}, messages.SUCCESS)


admin.site.unregister(User)
admin.site.register(User, TeleradUserAdmin)
# Roles are defined in code; editing their groups here would change nothing they grant.
admin.site.unregister(Group)
