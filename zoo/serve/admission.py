"""What the server lets in at once: counted slots, and a budget of decoded pixels.

A prediction request passes three bounds (``zoo serve --help`` names the flags):

1. its body is received in one of ``--max-receiving`` slots (server-wide), within
   ``--body-timeout`` seconds; a client that stalls holds that slot and nothing else, and
   for that long at most (408);
2. it then takes one of its model's ``--max-queue`` places (:class:`Slots`, in
   :meth:`zoo.serve.batcher.Batcher.admit`);
3. before its image is decoded, the image's pixels, read from its header, are taken from
   the server-wide :class:`PixelBudget` (``--max-pixels-in-flight``) and held until its
   answer is made; a request waits for them at most ``--timeout`` seconds.

Slots refuse at once with :class:`Busy` (503 with ``Retry-After``); the budget refuses with
:class:`Busy` once the wait is over. What is bounded: body bytes by
``--max-receiving x --max-body`` while received and ``--max-queue x --max-body`` per model
while waiting; decoded images, the largest part of a request's memory, by the pixels in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator

#: What a pixel in flight may cost at the peak, in bytes: the bound the README's "Serving" section states is the
#: server's RSS at rest plus this times ``--max-pixels-in-flight`` (1.1 GiB at the default). Measured: about 9
#: (OpenCV's decode holds twice the RGB image, 6; ``?annotate=true`` holds the image and its drawing while the PNG
#: is encoded, 9), for models that resize their input; one that runs at the image's own size adds its float32
#: tensor (4 bytes a channel).
PEAK_BYTES_PER_PIXEL = 12


class Busy(Exception):
    """A bound is reached, or the server is stopping: the client should retry later (503)."""


class Slots:
    """At most ``limit`` holders at once; the next one is refused at once with :class:`Busy` saying ``full``."""

    def __init__(self, limit: int, full: str) -> None:
        self.limit, self.full = limit, full
        #: Holders now.
        self.held = 0

    def check(self) -> None:
        """:class:`Busy` if no slot is free now (nothing is taken)."""
        if self.held >= self.limit:
            raise Busy(self.full)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """One slot for the time of the block; :class:`Busy` if none is free."""
        self.check()
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1


class PixelBudget:
    """Decoded pixels in flight, server-wide: at most ``limit`` at once.

    A request takes its image's pixels (width x height, from the header) before the image is
    decoded and gives them back once its answer is made. One that does not fit waits its
    turn, first come first served, for at most ``wait`` seconds, then is refused with
    :class:`Busy`. An image larger than the whole budget must be refused by the caller
    (:meth:`hold` raises ``ValueError``): it could never fit.
    """

    def __init__(self, limit: int, wait: float) -> None:
        self.limit, self.wait = limit, wait
        #: Pixels held now.
        self.in_flight = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int) -> AsyncIterator[None]:
        """``pixels`` of the budget for the time of the block (waiting for them first, if need be)."""
        if pixels > self.limit:
            raise ValueError(f"{pixels:,} pixels can never fit a budget of {self.limit:,}")
        if self._waiting or self.in_flight + pixels > self.limit:
            await self._wait_for(pixels)
        else:
            self.in_flight += pixels
        try:
            yield
        finally:
            self._give_back(pixels)

    async def _wait_for(self, pixels: int) -> None:
        granted = asyncio.get_running_loop().create_future()
        entry = (pixels, granted)
        self._waiting.append(entry)
        try:
            await asyncio.wait_for(granted, self.wait)
        except BaseException as error:  # the wait ran out, or the client went away
            if granted.done() and not granted.cancelled():  # granted as it ended: give the pixels back
                self._give_back(pixels)
            else:
                with contextlib.suppress(ValueError):  # _grant drops a cancelled wait itself
                    self._waiting.remove(entry)
                self._grant()  # a large request that left may have been holding back smaller ones
            if isinstance(error, TimeoutError):
                raise Busy(f"the server has {self.in_flight:,} pixels of images in flight and this image's "
                           f"{pixels:,} did not fit within {self.wait:g} s (--max-pixels-in-flight "
                           f"{self.limit:,})") from None
            raise

    def _give_back(self, pixels: int) -> None:
        self.in_flight -= pixels
        self._grant()

    def _grant(self) -> None:
        """Wake the waiting requests, in order, while the first of them fits."""
        while self._waiting and (self._waiting[0][1].done() or self.in_flight + self._waiting[0][0] <= self.limit):
            pixels, granted = self._waiting.popleft()
            if not granted.done():  # not given up (a cancelled wait is skipped)
                self.in_flight += pixels
                granted.set_result(None)
