"""Bulk parsing pauses Python's cyclic collector and always restores it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from controller.model import collection_paused


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.usefixtures("collector_on")
def test_nested_pauses_resume_collection_when_the_outer_one_ends() -> None:
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_a_pause_ended_by_an_error_resumes_collection() -> None:
    with pytest.raises(ValueError), collection_paused():
        raise ValueError("bad document")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_overlapping_pauses_of_two_threads_leave_collection_on() -> None:
    # Thread A pauses, B pauses, A ends, B ends: a plain "restore what I found" would leave the
    # collector off for good (B found it off).
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with collection_paused():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b() -> None:
        a_in.wait(5)
        with collection_paused():
            b_in.set()
            a_out.wait(5)
            assert not gc.isenabled()  # A ended, B still parses

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
