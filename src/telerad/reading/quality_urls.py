from django.urls import path

from telerad.reading import quality_views

app_name = "quality"
urlpatterns = [
    path("", quality_views.issue_queue, name="queue"),
    path("<int:issue_pk>/", quality_views.issue_page, name="issue"),
    path("exam/<int:exam_pk>/raise", quality_views.raise_issue, name="raise"),
]
