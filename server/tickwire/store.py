"""Registered reference data: a content-addressed, byte-bounded LRU cache.

Ids are derived from the content (:func:`tickwire.routing.backends.content_id`),
so a replica that never saw an id, or evicted it, answers NOT_FOUND and the
client registers the data again: no replica holds state another one needs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from tickwire.routing.backends import content_id


class ArrayStore:
    """Arrays by content id, least recently used evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._max_bytes = max_bytes
        self._used = 0
        self._lock = threading.Lock()
        #: Called with the id of every evicted array (drops device copies).
        self.on_evict: list = []

    def put(self, array: np.ndarray) -> tuple[str, bool]:
        """Store ``array`` (made read-only); return ``(id, already_present)``.

        Raises
        ------
        ValueError
            The array alone is larger than the store.
        """
        if array.nbytes > self._max_bytes:
            raise ValueError(
                f"scenarios: {array.nbytes} bytes exceed the registry limit of {self._max_bytes}"
            )
        key = content_id(array)
        evicted = []
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return key, True
            array = np.ascontiguousarray(array)
            array.flags.writeable = False
            self._items[key] = array
            self._used += array.nbytes
            while self._used > self._max_bytes:
                old, arr = self._items.popitem(last=False)
                self._used -= arr.nbytes
                evicted.append(old)
        for old in evicted:
            for callback in self.on_evict:
                callback(old)
        return key, False

    def get(self, key: str) -> np.ndarray | None:
        """The array stored under ``key``, or None."""
        with self._lock:
            arr = self._items.get(key)
            if arr is not None:
                self._items.move_to_end(key)
            return arr

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
