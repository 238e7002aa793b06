"""onnxruntime sessions: the optimised graph kept in the cache entry, and what happens when it is damaged.

The digits model needs no torch: these run in the torch-free job too.
"""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo import cache
from zoo.runtime import optimized_name

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)


def digit() -> np.ndarray:
    image = np.full((32, 32), 255, np.uint8)
    image[6:26, 14:18] = 0  # a one
    return image


def optimized_files(model: zoo.Model) -> list[str]:
    return sorted(p.name for p in model.path.parent.glob(f"{cache.OPTIMIZED_PREFIX}*"))


def test_the_optimised_graph_is_saved_in_the_entry_and_opened_next_time(zoo_cache_dir):
    first = zoo.get("digits")
    saved = first.session.optimized
    assert saved is not None and optimized_files(first) == [saved.name] and first.session.opened == first.path
    assert saved.parent == first.path.parent and not list(saved.parent.glob(f"{cache.TEMP_PREFIX}*"))
    written = saved.stat().st_mtime_ns
    second = zoo.get("digits")
    assert second.session.opened == saved  # opened instead of model.onnx
    assert saved.stat().st_mtime_ns == written  # and not written again
    np.testing.assert_allclose(second.run(second.preprocess(digit()))["logits"],
                               first.run(first.preprocess(digit()))["logits"], rtol=1e-5, atol=1e-6)
    assert zoo.get("digits", precision="int8").session.optimized.name != saved.name  # another model, another file


def test_a_read_only_cache_opens_the_model_once_and_saves_nothing(zoo_cache_dir, monkeypatch):
    import onnxruntime

    model = zoo.get("digits")
    saved = model.session.optimized
    saved.unlink()
    opened = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda path, *a, **k: opened.append(path) or real(path, *a, **k))
    monkeypatch.setattr("os.access", lambda path, mode: False)  # as a read-only folder answers (root writes anyway)
    again = zoo.get("digits")
    assert opened == [str(model.path)] and not saved.exists() and again.session.opened == model.path
    assert again.predict(digit()).to_dict() == model.predict(digit()).to_dict()


def test_the_name_depends_on_the_model_onnxruntime_and_the_providers():
    names = {optimized_name("a" * 64, "1.31.1", ["CPUExecutionProvider"]),
             optimized_name("b" * 64, "1.31.1", ["CPUExecutionProvider"]),
             optimized_name("a" * 64, "1.32.0", ["CPUExecutionProvider"]),
             optimized_name("a" * 64, "1.31.1", ["CUDAExecutionProvider", "CPUExecutionProvider"])}
    assert len(names) == 4 and all(n.startswith(cache.OPTIMIZED_PREFIX) and n.endswith(".onnx") for n in names)


def test_a_damaged_optimised_graph_is_replaced_and_the_model_still_runs(zoo_cache_dir):
    model = zoo.get("digits")
    want = model.predict(digit()).to_dict()
    saved = model.session.optimized
    saved.write_bytes(b"not an onnx file")
    again = zoo.get("digits")
    assert again.predict(digit()).to_dict() == want
    assert again.session.opened == model.path  # the model itself, this time
    assert saved.stat().st_size > 1000  # written anew from it
    assert zoo.get("digits").session.opened == saved


def test_a_rebuilt_entry_drops_the_graphs_optimised_from_its_old_model(zoo_cache_dir):
    model = zoo.get("digits")
    saved = model.session.optimized
    stale = saved.with_name(f"{cache.OPTIMIZED_PREFIX}0123456789abcdef.onnx")  # as from another model's bytes
    stale.write_bytes(saved.read_bytes())
    (model.path.parent / cache.METADATA_FILE).unlink()  # an incomplete entry: the next get rebuilds it
    rebuilt = zoo.get("digits")
    assert rebuilt.path == model.path and rebuilt.predict(digit()).to_dict() == model.predict(digit()).to_dict()
    assert optimized_files(rebuilt) == [saved.name]  # both removed before the rebuild; its own saved again


