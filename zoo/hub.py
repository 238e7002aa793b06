"""Weights on the Hugging Face Hub, fetched through ``huggingface_hub`` into its own cache.

A spec names a :class:`~zoo.spec.HubFile` (repository, file, revision). Before anything is built, :func:`pin`
finds the commit the revision points to and the file's sha256 (the Hub's LFS object id): from the Hub's
metadata, or, offline or when the Hub cannot be reached, from huggingface_hub's cache. The sha256 goes into
the entry's key, the commit into its record. :func:`fetched` downloads the pinned file with
``hf_hub_download`` (its cache, locks, mirror and token) and verifies its sha256 before the export reads it; a
file that does not match is removed from that cache and refused.

Offline means ``ZOO_OFFLINE`` or ``HF_HUB_OFFLINE``; ``HF_ENDPOINT`` is read when each call is made.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoo import cache, settings
from zoo.errors import ChecksumError, DownloadError, OfflineError, WeightsError, weights_hint
from zoo.spec import HubFile

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def offline() -> bool:
    """Whether the Hub may not be asked: ``ZOO_OFFLINE`` or huggingface_hub's own ``HF_HUB_OFFLINE``."""
    return settings.offline() or settings.env_flag("HF_HUB_OFFLINE")


def is_pinned(file: HubFile) -> bool:
    """Whether ``file`` names a commit and carries its sha256."""
    return file.commit is not None and file.sha256 is not None and len(file.sha256) == 64


def _endpoint() -> str | None:
    return settings.text("HF_ENDPOINT").rstrip("/") or None


def _where(file: HubFile) -> str:
    return f"{file.filename} of {file.repo} (revision {file.revision})"


def pin(file: HubFile, recorded: Callable[[HubFile], HubFile | None] | None = None) -> HubFile:
    """``file`` at the commit its revision points to, with that commit's sha256 and size.

    Asked of the Hub; offline, or when the Hub cannot be reached, read from huggingface_hub's cache, or else
    from ``recorded(file)``: what the zoo's own entries built from that revision record (an entry imported from
    a bundle opens with neither network nor weights). Errors that the Hub states (no such repository, a gated one, no
    such revision or file) are :class:`~zoo.errors.WeightsError` saying what to do; a file found nowhere is an
    :class:`~zoo.errors.OfflineError`.
    """
    if is_pinned(file):
        return file
    found = None
    if importlib.util.find_spec("huggingface_hub") is not None:  # the export extra; a cached entry needs none
        found = _from_hub(file) or _cached(file)
    found = found or (recorded(file) if recorded is not None else None)
    if found is None:
        raise not_found_offline(file)
    return found


def _from_hub(file: HubFile) -> HubFile | None:
    """The file as the Hub describes it now (None: offline, or the Hub cannot be reached)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    if not offline():
        try:
            meta = get_hf_file_metadata(hf_hub_url(file.repo, file.filename, revision=file.revision,
                                                   endpoint=_endpoint()))
        except HfHubHTTPError as error:
            if not _is_unreachable(error):
                raise _hub_error(file, error) from None
            log.warning("the Hub cannot be reached (%s); looking for %s in huggingface_hub's cache", error,
                        _where(file))
        except _network_errors() as error:  # no network, a refused connection, a timeout
            log.warning("the Hub cannot be reached (%s); looking for %s in huggingface_hub's cache", error,
                        _where(file))
        else:
            return _pinned(file, meta.commit_hash, meta.etag, meta.size)
    return None


def _cached(file: HubFile) -> HubFile | None:
    """The file as huggingface_hub's cache has it at ``file.revision``: the commit from the snapshot's folder,
    the sha256 from the blob's name (an LFS object id)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo, file.filename, revision=file.revision)
    if not isinstance(found, str):
        return None
    path = Path(found)
    blob = path.resolve()  # named by its LFS object id, where the file system has symbolic links
    sha256 = blob.name if SHA256.fullmatch(blob.name) else cache.sha256_of(blob)  # else a copy: hashed
    return _pinned(file, _commit_of(file, path), sha256, blob.stat().st_size)


def _commit_of(file: HubFile, path: Path) -> str:
    """The commit of a file in huggingface_hub's cache: its snapshot folder's name."""
    return path.parents[len(Path(file.filename).parts) - 1].name


