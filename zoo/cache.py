"""Where the zoo keeps its files, and how they are written, checked and removed.

The cache root is ``ZOO_CACHE_DIR`` when set, else the user cache directory that
platformdirs gives for ``onnx-zoo`` (``~/.cache/onnx-zoo`` on Linux,
``~/Library/Caches/onnx-zoo`` on macOS, ``%LOCALAPPDATA%\\onnx-zoo\\Cache`` on Windows)::

    <root>/
      models/<name>/<key>/model.onnx        a converted model
      models/<name>/<key>/model.onnx.data   its weights, for models over 2 GB (ONNX external data)
      models/<name>/<key>/metadata.json     size and sha256 of each file, versions, parity report, time
      models/<name>/<key>/.tmp-<pid>-<hex>/ a build in progress (or left by a killed one)
      files/<sha256>/                        an ONNX file used in place (zoo.get("model.onnx")): its
                                            optimised graph and metadata.json (where the file is, its record)
      downloads/<sha256>-<file>             fetched weights, named by their hash
      downloads/<sha256>-<file>.part        an interrupted download, resumed by the next fetch
      locks/<hash>-<name>.lock              one lock per thing built or opened (prune and clear remove free ones)

``<name>`` is the model's canonical name, which :class:`zoo.spec.ModelSpec` restricts to
characters that are safe in a file name; ``<key>`` is 16 hex digits of a hash over
everything the file depends on (see :mod:`zoo.convert`), so a new library version or other
weights give a new entry instead of a stale hit.

Writers hold the lock of what they build, build it in a per-process temporary folder
beside the target and move each file in with :func:`os.replace`, ``metadata.json`` last:
an entry without valid metadata is incomplete and is never used. The locks are
``fcntl``/``LockFileEx`` locks (through filelock): the operating system releases them when
their process dies, so a killed process never blocks a later one, and whatever it left
is cleaned by the next writer; a writer waits for another as long as that one lives
(``ZOO_LOCK_TIMEOUT`` sets a limit). A reader holds a shared ``flock`` on the same lock
file while it opens the model, so that ``zoo cache rm``, ``prune`` and ``clear`` never
delete an entry that is being opened (on Windows the reader's lock is exclusive).
Readers check each file's size and modification time
against the metadata (and its sha256 when those differ), so a truncated or replaced file
is rebuilt; ``zoo cache verify`` hashes everything.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from filelock import FileLock, Timeout
from platformdirs import user_cache_path

from zoo import settings
from zoo._fields import MODEL_NAME_PATTERN
from zoo._files import TEMP_PREFIX, replacing
from zoo.errors import CacheError, CacheLockTimeout, NotWritableError

log = logging.getLogger(__name__)

#: Seconds between "still waiting" messages.
LOCK_LOG_INTERVAL = 10.0
MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
#: onnxruntime's optimised graph of an entry's model, saved beside it (see :mod:`zoo.runtime`).
OPTIMIZED_PREFIX = "optimized-"
KEY_LENGTH = 16
#: ``NAME/KEY``: one entry, as ``zoo cache list`` prints it (``resnet18/97fcef0812ab34cd``).
ENTRY = re.compile(rf"(?P<name>[^/\s]+(?:/[^/\s]+)?)/(?P<key>[0-9a-fA-F]{{{KEY_LENGTH}}})")
#: What stands for the ``/`` of a Hub name (``timm/resnet50.a1_in1k``) in its folder's name, as in
#: huggingface_hub's cache: a model name never has two separators in a row.
NAMESPACE_SEPARATOR = "--"


def cache_root() -> Path:
    """The root of the cache tree (not created by this call)."""
    return settings.cache_dir() or user_cache_path("onnx-zoo", appauthor=False)


def key_of(inputs: dict[str, Any]) -> str:
    """An entry's key: the first :data:`KEY_LENGTH` hex digits of the sha256 of its key inputs as JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]


