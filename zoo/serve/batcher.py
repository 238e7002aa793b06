"""Dynamic batching: concurrent predictions of one model grouped into one run.

A :class:`Batcher` owns one model. A request is admitted (:meth:`Batcher.admit`) once its
body is in: at most ``max_queue`` requests per model are admitted at once, from decoding
their image to their answer, and the next is refused at once (:class:`Busy`). What this
bounds is the number of requests (and so of bodies) a model holds; their decoded pixels
are bounded server-wide by :class:`zoo.serve.admission.PixelBudget`, and the bodies being
received by ``--max-receiving`` and ``--body-timeout`` (:mod:`zoo.serve.admission`).
Admitted requests wait in a queue; one worker takes the first, then whatever else arrives
within ``max_wait_ms`` up to ``max_batch_size`` images, and runs them as one ``predict``
call in a thread (requests with other options run as their own group). A group whose run raises
an input error is run one request at a time (:func:`zoo.model.predict_each`), so that one bad
image does not fail the others; an error of the model itself answers every request. The
worker keeps no reference to a batch once it is answered: its images are freed with their
requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.model import predict_each
from zoo.serve.admission import Busy, Slots

__all__ = ["Batcher", "Busy"]


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
        self._slots = Slots(max_queue, f"model {model.spec.name!r} has {max_queue} requests already (--max-queue)")
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # one thread: the model's runs follow each other (onnxruntime uses its own threads within a run)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"zoo-{model.spec.name}")

    @property
    def admitted(self) -> int:
        """Requests admitted and not answered yet (decoding, waiting or running)."""
        return self._slots.held

    def check(self) -> None:
        """:class:`Busy` if :meth:`admit` would refuse now (asked before a body is read, which takes nothing)."""
        if self._closed:
            raise Busy("the server is stopping")
        self._slots.check()

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """A place among the ``max_queue`` requests of this model, for the time of the block; :class:`Busy` if none."""
        self.check()
        with self._slots.hold():
            yield

    async def predict(self, image: np.ndarray, options: dict[str, Any]) -> Any:
        """The result for one decoded image (call it inside :meth:`admit`)."""
        if self._worker is None or self._worker.done():  # started in the running loop; restarted if it ever died
            self._worker = asyncio.create_task(self._work(), name=f"zoo-batcher-{self.model.spec.name}")
        request = _Request(image, options, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(request)
        return await request.future

    async def _work(self) -> None:
        while True:
            await self._run(await self._collect())  # nothing here holds a batch while the next is awaited

    async def _collect(self) -> list[_Request]:
        """The first request to come, and those that follow within ``max_wait`` up to ``max_batch_size``."""
        loop = asyncio.get_running_loop()
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
        return batch

    async def _run(self, batch: list[_Request]) -> None:
        """Run ``batch`` in groups of equal options and answer each request."""
        loop = asyncio.get_running_loop()
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
        """One result, or the exception, per request: :func:`zoo.model.predict_each` (a request's own input error is
        its answer); an error of the model itself is every request's answer."""
        try:
            return predict_each(self.model, [r.image for r in group], **group[0].options)
        except Exception as error:  # noqa: BLE001 - returned, the event loop sets it on the requests' futures
            return [error] * len(group)

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
