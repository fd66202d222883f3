from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CliniciansConfig(AppConfig):
    name = "telerad.clinicians"
    label = "clinicians"
    verbose_name = _("clinicians")

    def ready(self) -> None:
        # Registers the configuration checks of e-mail and critical result contacts with `telerad check`.
        from telerad.clinicians import checks  # noqa: F401
