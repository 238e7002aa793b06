"""Bundles: cache entries in one archive, for machines that cannot download (``zoo bundle export/import``).

A bundle is an uncompressed tar archive (ONNX weights do not compress)::

    manifest.json                      what is inside: see below
    models/<folder>/<key>/metadata.json  each entry's files, as the cache holds them (<folder>: the model's
    models/<folder>/<key>/model.onnx       name, an owner's / as --: timm--resnet50.a1_in1k)
    models/<folder>/<key>/model.onnx.data  (models over 2 GB)

The manifest names the zoo and library versions that made the bundle and, for each entry,
its model name, key, precision and the size and sha256 of every file. onnxruntime's saved
optimised graphs are left out: they belong to the CPU that made them, and the importing
machine makes its own at the first run.

:func:`import_bundle` trusts nothing in the archive. It refuses, naming the member, an
absolute path, a ``..``, a link or any other member that is not a plain file, a file the
manifest does not list, and one whose size or sha256 differs; it never calls
``tarfile.extract``. Every file is copied out and checked before any entry enters the
cache, and each entry then enters it as a build does (files first, metadata last, under
the entry's lock), so a failed import leaves the cache as it was.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from zoo import cache
from zoo._fields import MODEL_NAME_PATTERN
from zoo._files import replacing
from zoo._version import __version__, installed_versions
from zoo.errors import CacheError, ZooError

FORMAT = "onnx-zoo-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: The libraries whose versions a manifest records (the exporter's are in each entry's metadata).
LIBRARIES = ("onnx", "onnxruntime", "numpy")


class BundleError(ZooError):
    """A bundle that cannot be written, or that is refused on import (the message names the member)."""


@dataclass(frozen=True)
class Imported:
    """What :func:`import_bundle` did with one entry."""

    name: str
    key: str
    precision: str
    added: bool  # False: the cache already held it, whole


def with_sources(entries: Iterable[cache.Entry]) -> list[cache.Entry]:
    """``entries`` with the float32 entry that each int8 one its task compares (:func:`zoo.cache.compared_by_task`)
    was made from: on another machine the int8 file is compared with it before it is used. :class:`CacheError`
    where that entry is not in the cache (or is damaged)."""
    chosen = {entry.folder: entry for entry in entries}
    for entry in list(chosen.values()):
        if entry.metadata is not None and cache.compared_by_task(entry.metadata):
            source = cache.entry_dir(entry.name, entry.metadata["source_entry"])
            found = [e for e in cache.entries(entry.name) if e.folder == source and e.ok]
            if not found:
                raise CacheError(f"{entry.name}/{entry.key} is an int8 file compared with its float32 entry "
                                 f"{entry.name}/{source.name} on each machine, which is not in the cache (or is "
                                 f"damaged): 'zoo pull {entry.name}' with the same weights builds it again")
            chosen.update((e.folder, e) for e in found)
    return list(chosen.values())


def export_bundle(entries: Iterable[cache.Entry], output: Path, *,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write ``entries`` (complete ones) to the bundle ``output``; returns the manifest.

    The archive is written under a temporary name beside ``output``, hashed as it is
    written, and renamed when complete. ``progress`` is called with each chunk's size.
    """
    chosen = list(entries)
    manifest: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "zoo": __version__,
                                "libraries": installed_versions(LIBRARIES), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "entries": []}
    try:
        with replacing(output) as temporary, tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as archive:
            for entry in chosen:
                with cache.reading(entry.folder):  # zoo cache rm/prune wait until the files are read
                    metadata = cache.read_entry(entry.folder)
                    if metadata is None:
                        raise BundleError(f"cache entry {entry.name}/{entry.key} is incomplete or damaged: "
                                          f"'zoo cache verify' checks it, 'zoo pull {entry.name}' rebuilds it")
                    names = [cache.METADATA_FILE, *metadata["files"]]
                    files = {name: _add(archive, entry.folder / name, f"models/{cache.folder_name(entry.name)}/{entry.key}/{name}",
                                        progress) for name in names}
                manifest["entries"].append({"name": entry.name, "key": entry.key,
                                            "precision": cache.precision_of(metadata), "files": files})
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            archive.addfile(info, io.BytesIO(data))
    except OSError as error:
        raise BundleError(f"cannot write the bundle {output}: {error.strerror or error}") from None
    return manifest