def test_27_15_an_opencv_session_leaves_the_process_thread_count_as_it_was(zoo_cache_dir):
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    threads = 1 if before != 1 else 2  # a count other than the process's, so that a leak would show
    model = zoo.get("digits", runtime="opencv", threads=threads)
    assert model.session.name == "opencv" and cv2.getNumThreads() == before  # opening it set nothing
    assert model.predict(digit()).label == zoo.get("digits").predict(digit()).label
    assert cv2.getNumThreads() == before  # nor did running it: the other models and the preprocessing keep theirs


def test_33_2_opencv_is_checked_against_onnxruntime_once_a_machine(zoo_cache_dir, monkeypatch):
    pytest.importorskip("cv2")
    from zoo import gate

    model = zoo.get("digits", runtime="opencv")  # a third party's model too, not only those a runtimes.toml names
    [(key, record)] = model.metadata["checks"].items()
    assert key == gate.check_key("opencv", "fp32") and record["refused"] is None
    assert record["compared"] == 64 and record["agreement"] == 1.0
    assert cache.read_metadata(model.path.parent)["checks"][key] == record
    monkeypatch.setattr(gate, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert zoo.get("digits", runtime="opencv", threads=1).metadata["checks"][key] == record


def flip_bytes_keeping_size_and_mtime(path, count=64):
    """Overwrite ``count`` bytes near the end of ``path`` with their complement, then set its times back."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    start = len(data) - count - 16
    data[start:start + count] = bytes(255 - b for b in data[start:start + count])
    path.write_bytes(bytes(data))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_27_01_a_damaged_optimised_graph_is_found_by_verify_and_never_run(zoo_cache_dir, caplog):
    from conftest import run_zoo

    first = zoo.get("digits")
    expected = first.run(first.preprocess(digit()))["logits"]
    saved = first.session.optimized
    metadata = cache.read_metadata(first.path.parent)
    assert metadata["optimized"][saved.name]["sha256"] == cache.sha256_of(saved)  # recorded with its hash
    assert run_zoo("cache", "verify").returncode == 0

    flip_bytes_keeping_size_and_mtime(saved)
    verify = run_zoo("cache", "verify", "--json")
    rows = {row["path"]: row["ok"] for row in __import__("json").loads(verify.stdout)}
    assert verify.returncode == 1 and rows == {str(first.path): True, str(saved): False}

    caplog.clear()
    again = zoo.get("digits")
    assert again.session.opened == again.path  # the model itself, not the damaged graph
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "optimised graph" in warnings[0] and "sha256 differs" in warnings[0], warnings
    np.testing.assert_allclose(again.run(again.preprocess(digit()))["logits"], expected, rtol=1e-5, atol=1e-6)
    assert run_zoo("cache", "verify").returncode == 0  # saved and recorded anew
    assert zoo.get("digits").session.opened == saved


def test_27_01_an_unrecorded_optimised_graph_is_not_opened_and_prune_removes_a_damaged_one(zoo_cache_dir):
    from conftest import run_zoo

    model = zoo.get("digits")
    saved = model.session.optimized
    stray = saved.with_name(f"{cache.OPTIMIZED_PREFIX}0123456789abcdef.onnx")
    stray.write_bytes(saved.read_bytes())  # a graph of the right name pattern that no runtime recorded
    assert cache.optimized_usable(saved.parent, stray.name) is False and not stray.exists()
    flip_bytes_keeping_size_and_mtime(saved)
    assert run_zoo("cache", "prune").returncode == 0
    assert not saved.exists() and model.path.exists()  # the graph goes; the entry stays


def test_27_01_a_model_changed_with_its_mtime_set_back_is_rebuilt(zoo_cache_dir):
    first = zoo.get("digits")
    expected = first.run(first.preprocess(digit()))["logits"]
    flip_bytes_keeping_size_and_mtime(first.path)
    again = zoo.get("digits")
    assert cache.sha256_of(again.path) == again.metadata["files"][cache.MODEL_FILE]["sha256"]
    np.testing.assert_allclose(again.run(again.preprocess(digit()))["logits"], expected, rtol=1e-5, atol=1e-6)
