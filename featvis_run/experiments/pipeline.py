"""Keeping the model busy: a thread pool that draws while the model runs, and decoding the next images ahead."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["drawing_pool", "drawing_workers", "prefetch"]

T = TypeVar("T")
_DONE = object()


def drawing_workers() -> int:
    """Threads that draw: one per core (at most 8); ``FEATVIS_DRAW_WORKERS`` overrides it (0: draw in the main
    thread)."""
    value = os.environ.get("FEATVIS_DRAW_WORKERS")
    if value is not None and value.strip().isdigit():
        return int(value)
    return max(1, min(8, os.cpu_count() or 1))


@contextlib.contextmanager
def drawing_pool() -> Iterator[ThreadPoolExecutor | None]:
    """A pool of :func:`drawing_workers` threads, shut down (waiting for its jobs) on exit; None for no threads."""
    workers = drawing_workers()
    if workers <= 0:
        yield None
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="featvis-draw")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` as they are, produced ``depth`` ahead in a background thread (decoding the next batch of images
    while the current one runs through the model). An exception in the producer is raised where it would be."""
    if isinstance(items, (list, tuple)):
        yield from items
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    stop = threading.Event()

    def put(item: object) -> bool:
        """Block until ``item`` is in the buffer or the consumer has gone; True if it went in."""
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # re-raised in the consumer
            failure.append(err)
        finally:
            put(_DONE)  # never dropped: the consumer waits for it however long it takes to drain the buffer

    thread = threading.Thread(target=produce, name="featvis-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        thread.join(timeout=5)
