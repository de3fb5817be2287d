"""Requests that arrive while a batch is being scored wait for the next one: one model call per batch, scored in
the event loop (it is CPU work: a worker thread would only add a hand-off and contend for the GIL). Their records
go to one writer thread, which commits every record waiting in one transaction; a response is sent once its
prediction is stored. No timer: a lone request is scored at once."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

STOP = object()


class RecordWriter:
    """One thread that writes queued records, all that are waiting in one call of `write`."""

    def __init__(self, write: Callable[[list[Any]], Any], max_records: int = 2000):
        self.write, self.max_records = write, max_records
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="record-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(STOP)
            self._thread.join(timeout=30)
            self._thread = None

    def submit(self, records: list[Any]) -> asyncio.Future:
        """A future that is done when the records are stored (or failed to be)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None:
            future.set_exception(RuntimeError("the record writer is not running"))
        else:
            self._queue.put((records, future, loop))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is STOP:
                return
            waiting, count, stop = [item], len(item[0]), False
            while count < self.max_records:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is STOP:
                    stop = True
                    break
                waiting.append(more)
                count += len(more[0])
            try:
                self.write([record for records, _, _ in waiting for record in records])
                outcome: BaseException | None = None
            except Exception as error:  # every waiting request answers with it
                outcome = error
            for _, future, loop in waiting:
                loop.call_soon_threadsafe(_settle, future, outcome)
            if stop:
                return


def _settle(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class MicroBatcher:
    """Feeds queued items to `score` in batches; `score` returns (one result or exception per item, records to store)."""

    def __init__(self, score: Callable[[list[Any]], tuple[list[Any], list[Any]]], write: Callable[[list[Any]], Any],
                 max_batch: int = 64):
        self.score, self.max_batch = score, max_batch
        self.writer = RecordWriter(write)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._finishing: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self.writer.start()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)
        await asyncio.to_thread(self.writer.stop)
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the prediction service is shutting down"))

    async def submit(self, item: Any) -> Any:
        if self._queue is None or self._task is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results, records = self.score([item for item, _ in batch])
            except Exception as error:
                results, records = [error] * len(batch), []
            # The next batch is scored while this one's records are written.
            task = asyncio.create_task(self._finish(batch, results, self.writer.submit(records) if records else None))
            self._finishing.add(task)
            task.add_done_callback(self._finishing.discard)

    @staticmethod
    async def _finish(batch: list, results: list[Any], stored: asyncio.Future | None) -> None:
        try:
            if stored is not None:
                await stored
        except Exception as error:  # not stored: no prediction of the batch is answered as served
            results = [r if isinstance(r, BaseException) else error for r in results]
        for (_, future), result in zip(batch, results):
            if future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
