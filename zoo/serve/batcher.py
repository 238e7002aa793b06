"""Dynamic batching: concurrent predictions of one model grouped into one run.

A :class:`Batcher` owns one model. Requests wait in a bounded queue; one worker takes the
first, then whatever else arrives within ``max_wait_ms`` up to ``max_batch_size`` images,
and runs them as one ``Model.predict`` call in a thread (requests with other options run
as their own group). A full queue refuses at once (:class:`Busy`), so memory is bounded by
``max_queue`` decoded images per model.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Busy(Exception):
    """The model's queue is full: the client should retry later."""


@dataclass
class _Request:
    image: np.ndarray
    options: dict[str, Any]
    future: asyncio.Future[Any]
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = repr(sorted(self.options.items()))


class Batcher:
    """Runs ``model.predict`` on batches of concurrent requests (see the module's docstring).

    ``on_batch(size, seconds)`` is called after each run (for metrics).
    """

    def __init__(self, model: Any, *, max_batch_size: int = 1, max_wait_ms: float = 0.0, max_queue: int = 64,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None
        # one thread: the model's runs follow each other (onnxruntime uses its own threads within a run)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"zoo-{model.spec.name}")

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def predict(self, image: np.ndarray, options: dict[str, Any]) -> Any:
        """The result for one decoded image; :class:`Busy` at once when ``max_queue`` requests are waiting."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._work(), name=f"zoo-batcher-{self.model.spec.name}")
        if self._queue.qsize() >= self.max_queue:
            raise Busy(f"model {self.model.spec.name!r} has {self.max_queue} requests waiting")
        request = _Request(image, options, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size:
                try:
                    if self._queue.qsize() or deadline <= loop.time():
                        batch.append(self._queue.get_nowait())
                    else:
                        batch.append(await asyncio.wait_for(self._queue.get(), deadline - loop.time()))
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            groups: dict[str, list[_Request]] = {}
            for request in batch:
                if not request.future.cancelled():  # its client gave up (timeout, disconnect)
                    groups.setdefault(request.key, []).append(request)
            for group in groups.values():
                await self._run(loop, group)

    async def _run(self, loop: asyncio.AbstractEventLoop, group: list[_Request]) -> None:
        start = loop.time()
        try:
            results = await loop.run_in_executor(self._executor, self._predict, group)
        except Exception as error:  # noqa: BLE001 - each waiting request gets the error
            for request in group:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        if self.on_batch is not None:
            self.on_batch(len(group), loop.time() - start)
        for request, result in zip(group, results):
            if not request.future.done():
                request.future.set_result(result)

    def _predict(self, group: list[_Request]) -> list[Any]:
        return self.model.predict([r.image for r in group], batch_size=self.max_batch_size, **group[0].options)

    async def close(self) -> None:
        """Stop the worker (after the requests in flight) and its thread."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)
