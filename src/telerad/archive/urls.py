from django.urls import path

from telerad.archive import views

app_name = "archive"
urlpatterns = [
    path("", views.study_list, name="study-list"),
    path("<int:study_pk>/", views.study_detail, name="study-detail"),
]
