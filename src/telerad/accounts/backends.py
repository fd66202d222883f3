"""Map the Django admin's model permissions onto telerad's roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from telerad.accounts.roles import Permission, has_permission

# Model permissions ("app_label.action_model") that each telerad permission
# grants in the Django admin. No role may change the audit trail, and no role
# may delete a user: medical records and audit events keep naming who acted,
# so accounts are disabled instead.
ADMIN_MODEL_PERMISSIONS: dict[Permission, frozenset[str]] = {
    Permission.MANAGE_USERS: frozenset({
        *(f"auth.{action}_user" for action in ("view", "add", "change")),
        *(f"{app}.{action}_{model}" for app, model in (("auth", "group"), ("accounts", "apitoken")) for action in ("view", "add", "change", "delete")),
        # The reading subspecialties, the rules that assign them, and each reader's subspecialties.
        *(
            f"reading.{action}_{model}"
            for model in ("subspecialty", "subspecialtyrule", "reader")
            for action in ("view", "add", "change", "delete")
        ),
        # Which exams clinicians see besides those they referred, and the names that match them to exams.
        *(
            f"clinicians.{action}_{model}"
            for model in ("cliniciangrant", "clinicianprofile")
            for action in ("view", "add", "change", "delete")
        ),
    }),
    # The archive's records are read-only in the admin, for those who may see patient data.
    Permission.VIEW_STUDIES: frozenset(f"archive.view_{model}" for model in ("patient", "study", "series", "instance")),
    Permission.MANAGE_REMOTE_AES: frozenset({
        *(f"dimse.{action}_remoteae" for action in ("view", "add", "change", "delete")),
        # The notification e-mail outbox: listed, and retried through a change.
        "clinicians.view_emailjob",
        "clinicians.change_emailjob",
    }),
    # Shown read-only; only an account that also opens the admin site sees it there.
    Permission.VIEW_AUDIT: frozenset({"audit.view_auditevent"}),
}


class RoleBackend(ModelBackend):
    """Authenticate like Django's ModelBackend, but grant model permissions from roles instead of per-user rows."""

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if not user_obj.is_active:
            return False
        return any(perm in perms and has_permission(user_obj, permission) for permission, perms in ADMIN_MODEL_PERMISSIONS.items())

    def has_module_perms(self, user_obj: Any, app_label: str) -> bool:
        if not user_obj.is_active:
            return False
        return any(
            perm.startswith(app_label + ".") and has_permission(user_obj, permission)
            for permission, perms in ADMIN_MODEL_PERMISSIONS.items()
            for perm in perms
        )

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        granted: set[str] = set()
        for permission, perms in ADMIN_MODEL_PERMISSIONS.items():
            if has_permission(user_obj, permission):
                granted |= perms
        return granted
