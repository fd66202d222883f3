from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils.translation import gettext_lazy as _

from telerad.accounts.roles import ANY_SIGNED_IN_USER, Permission, has_permission, requires
from telerad.core.views import home

admin.site.site_header = _("telerad administration")
admin.site.site_title = _("telerad")
# The Django admin opens to roles that grant it, not to every staff account;
# each model inside still needs its own permission (see accounts.backends).
admin.site.has_permission = lambda request: request.user.is_active and request.user.is_staff and has_permission(request.user, Permission.USE_ADMIN_SITE)

urlpatterns = [
    path("", home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", requires(ANY_SIGNED_IN_USER)(auth_views.LogoutView.as_view()), name="logout"),
    path("studies/", include("telerad.archive.urls")),
    path("dicom-web/", include("telerad.dicomweb.urls")),
    path("viewer/", include("telerad.viewer.urls")),
    path("audit/", include("telerad.audit.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "telerad.core.errors.page_not_found"
