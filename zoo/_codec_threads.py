"""Codec threads: where the image codecs run, each with a standard output and error of its own.

libjpeg and libpng print what they find wrong with a file on file descriptor 2 ("Corrupt JPEG
data: ...", "libpng error: ..."), and so does OpenCV's log ("[ WARN:0@0.1] ..."). Pointing the
process's descriptor 2 elsewhere while they run would hold back, or lose in a crash, what every
other thread writes there meanwhile. Instead :func:`run` calls the codec on a codec thread, which
has a table of file descriptors of its own (Linux's ``unshare(CLONE_FILES)``) in which 1 and 2
are a pipe, read after each call: what a codec prints goes to the call that made it print (to be
quoted in its error), and the descriptors that every other thread writes to are never touched.

Where a thread cannot have a table of its own (not Linux, or a sandbox whose seccomp profile
refuses ``unshare``, as a container's may), :func:`run` calls in the caller's thread, and a
damaged file's codec may print.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_CLONE_FILES = 0x400  # os.CLONE_FILES, from Python 3.12
_local = threading.local()


def run(function: Callable[..., T], *args: Any) -> tuple[T, str]:
    """``function(*args)`` on a codec thread, and what it printed there (``""`` where the caller's thread made the
    call). Handing the call over and back costs two thread wake-ups: 0.05 to 0.1 ms."""
    return _threads.run(function, args)


class _CodecThreads:
    """A pool of codec threads, started on first use; none where a thread cannot have a file table of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.possible = sys.platform.startswith("linux")

    def run(self, function: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, str]:
        pool = self._started()
        if pool is not None:
            try:
                future = pool.submit(_call, function, args)
            except RuntimeError:  # the interpreter is shutting down
                pass
            else:
                return future.result()
        return function(*args), ""

    def _started(self) -> ThreadPoolExecutor | None:
        with self._lock:
            if self._pool is None and self.possible:
                self._pool = ThreadPoolExecutor(thread_name_prefix="zoo-codec", initializer=_isolate, initargs=(self,))
            return self._pool if self.possible else None

    def impossible(self) -> None:
        """No more codec threads: one could not be set up."""
        with self._lock:
            self.possible, self._pool = False, None

    def forked(self) -> None:
        """In a child process: the parent's codec threads are not there."""
        self._lock, self._pool = threading.Lock(), None


def _isolate(threads: _CodecThreads) -> None:
    """Make this thread a codec thread: no signals (the process's handlers, and the descriptors they write to, belong
    to the other threads), and a file descriptor table of its own, emptied of its copies of the process's descriptors
    (none is held open here) but for a pipe: its reading end, and its writing end at 1 and 2, neither blocking (a
    codec that prints more than the pipe holds loses the rest). Where that cannot be done, the calls this thread
    makes print where they would have, and ``threads`` starts no more."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        _unshare_file_table()
        copies = [int(fd) for fd in os.listdir("/proc/thread-self/fd")]
        os.closerange(0, max(copies, default=2) + 1)
        read, write = os.pipe()
        for fd in (1, 2):
            if fd != write:
                os.dup2(write, fd)
        os.set_blocking(read, False)
        os.set_blocking(write, False)
    except (OSError, AttributeError):  # a sandbox that refuses unshare, or a libc without it
        threads.impossible()
        return
    _local.printed = read


def _unshare_file_table() -> None:
    """Give the calling thread a copy of the process's file descriptor table, its own from now on."""
    if hasattr(os, "unshare"):
        os.unshare(_CLONE_FILES)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_FILES) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _call(function: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, str]:
    """On a codec thread: ``function(*args)`` and what it printed (read even when it raises, so that the next call's
    text is its own)."""
    try:
        result = function(*args)
    finally:
        printed = _printed()
    return result, printed


def _printed() -> str:
    """Everything in this codec thread's pipe (``""`` on a thread that could not have one)."""
    fd, chunks = getattr(_local, "printed", None), []
    while fd is not None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


_threads = _CodecThreads()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_threads.forked)
