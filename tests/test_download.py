"""Downloads against a local server that misbehaves on demand (no internet needed)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fileserver import FileServer

from zoo import cache, download
from zoo.errors import ChecksumError, DownloadError, OfflineError, ZooError
from zoo.spec import Artifact

FAST = download.Policy(connect_timeout=2, read_timeout=1, attempts=3, backoff=0.01, chunk_size=16 * 1024)


@pytest.fixture(scope="module")
def weights() -> bytes:
    """A file of weights: 256 KiB of seeded random bytes (what is downloaded does not matter here, only
    its bytes and their hash; no torch needed)."""
    return np.random.default_rng(0).bytes(256 * 1024 + 517)


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def artifact_for(server: FileServer, data: bytes, name: str = "tiny-weights.pth", **fields) -> Artifact:
    return Artifact(url=server.add(name, data), sha256=hashlib.sha256(data).hexdigest(), **fields)


def leftovers() -> list[Path]:
    folder = cache.cache_root() / "downloads"
    return [p for p in folder.iterdir() if p.suffix == ".part"] if folder.exists() else []


def test_download_verifies_and_reuses_the_cached_file(server, weights):
    artifact = artifact_for(server, weights, size=len(weights))
    path = download.fetch(artifact, policy=FAST)
    assert path.read_bytes() == weights and path.parent == cache.cache_root() / "downloads"
    assert len(server.requests) == 1 and not leftovers()
    assert download.fetch(artifact, policy=FAST) == path
    assert len(server.requests) == 1  # a verified cached file costs no request


def test_hash_prefix_in_the_spec_is_enough(server, weights):
    artifact = Artifact(url=server.add("resnet-abcd.pth", weights), sha256=hashlib.sha256(weights).hexdigest()[:8])
    assert download.fetch(artifact, policy=FAST).read_bytes() == weights


def test_slow_server_still_delivers(server, weights):
    server.set_mode("slow")
    assert download.fetch(artifact_for(server, weights), policy=FAST).read_bytes() == weights


def test_half_a_body_resumes_with_range(server, weights):
    server.set_mode("half")
    assert download.fetch(artifact_for(server, weights), policy=FAST).read_bytes() == weights
    assert server.requests[0]["range"] == ""
    resumed_at = int(server.requests[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(weights) // 2  # resumed from what reached the disk, not restarted
    assert not leftovers()


def test_server_that_ignores_range_makes_it_start_over(server, weights):
    server.set_mode("half-no-range")
    assert download.fetch(artifact_for(server, weights), policy=FAST).read_bytes() == weights
    assert len(server.requests) == 2 and server.requests[1]["range"].startswith("bytes=")


def test_error_then_ok_is_retried(server, weights):
    server.set_mode("error-then-ok")
    assert download.fetch(artifact_for(server, weights), policy=FAST).read_bytes() == weights
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("html", DownloadError, "HTML page"),
        ("wrong", ChecksumError, "sha256 is"),
        ("missing", DownloadError, "HTTP 404"),
        ("hang", DownloadError, "after 3 attempts"),
    ],
)
def test_bad_answers_are_rejected_and_leave_nothing(server, weights, mode, error, message):
    server.set_mode(mode)
    artifact = artifact_for(server, weights)
    started = time.monotonic()
    with pytest.raises(error, match=message) as info:
        download.fetch(artifact, policy=FAST)
    assert isinstance(info.value, ZooError)
    assert time.monotonic() - started < 20
    assert not cache.download_path(artifact.filename, artifact.sha256).exists() and not leftovers()


def test_wrong_size_is_rejected_before_hashing(server, weights):
    artifact = artifact_for(server, weights, size=len(weights) + 1)
    with pytest.raises(ChecksumError, match="expected .* bytes"):
        download.fetch(artifact, policy=FAST)
    assert not leftovers()


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_cached_file_is_fetched_again(server, weights, damage):
    artifact = artifact_for(server, weights)
    path = download.fetch(artifact, policy=FAST)
    if damage == "truncate":
        path.write_bytes(weights[:100])
    else:
        path.write_bytes(b"x" * len(weights))
    assert download.fetch(artifact, policy=FAST).read_bytes() == weights
    assert len(server.requests) == 2


def test_offline_makes_no_request(server, weights, monkeypatch):
    artifact = artifact_for(server, weights)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="ZOO_OFFLINE") as info:
        download.fetch(artifact, policy=FAST)
    assert isinstance(info.value, ConnectionError) and server.requests == []
    monkeypatch.delenv("ZOO_OFFLINE")
    path = download.fetch(artifact, policy=FAST)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert download.fetch(artifact, policy=FAST) == path and len(server.requests) == 1


def test_mirror_replaces_the_base_url(server, weights, monkeypatch):
    artifact = Artifact(url="https://unreachable.invalid/models/mirrored.pth", sha256=hashlib.sha256(weights).hexdigest())
    server.add("mirrored.pth", weights)
    monkeypatch.setenv("ZOO_MIRROR", server.url("").rstrip("/"))
    assert download.fetch(artifact, policy=FAST).read_bytes() == weights
    assert server.requests[0]["path"] == "/files/mirrored.pth"


def test_file_url(tmp_path, weights):
    source = tmp_path / "local weights.pth"
    source.write_bytes(weights)
    artifact = Artifact(url=source.as_uri(), sha256=hashlib.sha256(weights).hexdigest())
    assert download.fetch(artifact).read_bytes() == weights
    missing = Artifact(url=(tmp_path / "nope.pth").as_uri(), sha256="0" * 64)
    with pytest.raises(DownloadError, match="does not exist"):
        download.fetch(missing)


KILLABLE = """
import sys
from zoo import download
from zoo.spec import Artifact
artifact = Artifact(url=sys.argv[1], sha256=sys.argv[2])
download.fetch(artifact, policy=download.Policy(chunk_size=4096))
"""


def test_sigkill_during_a_download_then_the_next_call_resumes(server, weights):
    server.set_mode("slow")
    server.state.delay = 0.2  # about 4 s for the whole body
    artifact = artifact_for(server, weights)
    part = cache.download_path(artifact.filename, artifact.sha256).with_suffix(".pth.part")
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, artifact.url, artifact.sha256], env=os.environ.copy())
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > len(weights) // 4):
        assert time.monotonic() < deadline and child.poll() is None, "the download never started"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    got = part.stat().st_size
    assert 0 < got < len(weights)
    server.set_mode("ok")
    assert download.fetch(artifact, policy=FAST).read_bytes() == weights  # the lock died with the process
    assert server.requests[-1]["range"] == f"bytes={got}-"
    assert not leftovers()


def _fetch_in_child(url: str, sha256: str, cache_dir: str) -> str:
    os.environ["ZOO_CACHE_DIR"] = cache_dir
    return str(download.fetch(Artifact(url=url, sha256=sha256), policy=FAST))


def test_concurrent_processes_download_once(server, weights):
    server.set_mode("slow")
    artifact = artifact_for(server, weights)
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        paths = pool.starmap(_fetch_in_child, [(artifact.url, artifact.sha256, str(cache.cache_root()))] * 4)
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == weights
    assert len(server.requests) == 1 and not leftovers()


def test_27_18_downloads_ask_for_the_bytes_as_they_are(server, weights):
    download.fetch(artifact_for(server, weights), policy=FAST)
    assert [r["accept-encoding"] for r in server.requests] == ["identity"]  # no gzip: lengths and ranges are the file's


@pytest.mark.parametrize("size", [True, False], ids=["size-known", "hash-only"])
def test_27_18_a_cut_transfer_without_content_length_is_resumed(server, weights, size):
    server.set_mode("half-no-length")  # the first answer has no Content-Length and stops half way
    artifact = artifact_for(server, weights, **({"size": len(weights)} if size else {}))
    assert download.fetch(artifact, policy=FAST).read_bytes() == weights
    assert len(server.requests) == 2 and server.requests[0]["range"] == ""
    resumed_at = int(server.requests[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(weights) // 2  # retried as an incomplete transfer, resumed where it stopped
    assert not leftovers()


def test_a_wrong_file_without_content_length_is_still_a_checksum_error(server, weights):
    server.set_mode("wrong-no-length")
    artifact = artifact_for(server, weights)
    with pytest.raises(ChecksumError, match="sha256 is"):
        download.fetch(artifact, policy=FAST)
    assert len(server.requests) <= FAST.attempts and not leftovers()


# -- issue 31, item 2: files inside archives -------------------------------------------------------


def archive_of(files: dict[str, bytes], kind: str) -> bytes:
    """A wheel-like zip, or a gzip-compressed tar, holding ``files`` by path."""
    import io
    import tarfile
    import zipfile

    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
            for name, data in files.items():
                zipped.writestr(name, data)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tarred:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tarred.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def members(server: FileServer, kind: str, name: str) -> tuple[dict[str, bytes], list[Artifact]]:
    """Three files in one archive served by ``server``, and an artifact for each."""
    files = {f"pkg/data/{stage}.pt": os.urandom(2000 + i) for i, stage in enumerate(("pnet", "rnet", "onet"))}
    data = archive_of(files, kind)
    url = server.add(name, data)
    digest = hashlib.sha256(data).hexdigest()
    return files, [Artifact(url, digest, len(data), member=path, member_sha256=hashlib.sha256(body).hexdigest())
                   for path, body in files.items()]


@pytest.mark.parametrize(("kind", "name"), [("zip", "pkg-2.6.0-py3-none-any.whl"), ("tar", "pkg-1.0.tar.gz")])
def test_31_02_members_of_one_archive_download_it_once_and_are_verified(zoo_cache_dir, kind, name):
    with FileServer() as server:
        files, artifacts = members(server, kind, name)
        paths = [download.fetch(a, progress=False) for a in artifacts]
        again = [download.fetch(a, progress=False) for a in artifacts]
        assert len([r for r in server.requests if r["path"].endswith(name)]) == 1  # the archive, once
    assert paths == again and [p.read_bytes() for p in paths] == list(files.values())
    assert [p.name for p in paths] == [f"{a.member_sha256}-{a.filename}" for a in artifacts]
    assert (zoo_cache_dir / "downloads" / f"{artifacts[0].sha256}-{name}").is_file()  # the archive, kept by its hash
    paths[1].unlink()  # a member removed, or damaged: extracted again from the archive, offline
    paths[2].write_bytes(b"damaged")
    os.environ["ZOO_OFFLINE"] = "1"
    try:
        assert [download.fetch(a, progress=False).read_bytes() for a in artifacts] == list(files.values())
    finally:
        del os.environ["ZOO_OFFLINE"]


def test_31_02_a_member_that_is_missing_or_not_the_one_named_is_refused_and_leaves_nothing(zoo_cache_dir):
    import dataclasses

    with FileServer() as server:
        files, artifacts = members(server, "zip", "pkg-1.0-py3-none-any.whl")
        wrong = dataclasses.replace(artifacts[0], member_sha256="ab" * 32)
        with pytest.raises(ChecksumError, match=r"pnet\.pt: sha256 is .* expected abab"):
            download.fetch(wrong, progress=False)
        missing = dataclasses.replace(artifacts[0], member="pkg/data/nothing.pt")
        with pytest.raises(DownloadError, match=r"has no file 'pkg/data/nothing\.pt'"):
            download.fetch(missing, progress=False)
    left = sorted(p.name for p in (zoo_cache_dir / "downloads").iterdir())
    assert left == [f"{artifacts[0].sha256}-pkg-1.0-py3-none-any.whl"], left  # the verified archive alone


def test_31_02_an_archive_that_is_not_cached_offline_names_it(zoo_cache_dir, monkeypatch):
    artifact = Artifact("https://example.invalid/pkg-1.0-py3-none-any.whl", "ab" * 32, member="pkg/x.onnx",
                        member_sha256="cd" * 32)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match=r"pkg-1\.0-py3-none-any\.whl is not in the cache"):
        download.fetch(artifact, progress=False)


@pytest.mark.parametrize(("fields", "says"), [
    ({"member": "x.pt"}, "member_sha256"), ({"member_sha256": "ab" * 32}, "goes with member"),
    ({"member": "../x.pt", "member_sha256": "ab" * 32}, "relative path"),
    ({"member": "/x.pt", "member_sha256": "ab" * 32}, "relative path"),
])
def test_31_02_a_member_is_named_with_its_sha256_and_a_relative_path(fields, says):
    from zoo.errors import SpecError

    with pytest.raises(SpecError, match=says):
        Artifact("https://host/pkg.whl", "ab" * 32, **fields)
    table = {"url": "https://host/pkg.whl", "sha256": "ab" * 32, "member": "pkg/x.pt", "member_sha256": "cd" * 32}
    assert Artifact.from_dict(table).to_dict() == {**table, "size": None}
