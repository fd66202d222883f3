from django.urls import path

from telerad.clinicians import question_views

app_name = "questions"
urlpatterns = [
    path("", question_views.question_list, name="list"),
    path("new/", question_views.new_question, name="new"),
    path("<int:question_pk>/", question_views.thread, name="thread"),
    path("<int:question_pk>/messages/", question_views.reply, name="reply"),
    path("<int:question_pk>/answered/", question_views.mark_answered, name="answered"),
    path("<int:question_pk>/close/", question_views.close, name="close"),
]