def _add(archive: tarfile.TarFile, path: Path, arcname: str, progress: Callable[[int], None] | None) -> dict[str, Any]:
    """Add ``path`` as ``arcname`` and return its size and sha256, read once."""
    info = tarfile.TarInfo(arcname)
    stat = path.stat()
    info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
    digest = hashlib.sha256()
    with path.open("rb") as file:
        archive.addfile(info, _Hashing(file, digest, progress))
    return {"size": stat.st_size, "sha256": digest.hexdigest()}


class _Hashing:
    """A file whose reads also feed a hash (tarfile reads each member once)."""

    def __init__(self, file: IO[bytes], digest: Any, progress: Callable[[int], None] | None) -> None:
        self.file, self.digest, self.progress = file, digest, progress

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        self.digest.update(chunk)
        if self.progress is not None and chunk:
            self.progress(len(chunk))
        return chunk


def read_manifest(bundle: Path) -> dict[str, Any]:
    """The bundle's manifest, checked (format, version, names, keys and file names); :class:`BundleError` if bad."""
    with _opened(bundle) as archive:
        return _manifest(archive, bundle)


def _manifest(archive: tarfile.TarFile, bundle: Path) -> dict[str, Any]:
    """The manifest read from ``archive`` and checked; :class:`BundleError` naming what is wrong."""
    text = _read_small(archive, _member(archive, MANIFEST, bundle), bundle)
    try:
        manifest = json.loads(text)
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8
        raise BundleError(f"bundle {bundle}: its {MANIFEST} is not JSON ({error}); make the bundle again with "
                          f"'zoo bundle export'") from None
    return _check_manifest(manifest, bundle)


