from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "telerad.core"
    label = "core"

    def ready(self) -> None:
        from telerad.core import checks  # noqa: F401  (registers the checks)
