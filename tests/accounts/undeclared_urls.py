"""The project's URLs plus one view that declares no permission, for the deny-by-default test."""

from django.http import HttpResponse
from django.urls import path

from telerad.urls import urlpatterns as project_urlpatterns


def undeclared(request):
    return HttpResponse("this text must never be served")


urlpatterns = [*project_urlpatterns, path("undeclared/", undeclared)]
