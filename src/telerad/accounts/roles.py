"""Roles, the permissions each grants, and the checks that views declare.

A user's roles are the Django groups named after :class:`Role` values. Each
role grants the permissions listed in ``GRANTS`` and nothing else: a user
without a role, or a view without a declared permission, is denied. The
superuser flag plays no part here; it matters only inside the Django admin.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.utils.translation import gettext_lazy as _


class Role(enum.StrEnum):
    RADIOLOGIST = "radiologist"
    RESIDENT = "resident"
    TECHNOLOGIST = "technologist"
    CLINICIAN = "clinician"
    SCHEDULER = "scheduler"
    ADMINISTRATOR = "administrator"
    IT = "it"
    AUDITOR = "auditor"
    # A radiologist who also leads the reading team: reassigns claims, watches open critical results.
    LEAD_RADIOLOGIST = "lead-radiologist"

    @property
    def label(self) -> str:
        return str(ROLE_LABELS[self])


ROLE_LABELS = {
    Role.RADIOLOGIST: _("Radiologist"),
    Role.RESIDENT: _("Resident"),
    Role.TECHNOLOGIST: _("Technologist"),
    Role.CLINICIAN: _("Clinician"),
    Role.SCHEDULER: _("Scheduler"),
    Role.ADMINISTRATOR: _("Administrator"),
    Role.IT: _("IT"),
    Role.AUDITOR: _("Auditor"),
    Role.LEAD_RADIOLOGIST: _("Lead radiologist"),
}


class Permission(enum.StrEnum):
    # The user's own profile, password, two-factor devices, sessions and API tokens.
    MANAGE_OWN_ACCOUNT = "manage-own-account"
    # Every study of the archive: study list and pages, viewer, QIDO-RS, WADO-RS.
    VIEW_STUDIES = "view-studies"
    # The exams a clinician referred or was granted, with their signed reports
    # and images: the portal, and the viewer, DICOMweb, report PDF and FHIR,
    # each limited to those exams (see telerad.clinicians.access).
    VIEW_REFERRED_STUDIES = "view-referred-studies"
    # Adding instances over the web (STOW-RS).
    STORE_STUDIES = "store-studies"
    MANAGE_USERS = "manage-users"
    MANAGE_REMOTE_AES = "manage-remote-aes"
    # Searching the audit trail and exporting it.
    VIEW_AUDIT = "view-audit"
    # Signing in to the Django admin. Each model there also needs its own permission.
    USE_ADMIN_SITE = "use-admin-site"
    # The worklist: claiming exams and drafting their reports.
    READ_EXAMS = "read-exams"
    # Signing final reports and addenda; without it a reader signs preliminary reports only.
    SIGN_REPORTS = "sign-reports"
    # Completing an exam's clinical information, priority and referring clinician.
    EDIT_EXAM_DETAILS = "edit-exam-details"
    # Releasing or reassigning other readers' claims, and following open critical results.
    MANAGE_READING = "manage-reading"
    MANAGE_REPORT_TEMPLATES = "manage-report-templates"
    # Opening question threads on exams and writing in them. Clinicians only on the exams they may see.
    ASK_QUESTIONS = "ask-questions"
    # Being assigned questions, marking them answered, and seeing the open questions of one's subspecialties.
    ANSWER_QUESTIONS = "answer-questions"


GRANTS: dict[Role, frozenset[Permission]] = {
    # Readers store too: the viewer saves measurements and key images as new instances.
    Role.RADIOLOGIST: frozenset({
        Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_STUDIES, Permission.STORE_STUDIES, Permission.READ_EXAMS, Permission.SIGN_REPORTS,
        Permission.EDIT_EXAM_DETAILS, Permission.ASK_QUESTIONS, Permission.ANSWER_QUESTIONS,
    }),
    # Residents draft and sign preliminary reports, which an attending radiologist edits and signs.
    Role.RESIDENT: frozenset({
        Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_STUDIES, Permission.STORE_STUDIES, Permission.READ_EXAMS, Permission.EDIT_EXAM_DETAILS,
        Permission.ASK_QUESTIONS, Permission.ANSWER_QUESTIONS,
    }),
    Role.LEAD_RADIOLOGIST: frozenset({
        Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_STUDIES, Permission.STORE_STUDIES, Permission.READ_EXAMS, Permission.SIGN_REPORTS,
        Permission.EDIT_EXAM_DETAILS, Permission.MANAGE_READING, Permission.MANAGE_REPORT_TEMPLATES, Permission.ASK_QUESTIONS,
        Permission.ANSWER_QUESTIONS,
    }),
    Role.TECHNOLOGIST: frozenset({
        Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_STUDIES, Permission.STORE_STUDIES, Permission.EDIT_EXAM_DETAILS,
        Permission.ASK_QUESTIONS,
    }),
    # Clinicians see only their own patients' exams, through the portal.
    Role.CLINICIAN: frozenset({Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_REFERRED_STUDIES, Permission.ASK_QUESTIONS}),
    Role.SCHEDULER: frozenset({Permission.MANAGE_OWN_ACCOUNT}),
    Role.ADMINISTRATOR: frozenset({
        Permission.MANAGE_OWN_ACCOUNT, Permission.MANAGE_USERS, Permission.MANAGE_REMOTE_AES, Permission.USE_ADMIN_SITE,
        Permission.MANAGE_REPORT_TEMPLATES,
    }),
    Role.IT: frozenset({Permission.MANAGE_OWN_ACCOUNT, Permission.MANAGE_REMOTE_AES, Permission.USE_ADMIN_SITE}),
    Role.AUDITOR: frozenset({Permission.MANAGE_OWN_ACCOUNT, Permission.VIEW_AUDIT}),
}

# Declared by views that every signed-in user may reach whatever their roles,
# such as the home page, which then sends each user on by role.
ANY_SIGNED_IN_USER = "any-signed-in-user"

# The need a view declares: one permission, ANY_SIGNED_IN_USER, or a tuple
# of permissions, any one of which opens the view.
Requirement = Permission | str | tuple[Permission, ...]

# The attribute a view carries to declare what it needs.
VIEW_PERMISSION_ATTRIBUTE = "telerad_permission"
_CACHE_ATTRIBUTE = "_telerad_roles"


def parse_role(text: str) -> Role:
    """Return the role named `text`; raise ValueError naming the valid roles otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        valid = ", ".join(role.value for role in Role)
        raise ValueError(f"{text!r} is not a role; use one of {valid}") from None


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    """Return the roles of an active user (empty for anonymous and disabled users), cached on the user object."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, _CACHE_ATTRIBUTE, None)
    if cached is None:
        valid = {role.value for role in Role}
        names = user.groups.filter(name__in=valid).values_list("name", flat=True)
        cached = frozenset(Role(name) for name in names)
        setattr(user, _CACHE_ATTRIBUTE, cached)
    return cached


def user_permissions(user: AbstractBaseUser | AnonymousUser) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in user_roles(user):
        granted |= GRANTS[role]
    return frozenset(granted)


def roles_granting(permission: Permission) -> list[Role]:
    return [role for role, granted in GRANTS.items() if permission in granted]


def has_permission(user: AbstractBaseUser | AnonymousUser, permission: Permission) -> bool:
    return permission in user_permissions(user)


def meets_requirement(user: AbstractBaseUser | AnonymousUser, requirement: Requirement) -> bool:
    """Return whether `user` has the permission that `requirement` names, or any one of its tuple of permissions."""
    if requirement == ANY_SIGNED_IN_USER:
        return user.is_authenticated
    granted = user_permissions(user)
    if isinstance(requirement, tuple):
        return any(permission in granted for permission in requirement)
    return requirement in granted


def set_roles(user: AbstractBaseUser, roles: Iterable[Role]) -> None:
    """Give `user` exactly `roles`, and staff status when one of them opens the Django admin."""
    requested = set(roles)
    groups = [Group.objects.get_or_create(name=role.value)[0] for role in sorted(requested)]
    other_groups = user.groups.exclude(name__in=[role.value for role in Role])
    user.groups.set([*other_groups, *groups])
    user.is_staff = any(Permission.USE_ADMIN_SITE in GRANTS[role] for role in requested)
    user.save(update_fields=["is_staff"])
    if hasattr(user, _CACHE_ATTRIBUTE):
        delattr(user, _CACHE_ATTRIBUTE)


def requires(*permissions: Permission | str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the permission a view needs, or several permissions, any one of which opens it.

    :class:`telerad.accounts.middleware.PermissionMiddleware` enforces it.
    """
    if not permissions:
        raise TypeError("requires() got no permission; name at least one")
    if len(permissions) > 1 and ANY_SIGNED_IN_USER in permissions:
        raise TypeError("ANY_SIGNED_IN_USER cannot be combined with other permissions")
    requirement: Requirement = permissions[0] if len(permissions) == 1 else tuple(Permission(permission) for permission in permissions)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        setattr(view, VIEW_PERMISSION_ATTRIBUTE, requirement)
        return view

    return decorate


def declared_permission(view: Callable[..., Any]) -> Requirement | None:
    return getattr(view, VIEW_PERMISSION_ATTRIBUTE, None)
