"""The drawing pool and the decode-ahead thread: order, failures, and a slow consumer that must not hang."""

from __future__ import annotations

import time

import pytest

from featvis_run.experiments.pipeline import drawing_pool, drawing_workers, prefetch


def _generate(n: int):
    yield from range(n)


@pytest.mark.timeout(30)  # the bug this guards against was a hang
def test_prefetch_keeps_order_and_ends_with_a_slow_consumer():
    # the producer finishes while the buffer is full and the consumer takes longer per item than the 1 s put
    # timeout that once dropped the end marker (and hung multi_image runs): the marker must still arrive
    seen = []
    for item in prefetch(_generate(2), depth=1):
        time.sleep(1.2)
        seen.append(item)
    assert seen == [0, 1]


def test_prefetch_raises_the_producers_error_after_its_items():
    def failing():
        yield "a"
        raise ValueError("bad image")

    seen = []
    with pytest.raises(ValueError, match="bad image"):
        for item in prefetch(failing()):
            seen.append(item)
    assert seen == ["a"]


def test_prefetch_stops_its_thread_when_the_consumer_leaves_early():
    produced = []

    def counting():
        for i in range(100):
            produced.append(i)
            yield i

    for item in prefetch(counting(), depth=1):
        if item == 1:
            break
    time.sleep(0.3)
    assert len(produced) <= 4  # stopped, not run to the end


def test_drawing_workers_follows_the_environment(monkeypatch):
    monkeypatch.setenv("FEATVIS_DRAW_WORKERS", "0")
    assert drawing_workers() == 0
    with drawing_pool() as pool:
        assert pool is None
    monkeypatch.setenv("FEATVIS_DRAW_WORKERS", "3")
    assert drawing_workers() == 3
    with drawing_pool() as pool:
        assert [f.result() for f in [pool.submit(pow, 2, k) for k in range(4)]] == [1, 2, 4, 8]
