from django.urls import path, re_path

from telerad.viewer import views

app_name = "viewer"

urlpatterns = [
    path("app-config.js", views.app_config_script, name="app-config"),
    path("iid", views.invoke_image_display, name="iid"),
    re_path(r"^(?P<relative>.*)$", views.serve, name="serve"),
]