def _pinned(file: HubFile, commit: str | None, etag: str | None, size: int | None) -> HubFile:
    if not commit or not COMMIT.fullmatch(commit):
        raise DownloadError(f"the Hub did not say which commit {_where(file)} is at; is HF_ENDPOINT "
                            f"({_endpoint() or 'unset'}) a Hugging Face Hub or a mirror of one?")
    if not etag or not SHA256.fullmatch(etag.lower()):
        raise DownloadError(f"the Hub gives no sha256 for {_where(file)} (it is not stored with Git LFS), so it "
                            f"cannot be verified; download it and pass it as weights=FILE")
    sha256 = etag.lower()
    if file.sha256 is not None and not sha256.startswith(file.sha256):
        raise ChecksumError(f"{_where(file)} has sha256 {sha256} on the Hub at commit {commit}, but "
                            f"{file.sha256} is expected: the repository changed; pin a revision that has it")
    return replace(file, commit=commit, sha256=sha256, size=size)


def not_found_offline(file: HubFile) -> OfflineError:
    """The error for a Hub file that cannot be pinned: not reachable and not in huggingface_hub's cache."""
    why = ("ZOO_OFFLINE is set" if settings.offline() else "HF_HUB_OFFLINE is set" if offline()
           else "the Hub cannot be reached")
    return OfflineError(f"{why} and {_where(file)} is not in huggingface_hub's cache; connect and unset "
                        f"ZOO_OFFLINE/HF_HUB_OFFLINE (or set HF_ENDPOINT to a mirror) to download it, or pass the "
                        f"file itself: {weights_hint.get()}")


@contextlib.contextmanager
def fetched(file: HubFile) -> Iterator[Path]:
    """The pinned ``file``, downloaded into huggingface_hub's cache (or found there) and verified by its sha256."""
    if not is_pinned(file):
        raise WeightsError(f"{_where(file)} must be pinned (zoo.hub.pin) before it is fetched")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise WeightsError(f"{_where(file)} is fetched with huggingface_hub: pip install 'onnx-zoo[export]'")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    def download(revision: str) -> Path:
        return Path(hf_hub_download(file.repo, file.filename, revision=revision, endpoint=_endpoint(),
                                    local_files_only=offline()))

    try:  # by its revision, so that huggingface_hub's cache remembers which commit that is
        path = download(file.revision)
        if _commit_of(file, path) != file.commit:  # the revision moved on since it was pinned
            path = download(file.commit)  # type: ignore[arg-type]
    except LocalEntryNotFoundError:
        raise not_found_offline(file) from None
    except HfHubHTTPError as error:
        raise _hub_error(file, error) from None
    except _network_errors() as error:
        raise DownloadError(f"could not download {_where(file)}: {error}; try again, or set HF_ENDPOINT to a "
                            f"mirror") from None
    _verify(file, path)
    yield path


def _verify(file: HubFile, path: Path) -> None:
    """:class:`ChecksumError` unless ``path`` holds the pinned file; a wrong one is removed from the cache, so
    that the next try downloads it again."""
    blob = path.resolve()
    size = blob.stat().st_size
    actual = cache.sha256_of(blob) if file.size in (None, size) else None
    if actual == file.sha256:
        return
    for bad in (blob, path):
        with contextlib.suppress(OSError):
            bad.unlink()
    got = f"sha256 {actual}" if actual else f"{size} bytes"
    raise ChecksumError(f"{_where(file)}: got {got}, expected sha256 {file.sha256}"
                        f"{'' if actual else f' and {file.size} bytes'}; the download was removed from "
                        f"huggingface_hub's cache: try again, or check HF_ENDPOINT ({_endpoint() or 'unset'})")


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the HTTP client under huggingface_hub raises when the Hub cannot be reached: OSError (requests, in
    huggingface_hub before 1.0), or httpx's transport errors (httpx, or httpx2 in huggingface_hub 2)."""
    found: list[type[BaseException]] = [OSError]
    for client in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(client).TransportError)
    return tuple(found)


def _is_unreachable(error: Any) -> bool:
    """Whether an HTTP error means that the Hub is away (a gateway's or an overloaded server's status)."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status is None or status in (408, 429, 500, 502, 503, 504)


def _hub_error(file: HubFile, error: Exception) -> WeightsError | DownloadError:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return WeightsError(f"{file.repo} is a gated repository: accept its conditions on its Hub page, then log in "
                            f"('hf auth login') or set HF_TOKEN, to download {file.filename}")
    if isinstance(error, RepositoryNotFoundError):
        return WeightsError(f"the Hub has no repository {file.repo!r} (or it is private: log in with 'hf auth "
                            f"login' or set HF_TOKEN)")
    if isinstance(error, RevisionNotFoundError):
        return WeightsError(f"{file.repo} has no revision {file.revision!r}; give a branch, a tag or a commit "
                            f"that it has")
    if isinstance(error, EntryNotFoundError):
        return WeightsError(f"{file.repo} has no file {file.filename!r} at revision {file.revision}")
    return DownloadError(f"the Hub refused {_where(file)}: {error}")

