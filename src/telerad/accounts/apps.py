from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "telerad.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_in, user_logged_out
        from django.db.models.signals import post_save

        from telerad.accounts import password_audit, user_sessions

        user_logged_in.connect(user_sessions.remember_session, dispatch_uid="telerad.accounts.remember_session")
        user_logged_out.connect(user_sessions.forget_session, dispatch_uid="telerad.accounts.forget_session")
        post_save.connect(password_audit.audit_password_change, sender=settings.AUTH_USER_MODEL, dispatch_uid="telerad.accounts.audit_password_change")
