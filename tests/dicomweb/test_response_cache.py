"""The byte-bounded cache of response bodies."""

from __future__ import annotations

from telerad.dicomweb.response_cache import ResponseCache


def test_cache_drops_least_recently_used_first():
    cache = ResponseCache(max_bytes=10)
    cache.put("a", b"aaaa")
    cache.put("b", b"bbbb")
    assert cache.get("a") == b"aaaa"

    cache.put("c", b"cccc")

    assert cache.get("b") is None
    assert cache.get("a") == b"aaaa"
    assert cache.get("c") == b"cccc"
    assert cache.size == 8


def test_cache_skips_body_over_budget():
    cache = ResponseCache(max_bytes=10)
    cache.put("a", b"aaaa")

    cache.put("big", b"x" * 11)

    assert cache.get("big") is None
    assert cache.get("a") == b"aaaa"


def test_cache_replaces_body_of_same_key():
    cache = ResponseCache(max_bytes=10)
    cache.put("a", b"aaaa")

    cache.put("a", b"aa")

    assert cache.get("a") == b"aa"
    assert cache.size == 2