def derived_name(what: dict[str, Any], suffix: str) -> str:
    """The file name of what a runtime derives from an entry's model (an optimised graph, a compiled model): the
    :func:`key_of` of ``what`` it depends on, after :data:`OPTIMIZED_PREFIX`, with ``suffix``."""
    return f"{OPTIMIZED_PREFIX}{key_of(what)}{suffix}"


def model_dir(name: str) -> Path:
    """The folder that holds the cached entries of the model with canonical ``name``.

    Raises :class:`~zoo.errors.CacheError` for a name that is not a model name (``..``,
    ``/``, an absolute path), so that no caller can reach outside the cache.
    """
    if not isinstance(name, str) or len(name) > 100 or not MODEL_NAME_PATTERN.fullmatch(name):
        raise CacheError(f"{name!r} is not a model name (lowercase letters, digits and . _ - between them, one / "
                         f"after an owner); 'zoo cache list' shows the cached models")
    return cache_root() / "models" / folder_name(name)


def folder_name(name: str) -> str:
    """The name of the folder of a model's entries: its name, with an owner's ``/`` as ``--``."""
    return name.replace("/", NAMESPACE_SEPARATOR)


def not_writable(path: Path, error: OSError) -> NotWritableError:
    """The error for a cache path that cannot be written, naming it and the setting to change."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = "a file is in the way of a folder"
    setting = ("ZOO_CACHE_DIR is set to it: point it at a writable folder" if settings.cache_dir()
               else "set ZOO_CACHE_DIR to a writable folder")
    return NotWritableError(f"cannot write to the cache at {cache_root()} ({path}: {reason}); {setting}")


def make_dirs(folder: Path) -> Path:
    """Create ``folder`` in the cache (and its parents); :class:`NotWritableError` if that cannot be done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise not_writable(folder, error) from None
    return folder


def entry_dir(name: str, key: str) -> Path:
    """The folder of one cached build of ``name``."""
    if len(key) != KEY_LENGTH or any(c not in "0123456789abcdef" for c in key):
        raise CacheError(f"{key!r} is not a cache key ({KEY_LENGTH} hex digits)")
    return model_dir(name) / key


def download_path(filename: str, sha256: str) -> Path:
    """Where a fetched file with this name and (prefix of a) sha256 is kept."""
    return cache_root() / "downloads" / f"{sha256}-{Path(filename).name}"


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's contents."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def verify_download(path: Path) -> bool:
    """Whether a file in ``downloads/`` still has the sha256 (prefix) its name starts with."""
    return sha256_of(path).startswith(path.name.partition("-")[0])


def _lock_path(target: Path) -> Path:
    digest = hashlib.sha256(target.resolve().as_posix().encode()).hexdigest()[:16]
    return cache_root() / "locks" / f"{digest}-{target.name}.lock"


def _lock_for(target: Path) -> FileLock:
    """The exclusive lock of ``target``, its folder made (:class:`NotWritableError` if it cannot be)."""
    path = _lock_path(target)
    make_dirs(path.parent)
    return FileLock(path)


