"""zoo.get's cached conversion: keys, metadata, races, crashes, damage, offline, prebuilt files."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from fileserver import FileServer
from tinymodels import save_weights, tiny_spec

import zoo
from zoo import cache, export
from zoo.convert import is_current

FAST_LOCK = {"ZOO_LOCK_TIMEOUT": "60"}


@pytest.fixture
def build_log(tmp_path, monkeypatch) -> Path:
    log = tmp_path / "builds.log"
    monkeypatch.setenv("ZOO_TEST_BUILD_LOG", str(log))
    return log


def builds(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def temp_leftovers() -> list[Path]:
    return list((cache.cache_root() / "models").rglob(f"{cache.TEMP_PREFIX}*"))


def test_first_get_exports_and_commits_metadata_then_reuses(build_log):
    model = zoo.get(tiny_spec(), weights="random")
    assert builds(build_log) == 1
    meta = model.metadata
    record = meta["files"]["model.onnx"]
    assert record["size"] == model.path.stat().st_size
    assert record["sha256"] == hashlib.sha256(model.path.read_bytes()).hexdigest()
    assert meta["exporter"] == "torchscript" and meta["opset"] == 17 and meta["simplified"]
    assert meta["samples"] == 3  # two random inputs and the photo
    assert meta["parity"]["logits"]["top1_agreement"] == 1.0
    assert meta["key_inputs"]["source"]["versions"]["torch"] == torch.__version__.split("+")[0]
    written = json.loads((model.path.parent / "metadata.json").read_text())
    assert written.pop("optimized").keys() == {model.session.optimized.name}  # recorded once the session saved it
    assert written == meta
    onnx.checker.check_model(str(model.path), full_check=True)
    outputs = model.run(np.zeros((3, 3, 32, 32), np.float32))
    assert outputs["logits"].shape == (3, 5)

    again = zoo.get(tiny_spec(), weights="random")
    assert builds(build_log) == 1 and again.path == model.path and not temp_leftovers()


def test_key_changes_with_opset_exporter_weights_and_spec(build_log, tmp_path):
    base = zoo.get(tiny_spec(), weights="random").path
    paths = {
        "opset": zoo.get(tiny_spec(), opset=18, weights="random").path,
        "weights": zoo.get(tiny_spec(), weights=save_weights(tmp_path / "w.pth", scale=1.1)).path,
        "spec": zoo.get(tiny_spec(rtol=2e-3), weights="random").path,
        "simplify": zoo.get(tiny_spec(), simplify=False, weights="random").path,
    }
    assert builds(build_log) == 5
    assert len({base, *paths.values()}) == 5
    assert all(p.parent.parent == base.parent.parent for p in paths.values())  # models/tiny/<key>/
    meta = json.loads((paths["opset"].parent / "metadata.json").read_text())
    assert meta["opset"] == 18


def test_same_weights_at_another_path_is_a_cache_hit(build_log, tmp_path):
    import shutil

    original = save_weights(tmp_path / "a.pth", scale=0.9)
    first = zoo.get(tiny_spec(), weights=original).path
    second = zoo.get(tiny_spec(), weights=str(shutil.copy(original, tmp_path / "b.pth"))).path
    assert first == second and builds(build_log) == 1


def _get_in_child(cache_dir: str, log: str) -> tuple[str, str]:
    os.environ["ZOO_CACHE_DIR"] = cache_dir
    os.environ["ZOO_TEST_BUILD_LOG"] = log
    model = zoo.get(tiny_spec(), weights="random")
    return str(model.path), hashlib.sha256(model.path.read_bytes()).hexdigest()


def test_eight_processes_on_an_empty_cache_export_once(build_log):
    context = multiprocessing.get_context("spawn")
    with context.Pool(8) as pool:
        results = pool.starmap(_get_in_child, [(str(cache.cache_root()), str(build_log))] * 8)
    assert builds(build_log) == 1
    assert len(set(results)) == 1
    path, digest = results[0]
    onnx.checker.check_model(path, full_check=True)
    assert cache.read_entry(Path(path).parent, full=True)["files"]["model.onnx"]["sha256"] == digest
    assert not temp_leftovers()


def test_sigkill_during_an_export_then_the_next_call_recovers(tmp_path, build_log):
    marker = tmp_path / "exporting"
    code = "import zoo, tinymodels; zoo.get(tinymodels.tiny_spec(), weights='random')"
    env = {**os.environ, **FAST_LOCK, "ZOO_TEST_BUILD_SLEEP": "60", "ZOO_TEST_BUILD_MARKER": str(marker),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and child.poll() is None, "the export never started"
        time.sleep(0.05)
    assert temp_leftovers()  # the killed build had its temporary folder
    child.send_signal(signal.SIGKILL)
    child.wait()

    model = zoo.get(tiny_spec(), weights="random")  # the lock died with the process; its leftovers are cleaned
    assert builds(build_log) == 2 and not temp_leftovers()
    assert cache.read_entry(model.path.parent, full=True) is not None


@pytest.mark.parametrize("damage", ["truncate", "overwrite", "delete-metadata"])
def test_damaged_entry_is_detected_and_rebuilt(build_log, damage):
    path = zoo.get(tiny_spec(), weights="random").path
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "overwrite":
        path.write_bytes(bytes(len(good)))  # same size, other bytes, new modification time
    else:
        (path.parent / "metadata.json").unlink()
    model = zoo.get(tiny_spec(), weights="random")
    assert builds(build_log) == 2
    assert model.path == path and path.read_bytes() == good  # the export is deterministic
    assert model.run(np.zeros((1, 3, 32, 32), np.float32))["logits"].shape == (1, 5)


def test_27_01_a_file_rewritten_with_its_size_and_mtime_kept_is_caught_by_its_change_time(build_log):
    path = zoo.get(tiny_spec(), weights="random").path
    stat = path.stat()
    path.write_bytes(bytes(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.read_entry(path.parent) is None  # its ctime moved: hashed, and found out
    assert cache.read_entry(path.parent, full=True) is None  # zoo cache verify hashes
    model = zoo.get(tiny_spec(), weights="random")
    assert builds(build_log) == 2 and model.run(np.zeros((1, 3, 32, 32), np.float32))["logits"].shape == (1, 5)


def test_moved_cache_is_verified_by_hash_and_reused(build_log, tmp_path, monkeypatch):
    import shutil

    path = zoo.get(tiny_spec(), weights="random").path
    moved = tmp_path / "moved"
    shutil.copytree(cache.cache_root(), moved)  # copies get new modification times
    monkeypatch.setenv("ZOO_CACHE_DIR", str(moved))
    model = zoo.get(tiny_spec(), weights="random")
    assert builds(build_log) == 1 and model.path.is_relative_to(moved)
    record = json.loads((model.path.parent / "metadata.json").read_text())["files"]["model.onnx"]
    assert record["mtime_ns"] == model.path.stat().st_mtime_ns  # remembered: the next open is fast again
    assert path.exists()


# -- weights from a server, offline mode ---------------------------------------------------


@pytest.fixture
def server():
    with FileServer() as running:
        yield running


def served_weights(server: FileServer, tmp_path: Path, scale: float = 1.3) -> zoo.Artifact:
    data = save_weights(tmp_path / "served.pth", scale=scale).read_bytes()
    return zoo.Artifact(url=server.add("tiny-weights.pth", data), sha256=hashlib.sha256(data).hexdigest())


def test_weights_are_downloaded_verified_and_exported(server, tmp_path, build_log):
    artifact = served_weights(server, tmp_path)
    model = zoo.get(tiny_spec(weights=artifact))
    assert len(server.requests) == 1 and builds(build_log) == 1
    assert model.metadata["weights"]["location"] == artifact.url
    assert cache.download_path(artifact.filename, artifact.sha256).exists()
    by_url = zoo.get(tiny_spec(), weights=artifact.url, sha256=artifact.sha256)
    assert by_url.path == model.path and len(server.requests) == 1


@pytest.mark.parametrize("mode", ["html", "wrong", "missing"])
def test_bad_weights_server_leaves_nothing_in_the_cache(server, tmp_path, mode):
    artifact = served_weights(server, tmp_path)
    server.set_mode(mode)
    with pytest.raises(zoo.DownloadError) as error:
        zoo.get(tiny_spec(weights=artifact))
    assert "tiny-weights.pth" in str(error.value) or artifact.url in str(error.value)
    root = cache.cache_root()
    assert not [p for p in root.rglob("*") if p.is_file() and "locks" not in p.parts]


def test_offline_with_and_without_the_model_cached(server, tmp_path, monkeypatch):
    artifact = served_weights(server, tmp_path)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(zoo.OfflineError, match="ZOO_OFFLINE"):
        zoo.get(tiny_spec(weights=artifact))
    assert server.requests == []
    monkeypatch.delenv("ZOO_OFFLINE")
    path = zoo.get(tiny_spec(weights=artifact)).path
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    (cache.download_path(artifact.filename, artifact.sha256)).unlink()  # not even the weights are needed now
    assert zoo.get(tiny_spec(weights=artifact)).path == path
    assert len(server.requests) == 1


def test_torchvision_variant_is_resolved_by_tag(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(zoo.OfflineError, match="resnet50-0676ba61.pth"):  # IMAGENET1K_V1's file
        zoo.get("resnet50", weights="imagenet1k_v1")
    with pytest.raises(zoo.OfflineError, match="resnet50-11ad3fa6.pth"):  # the default, IMAGENET1K_V2
        zoo.get("resnet50.imagenet1k_v1", weights="default")


# -- prebuilt ONNX files and unsafe external data ----------------------------------------


def tiny_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "prebuilt.onnx"
    export.export(tiny_spec(), None, path, random_weights=True)
    return path


def test_prebuilt_onnx_is_downloaded_verified_and_cached(server, tmp_path, build_log):
    data = tiny_onnx(tmp_path).read_bytes()
    artifact = zoo.Artifact(url=server.add("tiny.onnx", data), sha256=hashlib.sha256(data).hexdigest())
    spec = tiny_spec(name="tiny-prebuilt", onnx=artifact, build=None)
    assert builds(build_log) == 1  # making the file to serve
    model = zoo.get(spec)
    assert model.path.read_bytes() == data and model.metadata["key_inputs"]["source"]["kind"] == "prebuilt"
    kept = cache.download_path("tiny.onnx", artifact.sha256)
    assert cache.downloads() == [kept]  # kept once, for another spec or a rebuild: the entry links to it
    assert os.path.samefile(kept, model.path)
    assert zoo.get(spec).path == model.path and len(server.requests) == 1
    assert builds(build_log) == 1


def with_external_data(tmp_path: Path, location: str) -> bytes:
    """The tiny model with its first initializer moved to external data at ``location``."""
    model = onnx.load(str(tiny_onnx(tmp_path)))
    tensor = model.graph.initializer[0]
    raw = onnx.numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    (tmp_path / "secret.bin").write_bytes(raw)
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../secret.bin", "../../secret.bin", "/etc/hostname", "sub/../../x.bin"])
def test_external_data_outside_the_model_folder_is_rejected(server, tmp_path, location):
    data = with_external_data(tmp_path, location)
    artifact = zoo.Artifact(url=server.add("evil.onnx", data), sha256=hashlib.sha256(data).hexdigest())
    with pytest.raises(zoo.CacheError, match="outside its folder"):
        zoo.get(tiny_spec(name="evil", onnx=artifact, build=None))
    assert not (cache.cache_root() / "models").exists() or not any((cache.cache_root() / "models").iterdir())


def test_external_data_beside_the_model_is_accepted(tmp_path):
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(with_external_data(folder, "secret.bin"))
    assert cache.check_external_data(folder / "model.onnx") == ["secret.bin"]


@pytest.mark.parametrize("name", ["../x", "a/b/c", "a/..", "/etc", "..", "x/../../y", "C:\\x"])
def test_names_that_escape_the_cache_are_rejected(name):
    with pytest.raises(zoo.CacheError):
        cache.model_dir(name)
    with pytest.raises(zoo.SpecError):
        tiny_spec(name=name)


def test_32_2_a_name_with_an_owner_is_one_folder_named_as_huggingface_hub_names_its_own():
    assert cache.model_dir("timm/resnet50.a1_in1k") == cache.cache_root() / "models" / "timm--resnet50.a1_in1k"


def test_download_file_name_cannot_escape_the_downloads_folder():
    path = cache.download_path("../../../etc/passwd", "ab" * 32)
    assert path.parent == cache.cache_root() / "downloads"


# -- pruning ---------------------------------------------------------------------------------


def test_prune_removes_outdated_damaged_and_leftover_files(build_log):
    current = zoo.get(tiny_spec(), weights="random").path.parent
    outdated = zoo.get(tiny_spec(), opset=18, weights="random").path.parent
    meta_path = outdated / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["key_inputs"]["source"]["versions"]["torch"] = "1.0.0"  # built by a torch no longer installed
    meta_path.write_text(json.dumps(meta))
    found = {e.folder: e for e in cache.entries("tiny")}
    assert not is_current(found[outdated]) and is_current(found[current])
    leftover = cache.new_temp_dir(current)
    part = cache.cache_root() / "downloads" / "abcdef12-w.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 10)

    removed = {p for p, _ in cache.prune(is_current)}
    assert removed == {outdated, leftover, part}
    assert cache.read_entry(current) is not None and not outdated.exists()


def test_build_that_fails_leaves_no_entry(tmp_path):
    def broken(spec, weights):
        raise RuntimeError("the plugin has a bug")

    with pytest.raises(zoo.ExportError, match="the plugin has a bug"):
        zoo.get(tiny_spec(name="broken", build=broken), weights="random")
    assert not (cache.cache_root() / "models").exists() or not any((cache.cache_root() / "models").iterdir())


def test_a_model_with_external_data_is_committed_verified_and_reopened(monkeypatch, capsys):
    """Models over 2 GB keep their weights beside the graph; the threshold is lowered to exercise that path."""
    monkeypatch.setattr(export, "PROTOBUF_LIMIT", 1000)
    model = zoo.get(tiny_spec(), exporter="dynamo", weights="random")
    assert sorted(p.name for p in model.path.parent.iterdir()) == ["metadata.json", "model.onnx", "model.onnx.data"]
    assert set(model.metadata["files"]) == {"model.onnx", "model.onnx.data"}
    assert model.metadata["simplify_note"] == "skipped: the model is over 2 GB"
    assert capsys.readouterr().out == ""  # the dynamo exporter's progress lines went to stderr
    [entry] = cache.entries(full=True)
    assert entry.ok
    data = model.path.with_name("model.onnx.data")
    data.write_bytes(data.read_bytes()[:-4])  # damaged weights file: rebuilt on the next open
    again = zoo.get(tiny_spec(), exporter="dynamo", weights="random")
    assert again.path == model.path and data.stat().st_size == again.metadata["files"]["model.onnx.data"]["size"]
    batch = again.preprocess(np.zeros((40, 40, 3), np.uint8))
    assert again.run(batch)["logits"].shape == (1, 5)


def test_27_09_the_export_notice_comes_once_the_weights_are_resolved(tmp_path, caplog):
    unreachable = zoo.Artifact("http://zoo-test.invalid/tiny.pth", "0" * 64)
    with caplog.at_level(logging.INFO, logger="zoo"), pytest.raises(zoo.DownloadError, match="does not resolve"):
        zoo.get(tiny_spec(name="tiny-unreachable", weights=unreachable))
    assert "exporting" not in caplog.text and not cache.entries()
    with caplog.at_level(logging.INFO, logger="zoo"):
        zoo.get(tiny_spec(name="tiny-local"), weights=save_weights(tmp_path / "tiny.pth"))
    assert "exporting tiny-local to ONNX" in caplog.text
