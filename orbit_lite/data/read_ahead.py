"""Reading the next item on a background thread while the caller works on this one (decoding a video while the
model encodes the one before it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(read: Callable[[T], R], items: Sequence[T], ahead: bool = True) -> Iterator[tuple[T, R]]:
    """``(item, read(item))`` for each item in order, ``read`` running one item ahead on a single background thread.

    Bounded: while the caller holds item ``k``, only item ``k + 1`` is being read, so at most one item's result waits
    in memory besides the caller's. Items are read one at a time, in order, so ``read`` may keep state (what it
    found unreadable) as long as the caller does not touch that state until the iteration ends. An exception from
    ``read`` is raised here, when the caller asks for that item, as a plain loop would raise it.

    ``ahead=False``: the plain loop, no thread (where the reading and the caller's work compete for the same cores,
    as decoding and a model on a CPU do: benchmarks/eval_throughput.py measured the thread no faster there)."""
    if not ahead:
        yield from ((item, read(item)) for item in items)
        return
    if not items:
        return
    # The decoding thread reads files and decodes JPEGs, which release the GIL: the caller's work runs meanwhile.
    with ThreadPoolExecutor(1, thread_name_prefix="orbit-lite-read-ahead") as pool:
        pending = pool.submit(read, items[0])
        for i, item in enumerate(items):
            value = pending.result()  # drops the previous item's result before the next read starts
            if i + 1 < len(items):
                pending = pool.submit(read, items[i + 1])
            yield item, value
