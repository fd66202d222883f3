from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

from telerad.accounts import login as login_views
from telerad.accounts.roles import Permission, has_permission
from telerad.core.views import home
from telerad.dicomweb import urls as dicomweb_urls
from telerad.dicomweb.http import VIEWER_NAMESPACE
from telerad.reading.delivery import urls as delivery_urls

admin.site.site_header = _("telerad administration")
admin.site.site_title = _("telerad")
# The Django admin opens to roles that grant it, not to every staff account;
# each model inside still needs its own permission (see accounts.backends).
admin.site.has_permission = lambda request: request.user.is_active and request.user.is_staff and has_permission(request.user, Permission.USE_ADMIN_SITE)

urlpatterns = [
    path("", home, name="home"),
    path("login/", login_views.LoginView.as_view(), name="login"),
    path("login/verify/", login_views.verify_view, name="login-verify"),
    path("login/two-factor-setup/", login_views.enrol_view, name="login-enrol"),
    path("login/recovery-codes/", login_views.new_recovery_codes_view, name="login-recovery-codes"),
    path("logout/", login_views.LogoutView.as_view(), name="logout"),
    path("account/", include("telerad.accounts.urls")),
    path("studies/", include("telerad.archive.urls")),
    path("dicom-web/", include("telerad.dicomweb.urls")),
    # The same DICOMweb resources for the viewer, whose metadata leaves out private attributes.
    path("viewer/dicom-web/", include((dicomweb_urls.urlpatterns, "dicomweb"), namespace=VIEWER_NAMESPACE)),
    path("viewer/", include("telerad.viewer.urls")),
    path("audit/", include("telerad.audit.urls")),
    path("worklist/", include("telerad.reading.urls")),
    path("reports/", include("telerad.reading.report_urls")),
    path("quality/", include("telerad.reading.quality_urls")),
    path("turnaround/", include("telerad.reading.turnaround_urls")),
    path("reports/pdf/", include(delivery_urls.pdf_urls)),
    path("fhir/", include(delivery_urls.fhir_urls)),
    path("notifications/", include("telerad.clinicians.notification_urls")),
    path("critical/", include("telerad.clinicians.critical_urls")),
    path("questions/", include("telerad.clinicians.question_urls")),
    path("portal/", include("telerad.clinicians.portal_urls")),
    # The admin's own login form would skip the second factor and the locks.
    path("admin/login/", login_not_required(RedirectView.as_view(pattern_name="login", query_string=True)), name="admin-login"),
    path("admin/", admin.site.urls),
]

handler404 = "telerad.core.errors.page_not_found"
