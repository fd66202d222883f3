from django.urls import path

from telerad.reading import turnaround_views

app_name = "turnaround"
urlpatterns = [
    path("", turnaround_views.turnaround_page, name="figures"),
    path("exams.csv", turnaround_views.turnaround_csv, name="csv"),
]
