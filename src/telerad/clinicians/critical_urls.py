from django.urls import path

from telerad.clinicians import critical_views

app_name = "critical"
urlpatterns = [
    path("", critical_views.open_results, name="list"),
    path("<int:result_pk>/", critical_views.critical_result, name="detail"),
    path("<int:result_pk>/acknowledge/", critical_views.acknowledge, name="acknowledge"),
]
