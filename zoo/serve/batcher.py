"""Dynamic batching: concurrent predictions of one model grouped into one run.

A :class:`Batcher` owns one model. A request is admitted first (:meth:`Batcher.admit`,
before its body is read): at most ``max_queue`` requests per model are admitted at once,
from reading their image to their answer, and the next is refused at once (:class:`Busy`),
so memory holds at most ``max_queue`` images per model. Admitted requests wait in a queue;
one worker takes the first, then whatever else arrives within ``max_wait_ms`` up to
``max_batch_size`` images, and runs them as one ``predict`` call in a thread (requests
with other options run as their own group). If a group fails, its requests are run one
at a time, so that one bad request does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Busy(Exception):
    """The model has ``max_queue`` requests already, or the server is stopping: the client should retry later."""


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
        #: Requests admitted and not answered yet (reading, decoding, waiting or running).
        self.admitted = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # one thread: the model's runs follow each other (onnxruntime uses its own threads within a run)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"zoo-{model.spec.name}")

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """A place among the ``max_queue`` requests of this model, for the time of the block; :class:`Busy` if none."""
        if self._closed:
            raise Busy("the server is stopping")
        if self.admitted >= self.max_queue:
            raise Busy(f"model {self.model.spec.name!r} has {self.max_queue} requests already")
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def predict(self, image: np.ndarray, options: dict[str, Any]) -> Any:
        """The result for one decoded image (call it inside :meth:`admit`)."""
        if self._worker is None or self._worker.done():  # started in the running loop; restarted if it ever died
            self._worker = asyncio.create_task(self._work(), name=f"zoo-batcher-{self.model.spec.name}")
        request = _Request(image, options, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def _work(self) -> None:
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
                if not request.future.done():  # not cancelled: its client has not given up (timeout)
                    groups.setdefault(request.key, []).append(request)
            for group in groups.values():
                start = loop.time()
                answers = await loop.run_in_executor(self._executor, self._predict, group)
                if self.on_batch is not None:
                    self.on_batch(len(group), loop.time() - start)
                for request, answer in zip(group, answers):
                    if request.future.done():
                        continue
                    if isinstance(answer, BaseException):
                        request.future.set_exception(answer)
                    else:
                        request.future.set_result(answer)

    def _predict(self, group: list[_Request]) -> list[Any]:
        """One result, or the exception, per request: the group at once, or one at a time if the group fails."""
        try:
            results = self.model.predict([r.image for r in group], **group[0].options)
            if len(results) == len(group):
                return list(results)
        except Exception as error:  # noqa: BLE001 - returned, the event loop sets it on the request's future
            if len(group) == 1:
                return [error]
        answers: list[Any] = []
        for request in group:
            try:
                answers.append(self.model.predict(request.image, **request.options))
            except Exception as error:  # noqa: BLE001 - as above
                answers.append(error)
        return answers

    async def close(self) -> None:
        """Refuse new requests, answer waiting ones with :class:`Busy`, stop the worker and its thread."""
        self._closed = True
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(Busy("the server is stopping"))
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)
