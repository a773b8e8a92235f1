"""A cache bounded by the bytes it holds as well as by its entries: least recently used goes first.

Streamlit's caches bound entries only, and one entry can be a 40-megapixel image or a 150 MB trace
of a ViT-B. This one asks each value its size and evicts the least recently used until both fit.
It is shared by every session's thread, so a value is made once per key even when sessions ask for
it together (a class opening the same page at once). Nothing here imports Streamlit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ByteCache:
    def __init__(self, max_bytes: int, size_of: Callable[[Any], int], max_entries: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.size_of = size_of
        self.bytes = 0  # what the kept values hold, as size_of measured them
        self._values: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()  # guards the two dicts and the total
        self._making: dict[Hashable, threading.Lock] = {}  # one lock per key being made

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """(True, the value kept under `key`) or (False, None); never makes one."""
        with self._lock:
            if key not in self._values:
                return False, None
            self._values.move_to_end(key)
            return True, self._values[key][0]

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value kept under `key`, or `make()`'s, which is kept if it fits at all."""
        found, value = self.peek(key)
        if found:
            return value
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:  # a second caller of the same key waits here, then finds the first one's value
            found, value = self.peek(key)
            if found:
                return value
            try:
                value = make()
                self._put(key, value)
            finally:
                with self._lock:
                    self._making.pop(key, None)
        return value

    def discard(self, key: Hashable) -> None:
        """Forget the value kept under `key`, if any."""
        with self._lock:
            if key in self._values:
                self.bytes -= self._values.pop(key)[1]

    def _put(self, key: Hashable, value: Any) -> None:
        size = self.size_of(value)
        if size > self.max_bytes:  # kept, it would push out everything else and still not fit
            return
        with self._lock:
            if key in self._values:  # made twice after a failed first attempt: keep the newer
                self.bytes -= self._values.pop(key)[1]
            self._values[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes or (self.max_entries and len(self._values) > self.max_entries):
                _, (_, freed) = self._values.popitem(last=False)
                self.bytes -= freed
