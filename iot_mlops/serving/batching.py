"""Requests that arrive while a batch is being scored wait for the next one: one model call and one store
transaction for many requests, which is what keeps latency flat under concurrency. No timer: a lone request
is scored at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio


class MicroBatcher:
    """Feeds queued items to `process` (run in a worker thread) in batches; `process` returns one result or
    exception per item, in order."""

    def __init__(self, process: Callable[[list[Any]], list[Any]], max_batch: int = 64, workers: int = 2):
        self.process, self.max_batch, self.workers = process, max_batch, workers
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        # Two batches in flight: one scores (CPU) while the other waits on the store (I/O).
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        while self._queue is not None and not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the prediction service is shutting down"))

    async def submit(self, item: Any) -> Any:
        if self._queue is None:
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
                results = await anyio.to_thread.run_sync(self.process, [item for item, _ in batch])
            except Exception as error:
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
