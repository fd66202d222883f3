from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils.translation import gettext_lazy as _
from django.views.generic import RedirectView

admin.site.site_header = _("telerad administration")
admin.site.site_title = _("telerad")

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="archive:study-list", permanent=False), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("studies/", include("telerad.archive.urls")),
    path("dicom-web/", include("telerad.dicomweb.urls")),
    path("viewer/", include("telerad.viewer.urls")),
    path("audit/", include("telerad.audit.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "telerad.core.errors.page_not_found"
