"""Every URL of the project against every role: anonymous users, users of each role and users without a role.

The table below names what each URL needs. A URL pattern missing from the
table fails the test, so that a new page cannot ship without a decision on
who may open it.
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from django.test import Client
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse

from telerad.accounts.roles import ANY_SIGNED_IN_USER, GRANTS, Permission, Role
from telerad.core.views import HOME_PAGES

PUBLIC = "public"
VIEW = Permission.VIEW_STUDIES
STORE = Permission.STORE_STUDIES
OWN = Permission.MANAGE_OWN_ACCOUNT
READ = Permission.READ_EXAMS
TEMPLATES = Permission.MANAGE_REPORT_TEMPLATES
ASK = Permission.ASK_QUESTIONS
REFERRED = Permission.VIEW_REFERRED_STUDIES
# Every study, or a clinician's own: the view then narrows what it returns.
STUDIES = (VIEW, REFERRED)

# URL name: {HTTP method: what it needs}.
EXPECTED: dict[str, dict[str, str | tuple[Permission, ...]]] = {
    "home": {"GET": ANY_SIGNED_IN_USER},
    "login": {"GET": PUBLIC, "HEAD": PUBLIC},
    # Logging out and the steps of a login in progress work without a session.
    "logout": {"POST": PUBLIC},
    "login-verify": {"GET": PUBLIC, "HEAD": PUBLIC},
    "login-enrol": {"GET": PUBLIC, "HEAD": PUBLIC},
    "login-recovery-codes": {"GET": PUBLIC, "HEAD": PUBLIC},
    # Sends to telerad's login, so that the admin cannot skip the second factor.
    "admin-login": {"GET": PUBLIC},
    "account:home": {"GET": OWN, "HEAD": OWN},
    "account:password": {"GET": OWN, "HEAD": OWN, "POST": OWN},
    "account:two-factor-setup": {"GET": OWN, "HEAD": OWN, "POST": OWN},
    "account:two-factor-remove": {"POST": OWN},
    "account:recovery-codes": {"POST": OWN},
    "account:token-create": {"POST": OWN},
    "account:token-revoke": {"POST": OWN},
    "account:end-sessions": {"POST": OWN},
    "archive:study-list": {"GET": VIEW},
    "archive:study-detail": {"GET": VIEW},
    "dicomweb:studies": {"GET": STUDIES, "POST": STORE},
    "dicomweb:series": {"GET": STUDIES},
    "dicomweb:instances": {"GET": STUDIES},
    "dicomweb:study": {"GET": STUDIES, "POST": STORE},
    "dicomweb:study-series": {"GET": STUDIES},
    "dicomweb:study-instances": {"GET": STUDIES},
    "dicomweb:series-instances": {"GET": STUDIES},
    "dicomweb:study-metadata": {"GET": STUDIES},
    "dicomweb:series-resource": {"GET": STUDIES},
    "dicomweb:series-metadata": {"GET": STUDIES},
    "dicomweb:instance": {"GET": STUDIES},
    "dicomweb:instance-metadata": {"GET": STUDIES},
    "dicomweb:frames": {"GET": STUDIES},
    "dicomweb:bulkdata": {"GET": STUDIES},
    "dicomweb:study-rendered": {"GET": STUDIES},
    "dicomweb:study-thumbnail": {"GET": STUDIES},
    "dicomweb:series-rendered": {"GET": STUDIES},
    "dicomweb:series-thumbnail": {"GET": STUDIES},
    "dicomweb:instance-rendered": {"GET": STUDIES},
    "dicomweb:instance-thumbnail": {"GET": STUDIES},
    "dicomweb:frames-rendered": {"GET": STUDIES},
    "dicomweb:frames-thumbnail": {"GET": STUDIES},
    "audit:event-list": {"GET": Permission.VIEW_AUDIT},
    "audit:event-export": {"GET": Permission.VIEW_AUDIT},
    "audit:event-detail": {"GET": Permission.VIEW_AUDIT},
    "reports:template-list": {"GET": TEMPLATES},
    "reports:template-create": {"GET": TEMPLATES, "POST": TEMPLATES},
    "reports:template-import": {"GET": TEMPLATES, "POST": TEMPLATES},
    "reports:template-export-all": {"GET": TEMPLATES},
    "reports:template-phrases": {"GET": TEMPLATES, "POST": TEMPLATES},
    "reports:template-edit": {"GET": TEMPLATES, "POST": TEMPLATES},
    "reports:template-active": {"POST": TEMPLATES},
    "reports:template-export": {"GET": TEMPLATES},
    "reports:editor": {"GET": READ, "POST": READ},
    "reports:choose-template": {"POST": READ},
    # Residents sign preliminary reports here; the view decides the kind.
    "reports:sign": {"POST": READ},
    "reports:addendum": {"POST": Permission.SIGN_REPORTS},
    "reports:versions": {"GET": READ},
    "viewer:app-config": {"GET": STUDIES},
    "viewer:iid": {"GET": STUDIES},
    "viewer:serve": {"GET": STUDIES},
    "reading:worklist": {"GET": Permission.READ_EXAMS, "POST": Permission.READ_EXAMS},
    "reading:view-save": {"POST": Permission.READ_EXAMS},
    "reading:view-delete": {"POST": Permission.READ_EXAMS},
    "reading:my-subspecialties": {"GET": Permission.READ_EXAMS, "POST": Permission.READ_EXAMS},
    "reading:duty": {"POST": Permission.READ_EXAMS},
    "reading:exam": {"GET": Permission.READ_EXAMS},
    "reading:claim": {"POST": Permission.READ_EXAMS},
    "reading:release": {"POST": Permission.READ_EXAMS},
    "reading:reassign": {"POST": Permission.MANAGE_READING},
    "reading:exam-details": {"GET": Permission.EDIT_EXAM_DETAILS, "POST": Permission.EDIT_EXAM_DETAILS},
    # Readers raise image-quality issues; technologists answer them.
    "quality:raise": {"POST": READ},
    "quality:queue": {"GET": Permission.EDIT_EXAM_DETAILS},
    "quality:issue": {"GET": Permission.EDIT_EXAM_DETAILS, "POST": Permission.EDIT_EXAM_DETAILS},
    # Readers see their own figures; lead radiologists see everyone's.
    "turnaround:figures": {"GET": READ},
    "turnaround:csv": {"GET": READ},
    "report-pdf:pdf": {"GET": STUDIES},
    "fhir:diagnosticreport-search": {"GET": STUDIES},
    "fhir:diagnosticreport": {"GET": STUDIES},
    "notifications:list": {"GET": OWN},
    "notifications:badge": {"GET": OWN},
    "notifications:read": {"POST": OWN},
    "notifications:read-all": {"POST": OWN},
    "notifications:preferences": {"GET": OWN, "POST": OWN},
    "critical:list": {"GET": Permission.MANAGE_READING},
    # Every role may ask; the view then lets only the result's recipient, the escalation contact and lead radiologists in.
    "critical:detail": {"GET": OWN},
    "critical:acknowledge": {"POST": OWN},
    # Readers, technologists and clinicians ask; the views then show a clinician only their own threads on their own exams.
    "questions:list": {"GET": ASK},
    "questions:new": {"GET": ASK, "POST": ASK},
    "questions:thread": {"GET": ASK},
    "questions:reply": {"POST": ASK},
    "questions:answered": {"POST": Permission.ANSWER_QUESTIONS},
    "questions:close": {"POST": ASK},
    # The clinicians' portal; each view then shows only the clinician's own exams.
    "portal:exam-list": {"GET": REFERRED, "POST": REFERRED},
    "portal:exam": {"GET": REFERRED},
    "portal:acknowledge": {"POST": REFERRED},
}

# The viewer's mount of the DICOMweb URLs needs what the first mount needs.
EXPECTED |= {name.replace("dicomweb:", "viewer-dicomweb:", 1): rule for name, rule in EXPECTED.items() if name.startswith("dicomweb:")}

# Programs get 401 instead of the login page's redirect.
API_NAMESPACES = {"dicomweb", "viewer-dicomweb", "fhir"}

SAMPLE_ARGUMENTS = {
    "int": "7",
    "uid": "1.2.3.4",
    "frames": "1",
    "path": "00280010",
}


def project_patterns(patterns=None, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str, str]]:
    """Yield (URL name, route, namespace) for every pattern outside the Django admin."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue
            yield from project_patterns(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace else pattern.name
            yield name, prefix + str(pattern.pattern), namespace


def concrete_url(name: str, route: str) -> str:
    if "(?P<relative>" in route:
        return reverse(name, kwargs={"relative": "index.html"})
    kwargs = {}
    for converter, argument in re.findall(r"<(\w+):(\w+)>", route):
        kwargs[argument] = SAMPLE_ARGUMENTS[converter]
    return reverse(name, kwargs=kwargs)


ALL_PATTERNS = sorted(project_patterns())
CASES = [
    pytest.param(name, concrete_url(name, route), method, need, namespace, id=f"{method} {name}")
    for name, route, namespace in ALL_PATTERNS
    for method, need in EXPECTED.get(name, {}).items()
]


def test_table_names_every_url_pattern():
    names = {name for name, _, _ in ALL_PATTERNS}

    assert names - set(EXPECTED) == set(), "URL patterns without an access rule in EXPECTED"
    assert set(EXPECTED) - names == set(), "access rules for URL names that no longer exist"


@pytest.mark.parametrize(("name", "url", "method", "need", "namespace"), CASES)
def test_anonymous_is_sent_to_login_or_refused(client, db, name, url, method, need, namespace):
    response = client.generic(method, url)

    if need == PUBLIC:
        assert response.status_code not in (401, 403)
    elif namespace in API_NAMESPACES:
        assert response.status_code == 401
        assert "WWW-Authenticate" in response
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")


def url_exists(name: str) -> bool:
    try:
        reverse(name)
    except NoReverseMatch:
        return False
    return True


def expected_outcome(role: Role | None, name: str, need: str) -> str:
    if need == PUBLIC:
        return "allowed"
    granted = GRANTS[role] if role is not None else frozenset()
    if isinstance(need, tuple):
        return "allowed" if any(permission in granted for permission in need) else "denied"
    if need == ANY_SIGNED_IN_USER:
        # The home page sends each user on to the first page their roles open.
        if name == "home" and not any(permission in granted and url_exists(url_name) for url_name, permission in HOME_PAGES):
            return "denied"
        return "allowed"
    return "allowed" if need in granted else "denied"


@pytest.mark.parametrize("role", [*Role, None], ids=[*(role.value for role in Role), "no-role"])
def test_each_role_gets_what_the_table_allows(make_user, role):
    user = make_user("walker", *([role.value] if role is not None else []))
    client = Client()
    mismatches = []

    for name, url, method, need, _namespace in (case.values for case in CASES):
        client.force_login(user)
        response = client.generic(method, url)
        outcome = "denied" if response.status_code in (401, 403) else "allowed"
        # A redirect to the login page with ?next= turns a user away. Logging
        # out (and ending all sessions) ends at the plain login page.
        if response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next="):
            outcome = "denied"
        expected = expected_outcome(role, name, need)
        if outcome != expected:
            mismatches.append(f"{method} {url}: {expected} expected, got {response.status_code}")

    assert mismatches == []


def test_view_without_declared_permission_is_denied(make_user, settings):
    settings.ROOT_URLCONF = "tests.accounts.undeclared_urls"
    client = Client()
    client.force_login(make_user("reader", "radiologist"))

    response = client.get("/undeclared/")

    assert response.status_code == 403
    assert b"must never be served" not in response.content


@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
def test_admin_site_opens_only_to_roles_granting_it(make_user, role):
    client = Client()
    client.force_login(make_user("walker", role.value))

    response = client.get(reverse("admin:index"))

    if Permission.USE_ADMIN_SITE in GRANTS[role]:
        assert response.status_code == 200
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_requires_several_permissions_opens_to_any(make_user):
    from telerad.accounts.roles import declared_permission, meets_requirement, requires

    @requires(VIEW, REFERRED)
    def view(request):
        raise AssertionError("never called")

    assert declared_permission(view) == (VIEW, REFERRED)
    assert meets_requirement(make_user("reader", "radiologist"), declared_permission(view))
    assert meets_requirement(make_user("referrer", "clinician"), declared_permission(view))
    assert not meets_requirement(make_user("booker", "scheduler"), declared_permission(view))


def test_requires_rejects_empty_or_mixed_declaration():
    from telerad.accounts.roles import requires

    with pytest.raises(TypeError, match="no permission"):
        requires()
    with pytest.raises(TypeError, match="cannot be combined"):
        requires(ANY_SIGNED_IN_USER, VIEW)
