"""Micro-batching: every queued request gets its own answer once its record is stored, or the store's error."""

from __future__ import annotations

import asyncio
import threading

import pytest

from iot_mlops.serving.batching import MicroBatcher, RecordWriter


def submit_all(score, write, items) -> list:
    """Every item submitted at once to a running batcher; results or exceptions, in order."""

    async def main():
        batcher = MicroBatcher(score, write)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in items), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_every_record_is_written_once_and_answered_after_it_is_stored():
    written: list[int] = []
    calls: list[int] = []
    stored = threading.Event()

    def write(records):
        stored.wait(5)  # hold the first write: later batches pile up and are written together
        calls.append(len(records))
        written.extend(records)

    async def main():
        batcher = MicroBatcher(lambda items: ([f"answer {i}" for i in items], list(items)), write, max_batch=4)
        await batcher.start()
        try:
            pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(40)]
            await asyncio.sleep(0.05)
            assert not any(p.done() for p in pending)  # nothing is answered before it is stored
            stored.set()
            return await asyncio.gather(*pending)
        finally:
            await batcher.stop()

    answers = asyncio.run(main())
    assert answers == [f"answer {i}" for i in range(40)]
    assert sorted(written) == list(range(40))
    assert len(calls) < 40 // 4  # batches waiting for the writer went in one transaction


def test_a_failed_write_answers_every_waiting_request_with_its_error():
    class StoreDown(Exception):
        pass

    def write(records):
        raise StoreDown("disk full")

    results = submit_all(lambda items: (list(items), list(items)), write, range(10))
    assert len(results) == 10 and all(isinstance(r, StoreDown) for r in results)


def test_a_scoring_error_stays_with_its_own_request_and_nothing_is_written_for_it():
    written: list[int] = []

    def score(items):
        return [ValueError(f"bad {i}") if i % 2 else i for i in items], [i for i in items if i % 2 == 0]

    results = submit_all(score, written.extend, range(6))
    assert [r if not isinstance(r, ValueError) else str(r) for r in results] == [0, "bad 1", 2, "bad 3", 4, "bad 5"]
    assert sorted(written) == [0, 2, 4]


def test_a_stopped_writer_refuses_new_records():
    async def main():
        writer = RecordWriter(lambda records: None)
        with pytest.raises(RuntimeError, match="not running"):
            await writer.submit([1])

    asyncio.run(main())
