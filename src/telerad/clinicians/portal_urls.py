from django.urls import path

from telerad.clinicians import portal_views

app_name = "portal"
urlpatterns = [
    path("", portal_views.exam_list, name="exam-list"),
    path("exams/<int:exam_pk>/", portal_views.exam_page, name="exam"),
    path("exams/<int:exam_pk>/critical/<int:result_pk>/acknowledge/", portal_views.acknowledge, name="acknowledge"),
]
