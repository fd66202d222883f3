from django.urls import path

from telerad.reading import exam_views, views

app_name = "reading"
urlpatterns = [
    path("", views.worklist_page, name="worklist"),
    path("views/", views.save_view, name="view-save"),
    path("views/<int:view_pk>/delete", views.delete_view, name="view-delete"),
    path("subspecialties/", views.my_subspecialties, name="my-subspecialties"),
    path("duty/", views.toggle_duty, name="duty"),
    path("<int:exam_pk>/", exam_views.exam_page, name="exam"),
    path("<int:exam_pk>/claim", exam_views.claim_exam, name="claim"),
    path("<int:exam_pk>/release", exam_views.release_claim, name="release"),
    path("<int:exam_pk>/reassign", exam_views.reassign_claim, name="reassign"),
    path("<int:exam_pk>/details", exam_views.edit_exam_details, name="exam-details"),
]
