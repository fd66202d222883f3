from django.urls import path

from telerad.accounts import views

app_name = "account"

urlpatterns = [
    path("", views.account_view, name="home"),
    path("password/", views.PasswordChangeView.as_view(), name="password"),
    path("two-factor/", views.two_factor_setup_view, name="two-factor-setup"),
    path("two-factor/remove/", views.two_factor_remove_view, name="two-factor-remove"),
    path("recovery-codes/", views.recovery_codes_view, name="recovery-codes"),
    path("tokens/", views.token_create_view, name="token-create"),
    path("tokens/<int:token_id>/revoke/", views.token_revoke_view, name="token-revoke"),
    path("sessions/end/", views.end_sessions_view, name="end-sessions"),
]
