from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "telerad.accounts"
    label = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out

        from telerad.accounts import user_sessions

        user_logged_in.connect(user_sessions.remember_session, dispatch_uid="telerad.accounts.remember_session")
        user_logged_out.connect(user_sessions.forget_session, dispatch_uid="telerad.accounts.forget_session")
