from django.apps import AppConfig


class DicomwebConfig(AppConfig):
    name = "telerad.dicomweb"
    label = "dicomweb"
