"""`zoo export` and `zoo cache ...` on zoo-torchvision's squeezenet1_1 with random local weights."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from conftest import run_zoo

from zoo import cache
from zoo.cli import main


@pytest.fixture(scope="module")
def squeezenet_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "squeezenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
    return path


def zoo_json(capsys, *args: str):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_export_prints_the_file_and_its_parity_in_a_fresh_process(squeezenet_weights, tmp_path):
    result = run_zoo("export", "squeezenet1_1", "--weights", str(squeezenet_weights), "-o", f"{tmp_path}/out/")
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "out" / "squeezenet1_1.onnx"
    assert f"file    {copy}" in result.stdout
    assert "torchscript exporter, opset 17, simplified with onnxsim" in result.stdout
    assert "logits: max abs diff" in result.stdout and "top-1 agreement 100%" in result.stdout
    assert "exporting squeezenet1_1" in result.stderr
    [entry] = cache.entries("squeezenet1_1")
    assert copy.read_bytes() == (entry.folder / "model.onnx").read_bytes()
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.stdout

    again = run_zoo("export", "squeezenet1_1", "--weights", str(squeezenet_weights))
    assert again.returncode == 0 and "exporting" not in again.stderr  # a cache hit

    code = (f"import sys, zoo; m = zoo.get('squeezenet1_1', weights={str(squeezenet_weights)!r}); "
            f"print(m.path, 'torch' in sys.modules, 'onnx' in sys.modules)")
    hit = run_zoo(code=code)
    assert hit.stdout.split() == [str(entry.folder / "model.onnx"), "False", "False"], hit.stderr


def test_cache_list_verify_rm(squeezenet_weights, capsys):
    exported = zoo_json(capsys, "export", "squeezenet1_1", "--weights", str(squeezenet_weights), "--opset", "18")
    assert exported["opset"] == 18 and exported["parity"]["logits"]["top1_agreement"] == 1.0

    listing = zoo_json(capsys, "cache", "list")
    assert [(m["name"], m["ok"], m["opset"], m["source"]) for m in listing["models"]] == [
        ("squeezenet1_1", True, 18, "export")]
    assert listing["dir"] == str(cache.cache_root())

    assert main(["cache", "verify"]) == 0
    assert "0 damaged" in capsys.readouterr().err

    path = cache.entries("squeezenet1_1")[0].folder / "model.onnx"
    stat = path.stat()
    path.write_bytes(bytes(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a replacement that keeps size and time
    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr()
    assert f"DAMAGED     {path}" in out.out and "1 damaged" in out.err

    assert main(["cache", "rm", "SqueezeNet1_1"]) == 0  # names resolve as everywhere else
    assert "removed" in capsys.readouterr().out
    assert cache.entries() == []
    assert main(["cache", "rm", "squeezenet1_1"]) == 1
    assert "has nothing in the cache" in capsys.readouterr().err


def test_info_shows_cache_state(squeezenet_weights, capsys):
    assert main(["info", "squeezenet1_1"]) == 0
    assert "not cached yet" in capsys.readouterr().out
    main(["export", "squeezenet1_1", "--weights", str(squeezenet_weights)])
    capsys.readouterr()
    info = zoo_json(capsys, "info", "squeezenet1_1")
    [entry] = info["cache"]["entries"]
    assert entry["ok"] and entry["exporter"] == "torchscript" and entry["size"] > 1_000_000


def test_prune_dry_run_then_prune(capsys):
    part = cache.cache_root() / "downloads" / "abcdef12-w.pth.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)
    assert main(["cache", "prune", "--dry-run"]) == 0
    assert f"would remove {part}" in capsys.readouterr().out and part.exists()
    assert main(["cache", "prune"]) == 0
    assert not part.exists()


@pytest.mark.parametrize(("name", "error"), [("../x", "is not a model name"), ("/etc", "is not a model name"),
                                             ("a/b/c", "is not a model name"), ("a/b", "has nothing in the cache")])
def test_cache_rm_refuses_paths(name, error, capsys):
    assert main(["cache", "rm", name]) == 1
    assert error in capsys.readouterr().err


def test_clear_needs_confirmation_without_a_terminal():
    (cache.cache_root() / "downloads").mkdir(parents=True)
    (cache.cache_root() / "downloads" / "abcdef12-w.pth").write_bytes(b"x")
    refused = run_zoo("cache", "clear")
    assert refused.returncode == 2 and "pass --yes" in refused.stderr
    assert cache.downloads()
    done = run_zoo("cache", "clear", "--yes")
    assert done.returncode == 0 and "freed" in done.stderr and not cache.downloads()


def test_cache_dir(capsys):
    assert main(["cache", "dir"]) == 0
    assert capsys.readouterr().out.strip() == str(cache.cache_root())
