from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReadingConfig(AppConfig):
    name = "telerad.reading"
    label = "reading"
    verbose_name = _("reading")

    def ready(self) -> None:
        # Report delivery registers its admin pages in a module of its own.
        from telerad.reading.delivery import admin  # noqa: F401