def import_bundle(bundle: Path, *, progress: Callable[[int], None] | None = None) -> list[Imported]:
    """Verify every file of ``bundle``, then add its entries to the cache; returns what was done with each.

    Raises :class:`BundleError`, naming the member, before anything enters the cache when
    a member is unsafe, unlisted, missing or not the file the manifest describes, and when
    the bundle was made by another version of the zoo (its entries would never be used).
    """
    with _opened(bundle) as archive:
        members = _read(bundle, archive.getmembers)
        by_name: dict[str, tarfile.TarInfo] = {}
        for member in members:
            _check_member(member, bundle)
            if member.name in by_name:
                raise BundleError(f"bundle {bundle}: member {member.name!r} appears twice; refusing the bundle")
            by_name[member.name] = member
        manifest = _manifest(archive, bundle)
        if manifest["zoo"] != __version__:
            raise BundleError(f"bundle {bundle} was made by onnx-zoo {manifest['zoo']}, and this is {__version__}: "
                              f"its cache keys would never match; make the bundle with onnx-zoo {__version__}")
        listed = {f"models/{cache.folder_name(e['name'])}/{e['key']}/{f}": record
                  for e in manifest["entries"] for f, record in e["files"].items()}
        for name, member in by_name.items():
            if name != MANIFEST and name not in listed:
                raise BundleError(f"bundle {bundle}: member {name!r} is not listed in the manifest; refusing the bundle")
        missing = sorted(set(listed) - set(by_name))
        if missing:
            raise BundleError(f"bundle {bundle}: the manifest lists {missing[0]!r}, which the archive lacks"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        staging = cache.new_temp_dir(cache.make_dirs(cache.cache_root()))  # beside models/, on its file system
        try:
            with cache.locked(staging):  # held while it lives: prune and clear remove it once its process is gone
                for name, record in listed.items():  # every file copied out and checked before any entry is added
                    target = staging / Path(*PurePosixPath(name).parts[1:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_checked(archive, by_name[name], target, record, bundle, progress)
                for entry in manifest["entries"]:  # each checked as zoo cache verify checks an entry
                    _check_staged(entry, staging / cache.folder_name(entry["name"]) / entry["key"], bundle)
                try:
                    return [_enter(entry, staging / cache.folder_name(entry["name"]) / entry["key"])
                            for entry in manifest["entries"]]
                except OSError as error:
                    if isinstance(error, ZooError):  # not writable, a lock timeout: already said
                        raise
                    raise _write_error(Path(error.filename or staging), error) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _check_staged(entry: dict[str, Any], staged: Path, bundle: Path) -> None:
    """:class:`BundleError` unless a staged entry's metadata lists exactly its files with the manifest's hashes, its key
    is the key of its key inputs, and its model refers to no external data outside its folder."""
    where = f"bundle {bundle}: entry {entry['name']}/{entry['key']}"
    try:
        metadata = cache.read_metadata(staged)
        records = metadata["files"]
        listed = {name: record["sha256"] for name, record in records.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise BundleError(f"{where}: its {cache.METADATA_FILE} is not an entry's metadata ({error!r}); refusing "
                          f"the bundle") from None
    manifest = {name: record["sha256"] for name, record in entry["files"].items() if name != cache.METADATA_FILE}
    if listed != manifest:
        raise BundleError(f"{where}: its {cache.METADATA_FILE} lists other files than the manifest; refusing the "
                          f"bundle")
    try:
        cache.check_entry(staged, metadata)
    except CacheError as error:
        raise BundleError(f"{where}: {error}; refusing the bundle") from None


def _enter(entry: dict[str, Any], staged: Path) -> Imported:
    """Move one staged, verified entry into the cache as a build commits: files first, metadata last."""
    name, key = entry["name"], entry["key"]
    folder = cache.entry_dir(name, key)
    precision = entry["precision"]
    cache.make_dirs(folder)
    with cache.locked(folder, what=name):
        if cache.read_entry(folder) is not None:
            return Imported(name, key, precision, added=False)
        cache.discard_leftovers(folder)
        metadata = json.loads((staged / cache.METADATA_FILE).read_text(encoding="utf-8"))
        metadata.pop("optimized", None)  # the exporting machine's optimised graphs are not in the bundle
        (staged / cache.METADATA_FILE).unlink()
        temp = cache.new_temp_dir(folder)
        for file in staged.iterdir():
            os.replace(file, temp / file.name)
        cache.commit(folder, temp, metadata)
    return Imported(name, key, precision, added=True)


@contextmanager
def _opened(bundle: Path) -> Iterator[tarfile.TarFile]:
    """The bundle, open; errors in opening it are :class:`BundleError` (not those of the caller's block)."""
    archive = _read(bundle, lambda: tarfile.open(bundle, "r:"))
    with archive:
        yield archive


def _read(bundle: Path, read: Callable[[], Any]) -> Any:
    """``read()`` of the bundle, its errors (a missing, unreadable or cut file) as :class:`BundleError`."""
    try:
        return read()
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle} does not exist") from None
    except tarfile.TarError as error:
        raise BundleError(f"{bundle} is not a readable bundle (a tar archive): {error}; it may be damaged or "
                          f"cut short: copy it again") from None
    except OSError as error:
        raise BundleError(f"cannot read the bundle {bundle}: {error.strerror or error}") from None


def _write_error(target: Path, error: OSError) -> ZooError:
    """The error for a file of the import that cannot be written: a full disk says so, naming the cache."""
    if error.errno == errno.ENOSPC:
        return BundleError(f"the disk of the cache at {cache.cache_root()} is full ({target.name} could not be "
                           f"written); free space there, or point ZOO_CACHE_DIR at a larger disk, and import again: "
                           f"nothing was added")
    return cache.not_writable(target, error)


def _check_member(member: tarfile.TarInfo, bundle: Path) -> None:
    """:class:`BundleError` for a member that is not a plain file at a plain relative path."""
    path = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or path.is_absolute() or (path.parts and ":" in path.parts[0]):
        raise BundleError(f"bundle {bundle}: member {member.name!r} has an absolute path; refusing the bundle")
    if ".." in path.parts or "\\" in member.name:
        raise BundleError(f"bundle {bundle}: member {member.name!r} points outside the archive ('..' or a "
                          f"backslash); refusing the bundle")
    if member.issym() or member.islnk():
        raise BundleError(f"bundle {bundle}: member {member.name!r} is a link (to {member.linkname!r}); refusing "
                          f"the bundle")
    if not member.isreg():
        raise BundleError(f"bundle {bundle}: member {member.name!r} is not a plain file; refusing the bundle")


def _member(archive: tarfile.TarFile, name: str, bundle: Path) -> tarfile.TarInfo:
    try:
        member = archive.getmember(name)
    except KeyError:
        raise BundleError(f"{bundle} has no {name}: it is not a bundle made by 'zoo bundle export'") from None
    _check_member(member, bundle)
    return member


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, bundle: Path, limit: int = 16 << 20) -> bytes:
    if member.size > limit:
        raise BundleError(f"bundle {bundle}: member {member.name!r} is {member.size} bytes, over {limit}")
    file = archive.extractfile(member)
    assert file is not None  # a regular file (checked)
    return _read(bundle, file.read)


def _check_manifest(manifest: Any, bundle: Path) -> dict[str, Any]:
    """The manifest, if it has the format this zoo reads and only safe names; else :class:`BundleError`."""
    def bad(what: str) -> BundleError:
        return BundleError(f"bundle {bundle}: its {MANIFEST} {what}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(f"is not an onnx-zoo bundle manifest (format {FORMAT!r})")
    if manifest.get("version") != FORMAT_VERSION:
        raise bad(f"has version {manifest.get('version')!r}; this zoo reads version {FORMAT_VERSION}")
    entries = manifest.get("entries")
    if not isinstance(entries, list) or not isinstance(manifest.get("zoo"), str):
        raise bad("lacks its zoo version or its entries")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"has {entry!r} as entries[{index}], where an object (name, key, files) belongs")
        name, key, files = entry.get("name"), entry.get("key"), entry.get("files")
        if not (isinstance(name, str) and MODEL_NAME_PATTERN.fullmatch(name)):
            raise bad(f"names a model {name!r}, which is not a model name")
        if not (isinstance(key, str) and len(key) == cache.KEY_LENGTH and all(c in "0123456789abcdef" for c in key)):
            raise bad(f"gives {name} the key {key!r}, which is not a cache key")
        if not isinstance(files, dict) or cache.MODEL_FILE not in files or cache.METADATA_FILE not in files:
            raise bad(f"lists no {cache.MODEL_FILE} and {cache.METADATA_FILE} for {name}/{key}")
        for file, record in files.items():
            if not isinstance(file, str) or "/" in file or "\\" in file or file in ("", ".", ".."):
                raise bad(f"lists a file {file!r} in {name}/{key}, which is not a plain file name")
            if not (isinstance(record, dict) and isinstance(record.get("size"), int)
                    and isinstance(record.get("sha256"), str)):
                raise bad(f"gives {name}/{key}/{file} no size and sha256")
        entry.setdefault("precision", "fp32")
    return manifest


def _copy_checked(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path, record: dict[str, Any],
                  bundle: Path, progress: Callable[[int], None] | None) -> None:
    """Copy one member to ``target`` and check its size and sha256 against the manifest's ``record``."""
    if member.size != record["size"]:
        raise BundleError(f"bundle {bundle}: member {member.name!r} is {member.size} bytes, and the manifest says "
                          f"{record['size']}; refusing the bundle")
    digest = hashlib.sha256()
    source = archive.extractfile(member)
    assert source is not None  # a regular file (checked)
    try:
        out = target.open("wb")
    except OSError as error:
        raise cache.not_writable(target, error) from None
    with out:
        while True:
            try:
                chunk = source.read(1 << 20)
            except (tarfile.TarError, OSError) as error:
                raise BundleError(f"bundle {bundle}: member {member.name!r} cannot be read ({error}); the bundle may "
                                  f"be cut short: copy it again") from None
            if not chunk:
                break
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as error:
                raise _write_error(target, error) from None
            if progress is not None:
                progress(len(chunk))
    if digest.hexdigest() != record["sha256"]:
        raise BundleError(f"bundle {bundle}: member {member.name!r} has sha256 {digest.hexdigest()}, and the "
                          f"manifest says {record['sha256']}: the bundle is damaged; copy it again, or make it again")
