from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "telerad.audit"
    label = "audit"
