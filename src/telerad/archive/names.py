"""Normalised forms of DICOM text values used for matching."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    """Fold case and accents, so that "Müller" and "MULLER" match the same key.

    Letters without a decomposition (CJK, Cyrillic, Greek, ...) keep their
    identity apart from case.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return unicodedata.normalize("NFC", stripped).casefold()
