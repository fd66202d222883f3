from django.apps import AppConfig


class DimseConfig(AppConfig):
    name = "telerad.dimse"
    label = "dimse"
