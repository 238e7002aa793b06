"""Issue 13, "sound foundations": each defect found by review, with the test that caught it.

Everything here runs without torch (the torch-free CI job runs this file); the checks that
need an export are in ``test_foundations_export.py``. Each test names its item.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_spec, registry_with, run_zoo, run_zoo_at_terminal
from fileserver import FileServer
from onnx import TensorProto, helper

import zoo
from zoo import cache, cli, download, images
from zoo.convert import is_current, make_key, plan
from zoo.errors import (
    DownloadError,
    PluginError,
    SpecError,
    UsageError,
    WeightsError,
    ZooInputError,
)
from zoo.registry import default_registry
from zoo.results import classify
from zoo.testing import _normalised_range

zoo_digits = pytest.importorskip("zoo_digits", reason="zoo-digits is not installed: pip install ./plugins/zoo-digits")
DIGITS_ONNX = Path(zoo_digits.__file__).parent / "digits.onnx"
SAMPLE = Path(zoo_digits.__file__).parent.parent / "samples" / "3.png"


def flatten_onnx(path: Path, side: int = 2, output: str = "scores") -> zoo.Artifact:
    """A prebuilt ONNX file that returns its ``(N, 1, side, side)`` input flattened to ``(N, side * side)``."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], [output], axis=1)], "flatten",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, side, side])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", side * side])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return zoo.Artifact(url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def flatten_spec(artifact: zoo.Artifact, **fields) -> zoo.ModelSpec:
    values = dict(name="flat", task="image-classification", onnx=artifact, outputs=("scores",),
                  labels=("a", "b", "c", "d"), plugin="mine",
                  preprocess=zoo.Preprocess(channels="GRAY", resize=(2, 2), interpolation="nearest"))
    values.update(fields)
    return zoo.ModelSpec(**values)


def digits_copy(tmp_path: Path, folder: str) -> zoo.ModelSpec:
    """The digits spec with its prebuilt file at another place (another install)."""
    target = tmp_path / folder / "digits.onnx"
    target.parent.mkdir()
    shutil.copyfile(DIGITS_ONNX, target)
    spec = zoo_digits.load_spec()
    return dataclasses.replace(spec, onnx=dataclasses.replace(spec.onnx, url=target.as_uri()))


def no_traceback(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- 1. prebuilt specs and user weights ------------------------------------------------------


def test_1_a_prebuilt_spec_refuses_other_weights_and_its_metadata_claims_none(tmp_path):
    other = tmp_path / "other.pt"
    other.write_bytes(b"not the packaged model")
    with pytest.raises(WeightsError, match="'digits' ships a prebuilt ONNX file .* cannot use other weights"):
        zoo.get("digits", weights=other)
    assert not (cache.cache_root() / "models").exists()
    model = zoo.get("digits")
    assert model.metadata["weights"] is None and model.metadata["onnx"]["file"] == "digits.onnx"
    result = no_traceback(run_zoo("predict", "digits", str(SAMPLE), "--weights", str(other)))
    assert result.returncode == 1 and "cannot use other weights" in result.stderr


# -- 2. deterministic keys ------------------------------------------------------------------

KEYS = """
import dataclasses, json, sys
from zoo import HubFile
from zoo.convert import make_key, plan
from zoo.registry import default_registry
registry = default_registry()
infos = registry.plugin_manager.infos

def pinned(weights):  # a Hub file is pinned to the Hub's sha256 before it is planned: here a stand-in
    return dataclasses.replace(weights, commit="0" * 40, sha256="0" * 64) if isinstance(weights, HubFile) else weights

print(json.dumps({s.name: make_key(plan(s, pinned(s.weights), plugin_version=infos[s.plugin].version))
                  for s in registry if not s.is_pipeline}))  # a pipeline has no file of its own: its models have the keys
"""


def test_2_every_registered_spec_has_the_same_key_in_two_fresh_processes():
    first, second = (run_zoo(code=KEYS) for _ in range(2))
    assert first.returncode == 0, first.stderr
    keys = json.loads(first.stdout)
    assert keys == json.loads(second.stdout)
    assert set(keys) == {spec.name for spec in default_registry() if not spec.is_pipeline} and "digits" in keys


def test_2_extra_must_be_json_and_partial_or_object_builds_have_stable_names():
    with pytest.raises(SpecError, match="'extra' must hold only JSON values"):
        make_spec(extra={"when": object()})

    class Builder:
        def __call__(self, spec, weights):
            return None

    def build(spec, weights, depth):
        return None

    partial = make_spec(build=functools.partial(build, depth=50))
    callable_object = make_spec(build=Builder())
    assert partial.to_dict()["build"].endswith("build, depth=50)")
    assert callable_object.to_dict()["build"] == f"{__name__}.{Builder.__qualname__}"
    for spec in (partial, callable_object):
        key = make_key(plan(spec, None))
        assert key == make_key(plan(dataclasses.replace(spec), None)) and "0x" not in json.dumps(plan(spec, None))


# -- 3. prebuilt files keyed by content -----------------------------------------------------


def test_3_the_same_prebuilt_file_at_two_locations_is_one_entry_and_no_second_copy(tmp_path):
    first = zoo.get(digits_copy(tmp_path, "venv-a"))
    second = zoo.get(digits_copy(tmp_path, "venv-b"))
    assert first.path == second.path
    assert len(cache.entries("digits")) == 1
    assert not (cache.cache_root() / "downloads").exists()
    source = first.metadata["key_inputs"]["source"]
    assert source == {"kind": "prebuilt", "sha256": zoo_digits.load_spec().onnx.sha256}


# -- 4. probabilities never depend on the batch ----------------------------------------------


@pytest.mark.parametrize("scores", ["logits", "probabilities"])
def test_4_a_prediction_does_not_depend_on_the_rest_of_the_batch(tmp_path, scores):
    model = zoo.get(flatten_spec(flatten_onnx(tmp_path / "flat.onnx"), scores=scores))
    looks_like_probabilities = np.array([[255, 0], [0, 0]], np.uint8)  # one row: [1, 0, 0, 0]
    other = np.array([[255, 255], [0, 0]], np.uint8)
    alone = model.predict(looks_like_probabilities)
    together = model.predict([looks_like_probabilities, other])[0]
    assert alone == together
    assert alone.score == (1.0 if scores == "probabilities" else pytest.approx(np.e / (np.e + 3)))
    first, _ = classify(np.array([[0.5, 0.5, 0], [2, 1, 0]]), ("a", "b", "c"))
    assert first == classify(np.array([[0.5, 0.5, 0]]), ("a", "b", "c"))[0]
    with pytest.raises(SpecError, match="'scores' must be one of"):
        make_spec(scores="softmax")


# -- 5. prebuilt graphs checked against the spec --------------------------------------------


def test_5_outputs_and_input_size_are_checked_when_the_model_is_opened(tmp_path):
    artifact = flatten_onnx(tmp_path / "flat.onnx")
    with pytest.raises(SpecError) as caught:
        zoo.get(flatten_spec(artifact, outputs=("logits",)))
    message = str(caught.value)
    assert "plugin 'mine'" in message and "model 'flat'" in message
    assert "['logits']" in message and "['scores']" in message
    with pytest.raises(SpecError, match=r"shape \['N', 1, 3, 3\], but the ONNX file's input 'input' has shape "
                                        r"\['N', 1, 2, 2\]"):
        zoo.get(flatten_spec(artifact, preprocess=zoo.Preprocess(channels="GRAY", resize=(3, 3))))


# -- 6. raw errors -------------------------------------------------------------------------


def test_6_shapes_plugin_failures_and_arguments_give_the_zoos_errors(tmp_path):
    artifact = flatten_onnx(tmp_path / "flat.onnx")
    model = zoo.get(flatten_spec(artifact))
    with pytest.raises(ZooInputError, match=r"takes input batches of shape \(N, 1, 2, 2\).*got \(1, 3, 2, 2\)"):
        model.run(np.zeros((1, 3, 2, 2), np.float32))

    def broken(spec, outputs):
        raise KeyError(105)

    failing = zoo.get(flatten_spec(artifact, postprocess=broken))
    with pytest.raises(PluginError, match="plugin 'mine' failed to postprocess the outputs of model 'flat'") as caught:
        failing.predict(np.zeros((2, 2), np.uint8))
    assert isinstance(caught.value.__cause__, KeyError)
    spec = flatten_spec(artifact)
    for arguments in ({"batch_size": 0}, {"threads": -3}, {"runtime": "tensorrt"}, {"providers": ["NoSuchProvider"]}):
        with pytest.raises(UsageError) as caught:
            zoo.get(spec, **arguments)
        assert isinstance(caught.value, ValueError)
    with pytest.raises(UsageError, match="topk must be an integer of at least 1, got 0"):
        model.predict(np.zeros((2, 2), np.uint8), topk=0)
    result = no_traceback(run_zoo("predict", "digits", str(SAMPLE), "-k", "0"))
    assert result.returncode == 2 and "zoo: error: --topk must be an integer of at least 1, got 0" in result.stderr


# -- 7. plugin loading through pluggy --------------------------------------------------------


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def test_7_helpers_named_zoo_something_are_not_hooks_and_wrappers_are_called():
    @zoo.hookimpl
    def zoo_register_models(register):
        register(make_spec("plain"))

    @zoo.hookimpl(wrapper=True)
    def wrapping(register):
        register(make_spec("wrapped"))
        return (yield)

    registry = registry_with(
        helpers=_module("zoo_helpers_user", zoo_register_models=zoo_register_models, zoo_helpers=object(),
                        zoo_DEFAULTS={"size": 3}),
        wrapper=_module("zoo_wrapper", zoo_register_models=wrapping))
    assert registry.names() == ["plain", "wrapped"]
    assert all(info.error is None for info in registry.plugin_manager.infos.values())


def test_7_register_takes_one_spec_and_only_while_the_hook_runs():
    kept = []

    @zoo.hookimpl
    def impersonating(register):
        register(make_spec("mine"), "victim")

    @zoo.hookimpl
    def keeping(register):
        kept.append(register)

    registry = registry_with(bad=_module("zoo_bad", zoo_register_models=impersonating),
                             keeper=_module("zoo_keeper", zoo_register_models=keeping))
    assert "TypeError" in str(registry.plugin_manager.infos["bad"].error) and len(registry) == 0
    with pytest.raises(PluginError, match="register\\(\\) was called after zoo_register_models returned"):
        kept[0](make_spec("late"))
    assert "late" not in registry


# -- 8. small API defects ---------------------------------------------------------------------


def test_8_zoo_plugins_is_the_module_and_specs_hash_and_cover_prints_and_ranges_broadcast(tmp_path):
    result = run_zoo(code="import zoo.plugins; print(zoo.plugins.PluginManager.__name__, len(zoo.list_plugins()))")
    assert result.returncode == 0 and result.stdout.startswith("PluginManager"), result.stderr
    spec = make_spec("a", metrics={"acc@1": 1.0}, extra={"k": [1]})
    assert {spec, dataclasses.replace(spec)} == {spec}
    pre = zoo.Preprocess(resize="cover", crop=(8, 8), mean=(0.5,), std=(0.5, 0.1, 0.2))
    assert _normalised_range(make_spec(preprocess=pre)) == pytest.approx(((0 - 0.5) / 0.1, (1 - 0.5) / 0.1))
    cover = make_spec("cover", preprocess=pre)

    @zoo.hookimpl
    def zoo_register_models(register):
        register(cover)

    import zoo.registry as registry_module

    registry = registry_with(c=_module("zoo_c", zoo_register_models=zoo_register_models))
    original = registry_module._default
    registry_module._default = registry
    try:
        out = subprocess_free_info("cover")
    finally:
        registry_module._default = original
    assert "scaled to cover the crop" in out and "cxo" not in out


def subprocess_free_info(name: str) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(["info", name]) == 0
    return buffer.getvalue()


# -- 9 and 10. readers, removers and shared downloads ----------------------------------------


def test_9_cache_rm_waits_for_a_reader_that_is_opening_the_entry_and_prune_skips_it():
    folder = zoo.get("digits").path.parent
    with cache.reading(folder):
        assert main_in_child("cache", "prune").returncode == 0
        assert folder.exists()
        child = subprocess.Popen([sys.executable, "-m", "zoo.cli", "cache", "rm", "digits"], env=os.environ.copy(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert child.poll() is None and folder.exists()  # waiting for the reader
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and "removed digits/" in out and not folder.exists()


def main_in_child(*args: str) -> subprocess.CompletedProcess[str]:
    return no_traceback(run_zoo(*args))


def test_9_an_entry_removed_just_before_it_is_opened_is_built_again(monkeypatch):
    from zoo import model as model_module

    real = model_module.prepare
    calls = []

    def prepare_then_remove(*args, **kwargs):
        spec, converted = real(*args, **kwargs)
        if not calls:
            shutil.rmtree(converted.path.parent)  # `zoo cache rm` in another process, at the worst moment
        calls.append(1)
        return spec, converted

    monkeypatch.setattr(model_module, "prepare", prepare_then_remove)
    model = zoo.get("digits")
    assert len(calls) == 2 and model.predict(str(SAMPLE)).label == "3"


def test_10_two_specs_sharing_one_downloaded_prebuilt_file(tmp_path):
    data = DIGITS_ONNX.read_bytes()
    with FileServer() as server:
        artifact = zoo.Artifact(url=server.add("shared.onnx", data), sha256=hashlib.sha256(data).hexdigest())
        spec = zoo_digits.load_spec()
        first = zoo.get(dataclasses.replace(spec, onnx=artifact))
        second = zoo.get(dataclasses.replace(spec, name="digits-again", onnx=artifact))
        assert len(server.requests) == 1
    assert cache.download_path("shared.onnx", artifact.sha256).exists()
    assert first.path.read_bytes() == second.path.read_bytes() == data


def test_10_prune_downloads_skips_a_file_in_use():
    data = DIGITS_ONNX.read_bytes()
    artifact = zoo.Artifact(url=DIGITS_ONNX.as_uri(), sha256=hashlib.sha256(data).hexdigest())
    with download.fetched(artifact) as path:  # as an export holds the weights it reads
        assert main_in_child("cache", "prune", "--downloads").returncode == 0
        assert path.exists()
    assert main_in_child("cache", "prune", "--downloads").returncode == 0
    assert not path.exists()


# -- 11 and 12. cleanup errors, stale metadata, lock waits ----------------------------------


def test_11_cleanup_failure_does_not_hide_the_export_error(monkeypatch):
    from zoo import convert

    def failing_export(*args, **kwargs):
        raise zoo.ExportError("the real problem")

    def rmdir(self):
        raise OSError("directory not empty")

    monkeypatch.setattr(convert, "_export", failing_export)
    monkeypatch.setattr(Path, "rmdir", rmdir)
    with pytest.raises(zoo.ExportError, match="the real problem"):
        zoo.get(make_spec("exported", build=lambda spec, weights: None))


def test_11_refreshed_records_use_the_metadata_read_under_the_lock(monkeypatch):
    model = zoo.get("digits")
    folder = model.path.parent
    os.utime(model.path)  # a touch: the next open verifies by hash and records the new time
    real = cache.locked

    @__import__("contextlib").contextmanager
    def locked_after_a_rewrite(target, *args, **kwargs):
        with real(target, *args, **kwargs):
            data = json.loads((folder / cache.METADATA_FILE).read_text())
            data["created"] = "rewritten by another process"
            (folder / cache.METADATA_FILE).write_text(json.dumps(data))
            yield

    monkeypatch.setattr(cache, "locked", locked_after_a_rewrite)
    again = zoo.get("digits")
    assert again.metadata["created"] == "rewritten by another process"
    assert json.loads((folder / cache.METADATA_FILE).read_text())["created"] == "rewritten by another process"


WAITER = """
import zoo, zoo.cache
zoo.cache.LOCK_LOG_INTERVAL = 0.3
print(zoo.get("digits").predict(r"{sample}").label)
"""


def test_12_a_waiter_waits_as_long_as_the_holder_works_and_names_the_model():
    spec = zoo_digits.load_spec()
    folder = cache.entry_dir("digits", make_key(plan(spec, None, plugin_version=default_registry().plugin_manager
                                                      .infos["digits"].version)))
    folder.mkdir(parents=True)
    with cache.locked(folder):
        child = subprocess.Popen([sys.executable, "-c", WAITER.format(sample=SAMPLE)], env=os.environ.copy(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        assert child.poll() is None
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "3", err
    assert "waiting for another process to finish digits (" in err and " s so far)" in err
    with cache.locked(folder):
        timed = run_zoo("predict", "digits", str(SAMPLE), env={"ZOO_LOCK_TIMEOUT": "0.5", "ZOO_CACHE_DIR":
                                                                   str(cache.cache_root() / "other")})
    assert timed.returncode == 0  # another cache: another lock
    shutil.rmtree(folder)
    with cache.locked(folder):
        timed = no_traceback(run_zoo("predict", "digits", str(SAMPLE), env={"ZOO_LOCK_TIMEOUT": "0.5"}))
    assert timed.returncode == 1 and "working on digits for over 0.5 s (ZOO_LOCK_TIMEOUT)" in timed.stderr
    bad = no_traceback(run_zoo("predict", "digits", str(SAMPLE), env={"ZOO_LOCK_TIMEOUT": "soon"}))
    assert bad.returncode == 2 and "ZOO_LOCK_TIMEOUT must be a number of seconds" in bad.stderr


def test_12_prune_and_clear_remove_unused_lock_files():
    zoo.get("digits")
    locks = cache.cache_root() / "locks"
    assert list(locks.glob("*.lock"))
    assert main_in_child("cache", "prune").returncode == 0
    assert not list(locks.glob("*.lock")) and cache.entries("digits")[0].ok
    zoo.get("digits")  # rebuilt locks still work, and reading recreates them
    assert main_in_child("cache", "clear", "--yes").returncode == 0
    assert not list(locks.glob("*.lock")) and not cache.entries()


# -- 13. unusable caches ---------------------------------------------------------------------


def read_only(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``zoo ARGS`` with ``folder`` read-only: a read-only bind mount as root, file modes otherwise."""
    if os.geteuid() == 0:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], check=False).returncode:
            pytest.skip("a read-only folder needs unshare as root (chmod does not stop root)")
        command = (f"mount --bind -o ro {shlex_quote(folder)} {shlex_quote(folder)} && exec {shlex_quote(sys.executable)}"
                   f" -m zoo.cli {' '.join(map(shlex_quote, args))}")
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", command],
                              capture_output=True, text=True, timeout=120, env=os.environ.copy(), check=False)
    modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)
    try:
        return run_zoo(*args)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def shlex_quote(value: object) -> str:
    import shlex

    return shlex.quote(str(value))


def test_13_a_cache_folder_that_is_a_file_or_read_only_gives_a_clear_error(tmp_path, monkeypatch):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    result = no_traceback(run_zoo("predict", "digits", str(SAMPLE), env={"ZOO_CACHE_DIR": str(a_file)}))
    assert result.returncode == 1 and f"cannot write to the cache at {a_file}" in result.stderr
    assert "ZOO_CACHE_DIR is set to it" in result.stderr
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    monkeypatch.setenv("ZOO_CACHE_DIR", str(empty))
    result = no_traceback(read_only(empty, "predict", "digits", str(SAMPLE)))
    assert result.returncode == 1 and f"cannot write to the cache at {empty}" in result.stderr, result.stderr
    out = tmp_path / "out"
    out.mkdir()
    exported = no_traceback(read_only(out, "export", "digits", "-o", str(out)))
    assert exported.returncode == 1 and f"cannot write the model to {out / 'digits.onnx'}" in exported.stderr


def test_13_a_populated_read_only_cache_keeps_serving():
    zoo.get("digits")
    root = cache.cache_root()
    for args in (("predict", "digits", str(SAMPLE)), ("list",), ("info", "digits"), ("cache", "verify")):
        result = no_traceback(read_only(root, *args))
        assert result.returncode == 0, (args, result.stderr)
    assert ".png: 3 " in no_traceback(read_only(root, "predict", "digits", str(SAMPLE))).stdout


# -- 14. cache identity ----------------------------------------------------------------------


def test_14_list_shows_what_each_entry_was_built_from_rm_takes_one_key_and_prune_drops_superseded(tmp_path):
    current = zoo.get("digits")
    changed = onnx.load(str(DIGITS_ONNX))
    changed.doc_string = "an older release of the plugin shipped this file"
    onnx.save(changed, tmp_path / "digits.onnx")
    older = dataclasses.replace(zoo_digits.load_spec(), onnx=zoo.Artifact(
        url=(tmp_path / "digits.onnx").as_uri(), sha256=hashlib.sha256((tmp_path / "digits.onnx").read_bytes())
        .hexdigest()))
    superseded = zoo.get(older)
    listing = json.loads(run_zoo("cache", "list", "--json").stdout)["models"]
    assert {m["id"] for m in listing} == {f"digits/{current.path.parent.name}", f"digits/{superseded.path.parent.name}"}
    table = run_zoo("cache", "list").stdout
    assert f"digits/{current.path.parent.name}" in table and "prebuilt digits.onnx (31773508)" in table
    assert "digits/" in subprocess_free_info("digits") and "prebuilt digits.onnx" in subprocess_free_info("digits")
    registry = default_registry()
    kept = {e.key: is_current(e, registry) for e in cache.entries("digits")}
    assert kept == {current.path.parent.name: True, superseded.path.parent.name: False}
    assert main_in_child("cache", "prune").returncode == 0
    assert [e.key for e in cache.entries("digits")] == [current.path.parent.name]
    zoo.get(older)
    removed = main_in_child("cache", "rm", f"digits/{superseded.path.parent.name}")
    assert removed.returncode == 0 and [e.key for e in cache.entries("digits")] == [current.path.parent.name]


# -- 15. images ------------------------------------------------------------------------------


def test_15_a_format_pillow_cannot_size_is_refused_before_decoding():
    radiance = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(64)
    with pytest.raises(ZooInputError, match="not an image format the zoo reads"):
        images.decode(radiance, "huge.hdr")
    with pytest.raises(ZooInputError, match="not an image format the zoo reads"):
        images.decode(b"just some text, not a picture at all", "notes.jpg")


def test_15_the_pixel_cap_is_in_pixels_and_checked(monkeypatch):
    png = (np.zeros((300, 400, 3), np.uint8))
    import cv2

    data = cv2.imencode(".png", png)[1].tobytes()
    monkeypatch.setenv("ZOO_MAX_PIXELS", "100000")
    with pytest.raises(ZooInputError, match=r"400x300, 120,000 pixels, over the limit of 100,000 \(ZOO_MAX_PIXELS\)"):
        images.decode(data)
    monkeypatch.setenv("ZOO_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="ZOO_MAX_PIXELS must be a positive whole number of pixels"):
        images.decode(data)


DAMAGED = """
import sys, cv2, numpy as np
from zoo import images
from zoo.errors import ZooInputError
data = bytearray(cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes())
data[40] ^= 0xFF
jpeg = bytearray(cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes())
end = jpeg.rfind(b"\\xff\\xd9")
jpeg[end - 20:end - 20] = bytes(5)
for name, blob in (("bad.png", bytes(data)), ("odd.jpg", bytes(jpeg))):
    try:
        images.decode(blob, name)
        print("decoded", name)
    except ZooInputError as error:
        print(error)
print("after", file=sys.stderr)
"""


def test_15_codec_warnings_do_not_reach_the_terminal():
    result = run_zoo(code=DAMAGED)
    assert result.returncode == 0, result.stderr
    assert "bad.png" in result.stdout and "decoded odd.jpg" in result.stdout
    assert result.stderr == "after\n"  # no libpng error, no "Corrupt JPEG data", nothing of OpenCV's


# -- 16. image arguments are checked first ----------------------------------------------------


def test_16_predict_checks_every_image_argument_before_building_the_model(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = no_traceback(run_zoo("predict", "digits", str(SAMPLE), "typo.png", str(empty), "missing/*.png",
                                  "https://example.com/cat.jpg"))
    assert result.returncode == 1
    for part in ("'typo.png' does not exist", "holds no image files", "no file matches 'missing/*.png'",
                 "is a URL; URLs are not fetched"):
        assert part in result.stderr
    assert not (cache.cache_root() / "models").exists()


# -- 17. no network ------------------------------------------------------------------------


def test_17_a_host_that_does_not_resolve_fails_at_once_with_advice():
    artifact = zoo.Artifact(url="https://weights.invalid/model.pth", sha256="ab" * 32)
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download.fetch(artifact, policy=download.Policy(backoff=1.0))
    assert time.monotonic() - started < 5  # no retries with backoff
    message = str(caught.value)
    for part in ("https://weights.invalid/model.pth", "does not resolve", "ZOO_OFFLINE=1", "ZOO_MIRROR",
                 "zoo.get(..., weights=FILE)", str(cache.download_path("model.pth", "ab" * 32))):
        assert part in message


def test_17_retry_warnings_are_one_short_line(caplog):
    data = b"weights" * 1000
    with FileServer() as server:
        artifact = zoo.Artifact(url=server.add("w.pth", data), sha256=hashlib.sha256(data).hexdigest())
        server.set_mode("error-then-ok")
        with caplog.at_level(logging.WARNING, logger="zoo"):
            download.fetch(artifact, policy=download.Policy(backoff=0.01))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("\n" not in w and len(w) < 120 for w in warnings), warnings


# -- 19 and 20. logging and progress ---------------------------------------------------------


LOGGING = """
import logging, sys, zoo.cli, zoo.cli.models
listed = zoo.cli.models.cmd_list
def cmd_list(args):  # 'zoo list', logging as the zoo and another library do while a command runs
    logging.getLogger("another.library").warning("LEAKED")
    logging.getLogger("zoo.test").info("OURS")
    return listed(args)
zoo.cli.models.cmd_list = cmd_list
status = zoo.cli.main(sys.argv[1:])
print(status, len(logging.getLogger().handlers), len(logging.getLogger("zoo").handlers))
"""


def test_19_the_command_configures_only_the_zoo_logger():
    result = run_zoo("list", "digits", code=LOGGING)
    assert result.stdout.splitlines()[-1] == "0 0 0"  # no handler on the root logger, none left on the zoo's
    assert "zoo: OURS" in result.stderr and "zoo: LEAKED" not in result.stderr
    quiet = run_zoo("-q", "list", "digits", code=LOGGING)
    assert "OURS" not in quiet.stderr
    predicted = run_zoo("predict", "digits", str(SAMPLE), "-v")
    assert predicted.returncode == 0 and "\x1b[" not in predicted.stderr


def test_20_jsonl_streams_one_object_per_image_and_the_bar_is_for_terminals_only(tmp_path):
    samples = sorted(SAMPLE.parent.glob("*.png"))
    result = no_traceback(run_zoo("predict", "digits", *map(str, samples), "--jsonl"))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in rows] == list(map(str, samples))
    assert [r["result"]["label"] for r in rows] == [p.stem for p in samples]
    assert "image/s" not in result.stderr and "%|" not in result.stderr  # piped: no bar
    code, output = run_zoo_at_terminal("predict", "digits", "--batch-size", "1", *map(str, samples * 20))
    assert code == 0 and sum(output.count(f"{p}: ".encode()) for p in samples) == 200  # results, above the bar
    assert b"image/s]" in output, output[-2000:]


# -- 21. command line --------------------------------------------------------------------------


def test_21_filters_suggestions_and_hints():
    by_distribution = json.loads(run_zoo("list", "--plugin", "zoo-digits", "--json").stdout)
    assert [r["name"] for r in by_distribution] == ["digits"]
    assert [r["name"] for r in json.loads(run_zoo("list", "--task", "IMAGE-Classification", "digits",
                                                  "--json").stdout)] == ["digits"]
    assert "try '*igit*'" in run_zoo("list", "igit").stderr
    missing = no_traceback(run_zoo("cache", "verify", "nothing-like-it"))
    assert missing.returncode == 1 and "'nothing-like-it' has nothing in the cache" in missing.stderr
    url = no_traceback(run_zoo("export", "digits", "--weights", "https://example.com/w.pth"))
    assert url.returncode == 1 and "--sha256" in url.stderr
    runtime = no_traceback(run_zoo("predict", "digits", str(SAMPLE), "--threads", "1", "--providers",
                                   "CPUExecutionProvider"))
    assert runtime.returncode == 0 and ".png: 3 100.00%" in runtime.stdout
    exported = no_traceback(run_zoo("export", "digits", "--threads", "1", "--providers", "CPUExecutionProvider"))
    assert exported.returncode == 0 and "opens on  CPUExecutionProvider" in exported.stdout
    hint = no_traceback(run_zoo("info", "resnet50", env={"ZOO_LOAD_PLUGINS": "digits"}))
    if "is not installed" in hint.stderr:
        assert "pip install ./plugins/zoo-torchvision" in hint.stderr


# -- the command line never shows a traceback for these ------------------------------------------


@pytest.mark.parametrize("args", [
    ("predict", "digits", "nope.png"),
    ("predict", "digits", str(SAMPLE), "--batch-size", "0"),
    ("predict", "digits", str(SAMPLE), "--threads", "-3"),
    ("predict", "digits", str(SAMPLE), "--providers", "NoSuchProvider"),
    ("predict", "digits", str(SAMPLE), "--labels", "no-such-labels.txt"),
    ("predict", "digits", str(DIGITS_ONNX)),
    ("predict", "no-such-model", str(SAMPLE)),
    ("export", "digits", "--opset", "18"),
    ("export", "digits", "--weights", "imagenet1k_v9"),
    ("cache", "rm", "../etc"),
    ("cache", "verify", "nothing"),
    ("cache", "clear"),
    ("info", "resnet-50"),
])
def test_no_traceback_on_the_command_line(args):
    result = no_traceback(run_zoo(*args))
    assert result.returncode in (1, 2) and result.stderr.startswith("zoo: error: ") or "zoo: error:" in result.stderr
