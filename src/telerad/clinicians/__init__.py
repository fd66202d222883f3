"""What referring clinicians use: in-application notifications with their e-mail, and critical results to acknowledge.

Other apps call :func:`telerad.clinicians.notifications.notify` to tell a
user of an event, and :func:`telerad.clinicians.critical.open_critical_result`
when a critical result is signed.
"""
