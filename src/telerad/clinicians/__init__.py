"""Notifications in telerad and by e-mail, and critical results that referring clinicians acknowledge.

Other apps call :func:`telerad.clinicians.notifications.notify` to tell a
user of an event, and :func:`telerad.clinicians.critical.open_critical_result`
when a critical result is signed.
"""
