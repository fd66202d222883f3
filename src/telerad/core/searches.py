"""Searches kept in the session under opaque keys, so that patient names and IDs stay out of URLs.

A search form is posted. Its fields wait in the session, and the result pages
carry only a random key, so browser history, bookmarks and server or proxy
logs never see what was searched for.
"""

from __future__ import annotations

import secrets
from typing import Any

from django import forms
from django.http import HttpRequest

# Searches kept per session and kind; the oldest are dropped first.
SEARCHES_KEPT = 20


def remember(request: HttpRequest, kind: str, form: forms.Form) -> str:
    """Keep the fields of a valid bound `form` in the session; return the key that names them in URLs."""
    session_key = f"searches:{kind}"
    searches: dict[str, Any] = request.session.get(session_key, {})
    key = secrets.token_urlsafe(9)
    searches[key] = {name: form.data.get(name, "") for name in form.fields}
    # Dictionaries keep insertion order, so the first key is the oldest search.
    while len(searches) > SEARCHES_KEPT:
        searches.pop(next(iter(searches)))
    request.session[session_key] = searches
    return key


def recall(request: HttpRequest, kind: str, key: str) -> dict[str, str] | None:
    """Return the fields remembered under `key`, or None when this session has no such search."""
    return request.session.get(f"searches:{kind}", {}).get(key)