@contextmanager
def locked(target: Path, what: str | None = None, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive inter-process lock of ``target`` (a path in the cache) for the ``with`` block.

    The lock is the operating system's, released when its holder dies, so a holder that
    still has it is alive and working (a multi-GB export can take many minutes): the wait
    lasts as long as it does, logging ``what`` (default: the target's file name) and the
    time waited every :data:`LOCK_LOG_INTERVAL` seconds. ``timeout`` (default
    ``ZOO_LOCK_TIMEOUT``, unset: none) limits it with :class:`~zoo.errors.CacheLockTimeout`.
    """
    timeout = settings.lock_timeout() if timeout is None else timeout
    lock = _lock_for(target)
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        step = LOCK_LOG_INTERVAL if timeout is None else max(0.0, min(LOCK_LOG_INTERVAL, timeout - waited))
        try:
            lock.acquire(timeout=step)
            break
        except Timeout:
            waited = time.monotonic() - started
            if timeout is not None and waited >= timeout:
                raise CacheLockTimeout(
                    f"another process has been working on {what or target.name} for over {timeout:g} s "
                    f"(ZOO_LOCK_TIMEOUT); try again later, or unset ZOO_LOCK_TIMEOUT to wait until it finishes"
                ) from None
            log.warning("waiting for another process to finish %s (%.0f s so far)", what or target.name, waited)
        except OSError as error:
            raise not_writable(Path(lock.lock_file), error) from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def try_locked(target: Path) -> Iterator[bool]:
    """Like :func:`locked` without waiting: yields whether the lock was free (and is now held)."""
    try:
        lock = _lock_for(target)
        lock.acquire(timeout=0)
    except OSError:  # Timeout and NotWritableError are OSErrors too
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextmanager
def reading(target: Path) -> Iterator[None]:
    """Hold a shared lock on ``target`` while it is opened: removal waits for it, other readers do not.

    A build holds the exclusive lock, so a reader also waits for one in progress. In a
    cache that cannot be written, where no lock file can be made, nothing can be removed
    either, and the reader goes on without a lock.
    """
    try:
        import fcntl
    except ImportError:  # Windows: filelock has no shared lock; readers take the exclusive one
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(NotWritableError):
                stack.enter_context(locked(target))
            yield
        return
    path = _lock_path(target)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink:  # else prune removed this lock file while we waited: open the new one
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


# -- entries -----------------------------------------------------------------------------


def file_record(path: Path) -> dict[str, Any]:
    """What the metadata remembers of one file, to detect later damage.

    Besides its size and sha256, its modification and change times: writing to a file and
    setting its modification time back still moves its change time (``st_ctime``), which
    no user can set, so a file whose times both match is taken as unchanged without hashing.
    """
    stat = path.stat()
    return {"size": stat.st_size, "sha256": sha256_of(path), "mtime_ns": stat.st_mtime_ns,
            "ctime_ns": stat.st_ctime_ns}


def untouched(path: Path, record: dict[str, Any]) -> bool:
    """Whether ``path`` has the size and both times of its ``record`` (then it need not be hashed)."""
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) == (record["size"], record["mtime_ns"],
                                                                  record.get("ctime_ns"))


def damage(path: Path, record: dict[str, Any], *, full: bool = False) -> str | None:
    """How ``path`` differs from the file its ``record`` describes, or None; hashed when ``full`` or when touched."""
    size = path.stat().st_size
    if size != record["size"]:
        return f"{size} bytes instead of {record['size']}"
    if (full or not untouched(path, record)) and sha256_of(path) != record["sha256"]:
        return "not the file that was written (sha256 differs)"
    return None


def read_metadata(folder: Path) -> dict[str, Any]:
    """An entry's metadata as written (unchecked); OSError or ValueError if it cannot be read."""
    return json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))


def read_entry(folder: Path, *, full: bool = False) -> dict[str, Any] | None:
    """The metadata of a complete, undamaged entry, or None.

    Each file must have its recorded size; its sha256 is computed when ``full`` is set or
    its times differ from the record (a changed or replaced file; a moved cache).
    """
    try:
        metadata = read_metadata(folder)
        records = metadata["files"]
        if MODEL_FILE not in records:
            return None
        for name, record in records.items():
            problem = damage(folder / name, record, full=full)
            if problem is not None:
                log.warning("cached %s is %s", folder / name, problem)
                return None
        if full:
            check_entry(folder, metadata)
    except CacheError as error:
        log.warning("%s", error)
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return metadata


def check_entry(folder: Path, metadata: dict[str, Any]) -> None:
    """:class:`CacheError` unless the entry in ``folder`` is what its metadata says: its folder's name is the key of
    its key inputs, and its model refers to no external data outside the folder (:func:`check_external_data`)."""
    key = key_of(metadata.get("key_inputs", {}))
    if folder.name != key or folder.parent.name != folder_name(str(metadata.get("name"))):
        raise CacheError(f"entry {folder.parent.name}/{folder.name} holds the build of "
                         f"{metadata.get('name')!r} with key {key}: it is not the entry its name says")
    check_external_data(folder / MODEL_FILE)


