"""A bounded memo whose entries the garbage collector never walks.

`functools.lru_cache` keeps each entry in a GC-tracked list node, and a
cache of user tokens holds tens of thousands of them: every full collection
walked them all (24-37 ms for 65,536 entries on the bench VM), a pause every
request in flight waited through, and the open-loop p99 with it. Here the
entries live in a plain dict keyed by strings (or tuples of them) whose
values are tuples of atoms (str, int, float, None, tuples of str), which
CPython stops tracking after their first collection: the dict is all the
collector sees.

Eviction is first in, first out (the dict's order): cheaper than LRU, and for
a cache of verified tokens or client networks nearly as good.
"""

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    def __init__(self, compute: Callable[[K], V], size: int) -> None:
        self._compute = compute
        self._size = max(1, size)
        self._kept: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        """The value of `key` (computed once while kept; `compute` never returns None)."""
        found = self._kept.get(key)
        if found is not None:
            return found
        value = self._compute(key)  # an exception is not kept: the next call tries again
        if len(self._kept) >= self._size:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = value
        return value

    def __len__(self) -> int:
        return len(self._kept)
