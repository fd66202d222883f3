from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "telerad.accounts"
    label = "accounts"