def new_temp_dir(folder: Path) -> Path:
    """A fresh per-process folder inside ``folder`` to build in; the caller holds its lock."""
    temp = folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        temp.mkdir(parents=True)
    except OSError as error:
        raise not_writable(folder, error) from None
    return temp


def discard_leftovers(folder: Path) -> None:
    """Remove what an earlier writer left in ``folder``: temporary folders, stale metadata, and
    onnxruntime's optimised graphs of the model about to be rebuilt.

    The caller holds the folder's lock, so whoever wrote them is gone.
    """
    for path in folder.glob(f"{TEMP_PREFIX}*"):
        log.info("removing %s, left by an interrupted build", path)
        _delete(path)
    for path in folder.glob(f"{OPTIMIZED_PREFIX}*"):
        log.info("removing %s, optimised from the model being rebuilt", path)
        _delete(path)
    (folder / METADATA_FILE).unlink(missing_ok=True)


def commit(folder: Path, temp: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Move the files built in ``temp`` into ``folder``, the model file last, then write the metadata.

    Returns the metadata as written, with a record of each file.
    """
    names = sorted((p.name for p in temp.iterdir()), key=lambda n: n == MODEL_FILE)
    for name in names:
        os.replace(temp / name, folder / name)
    temp.rmdir()
    # Recorded where they now are: a rename moves a file's change time.
    metadata = {**metadata, "files": {name: file_record(folder / name) for name in names}}
    _write_metadata(folder, metadata)
    return metadata


def refresh_records(folder: Path) -> dict[str, Any] | None:
    """Re-check an entry by hash and record its files' new modification times (after a move or a touch).

    The caller holds the entry's lock; the metadata is read under it. Returns the metadata,
    or None if the entry is no longer whole.
    """
    metadata = read_entry(folder)
    if metadata is None:
        return None
    for name, record in metadata["files"].items():
        stat = (folder / name).stat()
        record.update(mtime_ns=stat.st_mtime_ns, ctime_ns=stat.st_ctime_ns)
    try:
        _write_metadata(folder, metadata)
    except OSError:  # a read-only cache: the entry is fine, it is only checked by hash again next time
        pass
    return metadata


# -- onnxruntime's optimised graphs -------------------------------------------------------
# A runtime saves its optimised graph of an entry's model beside it (``optimized-<hash>.onnx``,
# see :mod:`zoo.runtime`) and opens it instead of the model: it is recorded under the metadata's
# ``optimized`` key and checked like the entry's own files before it is opened.


def optimized_usable(folder: Path, name: str) -> bool:
    """Whether the saved optimised graph ``name`` of the entry in ``folder`` may be opened.

    It must be recorded in the metadata and match its record (by size and times, else by
    sha256). One that does not (damaged, replaced, never recorded) is removed with one log
    line, so that the caller optimises the model again.
    """
    path = folder / name
    if not path.exists():
        return False
    if _optimized_damage(folder, name) is not None:
        try:
            with locked(folder / METADATA_FILE, what=f"the metadata of {folder}"):  # a writer may be recording it
                problem = _optimized_damage(folder, name) if path.exists() else None
                if problem is not None:
                    log.warning("the saved optimised graph %s is %s; optimising %s again", path, problem, MODEL_FILE)
                    path.unlink()
                return problem is None and path.exists()
        except OSError:  # a read-only cache: it can be neither locked nor removed, and is not opened
            return False
    with contextlib.suppress(OSError, ValueError, KeyError):
        if not untouched(path, read_metadata(folder)["optimized"][name]):  # checked by hash: remember its times
            record_optimized(path)
    return True


def _optimized_damage(folder: Path, name: str, *, full: bool = False) -> str | None:
    """How an entry's saved optimised graph differs from its record (or that it has none), or None."""
    try:
        record = read_metadata(folder).get("optimized", {}).get(name)
        return "not recorded in the entry's metadata" if record is None else damage(folder / name, record, full=full)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"unreadable ({error})"


def record_optimized(target: Path, saved: Path | None = None) -> None:
    """Record the optimised graph ``target`` (beside an entry's model) in the entry's metadata, first moving the file
    just ``saved`` there; the caller holds the entry's reader lock, so the entry cannot be rebuilt meanwhile."""
    folder = target.parent
    with locked(folder / METADATA_FILE, what=f"the metadata of {folder}"):
        if saved is not None:
            os.replace(saved, target)
        metadata = read_metadata(folder)
        metadata.setdefault("optimized", {})[target.name] = file_record(target)
        _write_metadata(folder, metadata)


def recorded(folder: Path | None, section: str, key: str) -> Any:
    """What :func:`record` kept under ``section`` and ``key`` in ``folder``'s metadata (None: nothing, no folder, or
    metadata that cannot be read)."""
    if folder is None:
        return None
    try:
        return read_metadata(folder).get(section, {}).get(key)
    except (OSError, ValueError, AttributeError):  # AttributeError: metadata that is JSON but not a table
        return None


def record(folder: Path, section: str, key: str, value: Any) -> None:
    """Record ``value`` under ``section`` and ``key`` in the metadata of ``folder`` (an entry, or a file's folder):
    what was measured of it on this machine (a precision's check, a tuning). Nothing in a read-only cache."""
    try:
        with locked(folder / METADATA_FILE, what=f"the metadata of {folder}"):
            metadata = read_metadata(folder) if (folder / METADATA_FILE).exists() else {}
            metadata.setdefault(section, {})[key] = value
            _write_metadata(folder, metadata)
    except OSError as error:  # NotWritableError too: measured again next time
        log.info("not recorded in %s (%s)", folder, error)


def file_folder_of(sha256: str) -> Path:
    """The cache folder of an ONNX file used in place whose sha256 is ``sha256`` (a file that changes gets another):
    it holds the file's optimised graph (not created by this call)."""
    return cache_root() / "files" / sha256[:KEY_LENGTH]


def file_folder(path: Path, record: dict[str, Any]) -> Path | None:
    """:func:`file_folder_of` the ONNX file at ``path``, whose :func:`file_record` is ``record``, made and recording
    where the file is (for ``prune``). None in a read-only cache."""
    folder = file_folder_of(record["sha256"])
    try:
        make_dirs(folder)
        with locked(folder / METADATA_FILE, what=f"the metadata of {folder}"):
            metadata = read_metadata(folder) if (folder / METADATA_FILE).exists() else {}
            if metadata.get("file") != str(path) or metadata.get("record", {}).get("sha256") != record["sha256"]:
                _write_metadata(folder, {**metadata, "file": str(path), "record": record})
    except (OSError, ValueError, AttributeError):  # AttributeError: metadata that is JSON but not a table  # NotWritableError is an OSError: the file runs, its graph is optimised each time
        return None
    return folder


def file_folders() -> list[Path]:
    """The folders of files used in place (:func:`file_folder`), sorted."""
    return sorted(p for p in (cache_root() / "files").glob("*") if p.is_dir())


def stale_file_folders() -> list[Path]:
    """The folders of files used in place (:func:`file_folder`) whose file is gone or has other contents."""
    found = []
    for folder in file_folders():
        try:
            metadata = read_metadata(folder)
            stale = damage(Path(metadata["file"]), metadata["record"]) is not None
        except (OSError, ValueError, KeyError, TypeError):
            stale = True
        if stale:
            found.append(folder)
    return found


def optimized_checks(folder: Path) -> list[tuple[Path, bool]]:
    """Each saved optimised graph of an entry, with whether it matches its record by sha256 (``zoo cache verify``)."""
    return [(path, _optimized_damage(folder, path.name, full=True) is None)
            for path in sorted(folder.glob(f"{OPTIMIZED_PREFIX}*"))]


def _write_metadata(folder: Path, metadata: dict[str, Any]) -> None:
    """Replace ``folder``'s metadata in one step (a temporary file, then :func:`os.replace`)."""
    with replacing(folder / METADATA_FILE) as temp:
        temp.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")


def check_external_data(model_path: Path, model: Any = None) -> list[str]:
    """The external-data files a model refers to (``model``: its ``onnx.ModelProto``, if loaded already);
    :class:`CacheError` if one lies outside its folder.

    ONNX stores the location of external tensors as a path relative to the model file;
    an absolute path or one that climbs out with ``..`` could make a runtime read (or a
    copy carry) any file on the machine.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    model = model if model is not None else onnx.load(str(model_path), load_external_data=False)
    locations = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.add(ExternalDataInfo(tensor).location)
    folder = model_path.parent.resolve()
    for location in sorted(locations):
        escapes = (PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
                   or ".." in PurePosixPath(location.replace("\\", "/")).parts)
        if escapes or not (folder / location).resolve().is_relative_to(folder):
            raise CacheError(f"{model_path.name} refers to external data at {location!r}, outside its folder; "
                             f"refusing to use it (an ONNX model may only refer to files beside it)")
        if not (folder / location).is_file():
            raise CacheError(f"{model_path.name} refers to external data {location!r}, which is missing")
    return sorted(locations)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor stored in a graph: initializers and attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


# -- listing and removal -----------------------------------------------------------------


@dataclass
class Entry:
    """One cached build, as ``zoo cache list`` shows it."""

    name: str
    key: str
    folder: Path
    size: int
    metadata: dict[str, Any] | None  # None: incomplete or damaged

    @property
    def ok(self) -> bool:
        return self.metadata is not None

    @property
    def plugin(self) -> str | None:
        """The plugin whose spec an export was built from (None for a prebuilt file, or an unreadable entry)."""
        return ((self.metadata or {}).get("key_inputs", {}).get("plugin") or {}).get("name")

    @property
    def incomplete(self) -> bool:
        """Whether it is a build that has not finished (no metadata yet: in progress, or interrupted), not damage."""
        return self.metadata is None and not (self.folder / METADATA_FILE).exists()

    def to_dict(self) -> dict[str, Any]:
        meta = self.metadata or {}
        source = meta.get("key_inputs", {}).get("source", {})
        return {"name": self.name, "key": self.key, "id": f"{self.name}/{self.key}",
                "path": str(self.folder / MODEL_FILE), "size": self.size, "ok": self.ok,
                "created": meta.get("created"), "source": source.get("kind"), "weights": meta.get("weights"),
                "onnx": meta.get("onnx"),
                "exporter": meta.get("exporter"), "opset": meta.get("opset"), "simplified": meta.get("simplified"),
                "precision": precision_of(meta),
                "parity": parity_state(meta),
                "source_entry": meta.get("source_entry")}


def parity_state(metadata: dict[str, Any]) -> str | None:
    """``compared``, ``not compared`` (an export whose parity inputs gave nothing to compare), or None (no export)."""
    if "parity" not in metadata:
        return None
    return "not compared" if metadata.get("not_compared") else "compared"


def precision_of(metadata: dict[str, Any]) -> str:
    """``fp32``, or the precision an entry's model was quantized to (its key inputs say)."""
    return metadata.get("key_inputs", {}).get("precision", {}).get("precision", "fp32")


def compared_by_task(metadata: Mapping[str, Any]) -> bool:
    """Whether an entry (its metadata) is an int8 file that quantize did not check (not a classifier's): the
    agreement gate (:mod:`zoo.gate`) compares it with its float32 source entry by its task."""
    return "int8" in metadata and "agreement" not in metadata["int8"]


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path`` (or of ``path`` itself)."""
    def size(file: Path) -> int:
        try:
            return file.stat().st_size if file.is_file() else 0
        except FileNotFoundError:  # moved or removed by a process that commits or cleans up
            return 0

    return size(path) if not path.is_dir() else sum(size(p) for p in path.rglob("*"))


def entries(name: str | None = None, *, full: bool = False, plugin: str | None = None) -> list[Entry]:
    """The cached builds (of ``name``, or of every model), each checked (``full``: by hash).

    ``plugin`` keeps those built from that plugin's spec (and those that do not say: prebuilt files,
    unreadable entries), where two plugins register the same name.
    """
    base = cache_root() / "models"
    folders = [model_dir(name)] if name is not None else sorted(p for p in base.glob("*") if p.is_dir())
    found = []
    for model in folders:
        for folder in sorted(p for p in model.glob("*") if p.is_dir()):
            found.append(Entry(name=model.name.replace(NAMESPACE_SEPARATOR, "/"), key=folder.name, folder=folder,
                               size=folder_size(folder),
                               metadata=read_entry(folder, full=full)))
    return [e for e in found if plugin is None or e.plugin in (None, plugin)]


def downloads() -> list[Path]:
    """Fetched files (and partial ones) in the cache, sorted."""
    folder = cache_root() / "downloads"
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def _lock_target(path: Path) -> Path:
    """What a cache path is locked as: a temporary item by its entry, a ``.part`` file by its download."""
    if path.parent == cache_root():  # an import's staging folder is locked by itself while it is used
        return path
    if path.name.startswith((TEMP_PREFIX, OPTIMIZED_PREFIX)):
        return path.parent
    return path.with_name(path.name.removesuffix(".part"))


def remove(path: Path, *, wait: bool = True) -> int:
    """Delete a cache entry or download under its lock; returns the bytes freed (0 if busy and not ``wait``)."""
    target = _lock_target(path)
    if wait:
        with locked(target):
            return _delete(path)
    with try_locked(target) as free:
        return _delete(path) if free else 0


def _delete(path: Path) -> int:
    if not path.exists():
        return 0
    size = folder_size(path)
    if path.is_dir():
        shutil.rmtree(path)
        if path.parent not in (cache_root(), cache_root() / "models") and not any(path.parent.iterdir()):
            path.parent.rmdir()
    else:
        path.unlink()
    return size


def prune(is_current: Callable[[Entry], bool], *, downloads_too: bool = False,
          dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove what can never be used again; returns ``(path, bytes)`` for each removal.

    That is: entries that are incomplete, damaged or not ``is_current`` (built with other
    library versions, or superseded by a newer plugin or spec), damaged or unrecorded
    optimised graphs, temporary folders (of builds and of imports) and
    ``.part`` files whose writer is gone, the folders of files used in place that are gone or
    changed, lock files nobody holds, and with
    ``downloads_too`` every downloaded file. What another process is building, opening or
    reading is skipped.
    """
    removed = []
    candidates: list[Path] = []
    for entry in entries():
        if entry.metadata is None or not is_current(entry):
            candidates.append(entry.folder)
        else:
            candidates += entry.folder.glob(f"{TEMP_PREFIX}*")
            candidates += [path for path in entry.folder.glob(f"{OPTIMIZED_PREFIX}*")
                           if _optimized_damage(entry.folder, path.name) is not None]
    candidates += staging_folders() + stale_file_folders()
    candidates += [p for p in downloads() if downloads_too or p.name.endswith(".part")]
    for path in candidates:
        if dry_run:
            removed.append((path, folder_size(path)))
            continue
        with try_locked(_lock_target(path)) as free:
            if free:
                removed.append((path, _delete(path)))
    if not dry_run:
        remove_free_locks()
    return removed


def staging_folders() -> list[Path]:
    """The temporary folders at the cache's root: imports in progress, or left by killed ones."""
    root = cache_root()
    return sorted(p for p in root.glob(f"{TEMP_PREFIX}*")) if root.is_dir() else []


def remove_free_locks() -> int:
    """Delete the lock files in ``locks/`` that no process holds; returns how many.

    Each is deleted while this process holds it; a process that was waiting on it sees
    that its file is gone (filelock and :func:`reading` check) and takes the new one.
    """
    folder = cache_root() / "locks"
    count = 0
    for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except OSError:  # held (filelock's Timeout), or not ours to remove
            continue
        try:
            path.unlink(missing_ok=True)
            count += 1
        finally:
            lock.release()
    return count  # the folder stays: a process may be about to create a lock file in it
