"""Recently sent response bodies, by entity tag, within a byte budget shared by all threads of a process."""

from __future__ import annotations

import collections
import threading


class ResponseCache:
    """Bodies by key, the least recently used dropped first once their total size passes `max_bytes`.

    The key must change whenever the body would, as an entity tag over the
    content does. A body larger than the whole budget is not kept.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._bodies: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            previous = self._bodies.pop(key, None)
            if previous is not None:
                self._size -= len(previous)
            self._bodies[key] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _key, dropped = self._bodies.popitem(last=False)
                self._size -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()
            self._size = 0

    @property
    def size(self) -> int:
        return self._size
