from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "telerad.viewer"
    label = "viewer"
