from django.apps import AppConfig


class ArchiveConfig(AppConfig):
    name = "telerad.archive"
    label = "archive"
