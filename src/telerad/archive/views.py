from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from telerad.archive.models import Study


def study_list(request: HttpRequest) -> HttpResponse:
    studies = Study.objects.select_related("patient").order_by("-study_date", "-study_time", "-id")[:50]
    return render(request, "archive/study_list.html", {"studies": studies})


def study_detail(request: HttpRequest, study_pk: int) -> HttpResponse:
    study = get_object_or_404(Study.objects.select_related("patient"), pk=study_pk)
    return render(request, "archive/study_detail.html", {"study": study})
