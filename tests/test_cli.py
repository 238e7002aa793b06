"""The zoo command, run as a user runs it: in a fresh process."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from conftest import ROOT, run_zoo

import zoo


def test_list_imports_no_heavy_library():
    code = (
        "import sys, zoo.cli\n"
        "assert zoo.cli.main(['list']) == 0\n"
        "heavy = [m for m in ('torch', 'torchvision', 'onnxruntime', 'onnx', 'cv2') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = run_zoo(code=code)
    assert result.returncode == 0, result.stderr
    assert "resnet50" in result.stdout
    assert result.stdout.strip().endswith("HEAVY []")


def test_list_json_is_machine_readable():
    result = run_zoo("list", "resnet*", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows][:4] == ["resnet18", "resnet18-embedding", "resnet34", "resnet34-embedding"]
    assert all(r["installed"] and r["plugin"] == "torchvision" for r in rows)


def test_list_available_shows_what_to_install():
    result = run_zoo("list", "--available", "squeezenet*", env={"ZOO_LOAD_PLUGINS": ""})
    assert result.returncode == 0, result.stderr
    assert "squeezenet1_0" in result.stdout and "pip install ./plugins/zoo-torchvision" in result.stdout
    plain = run_zoo("list", "squeezenet*", env={"ZOO_LOAD_PLUGINS": ""})
    assert "squeezenet1_0" not in plain.stdout and "--available" in plain.stderr


def test_list_filters_by_task_and_plugin():
    rows = json.loads(run_zoo("list", "--task", "image-classification", "--plugin", "torchvision", "--json").stdout)
    assert len(rows) == len(zoo.list_models(task="image-classification", plugin="torchvision")) > 100
    assert json.loads(run_zoo("list", "--task", "age-estimation", "--plugin", "torchvision", "--json").stdout) == []


def test_info_text_and_json():
    text = run_zoo("info", "ResNet50")
    assert text.returncode == 0, text.stderr
    assert "shorter side to 232" in text.stdout and "labels     1000" in text.stdout
    assert "not cached" in text.stdout
    data = json.loads(run_zoo("info", "resnet50.imagenet1k_v1", "--json").stdout)
    assert data["preprocess"]["resize"] == 256 and data["num_labels"] == 1000
    assert data["variants"] == ["resnet50", "resnet50.imagenet1k_v1"]
    assert data["weights"]["url"].endswith("resnet50-0676ba61.pth") and data["weights"]["sha256"] == "0676ba61"
    assert data["cache"]["entries"] == []


def test_unknown_model_is_one_line_and_nonzero():
    result = run_zoo("info", "resnet-50")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: unknown model 'resnet-50'")
    assert "did you mean 'resnet50'" in lines[0]


def test_plugins_lists_distribution_version_and_hooks():
    rows = json.loads(run_zoo("plugins", "--json").stdout)
    tv = next(r for r in rows if r["name"] == "torchvision")
    assert tv["distribution"] == "zoo-torchvision" and tv["version"] == importlib.metadata.version("zoo-torchvision")
    assert tv["hooks"] == ["zoo_register_models"] and tv["models"] > 100 and tv["error"] is None
    table = run_zoo("plugins").stdout
    assert "zoo-torchvision" in table and "zoo_register_models" in table


def test_version_and_help_on_every_command():
    assert run_zoo("--version").stdout.strip() == f"zoo {zoo.__version__}"
    top = run_zoo("--help")
    assert top.returncode == 0 and "ZOO_CACHE_DIR" in top.stdout
    for command in ("list", "info", "plugins"):
        result = run_zoo(command, "--help")
        assert result.returncode == 0 and "--json" in result.stdout, command


def test_usage_errors_exit_2_and_a_bare_zoo_prints_the_help():
    bare = run_zoo()
    assert bare.returncode == 0 and "COMMAND" in bare.stdout and "predict" in bare.stdout
    assert run_zoo("frobnicate").returncode == 2


@pytest.mark.parametrize("env", [{"ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}, {"ZOO_LOAD_PLUGINS": ""}])
def test_no_plugins_loaded(env):
    result = run_zoo("list", env=env)
    assert result.returncode == 0 and result.stdout == ""
    result = run_zoo("info", "resnet50", env=env)
    assert result.returncode == 1 and "installed but was not loaded" in result.stderr


def served_load_error(name: str, env: dict[str, str]) -> str:
    """``zoo serve NAME``'s load error: a model named at start that cannot load stops the server, saying why."""
    result = run_zoo("serve", name, "--port", "0", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_27_10_download_advice_names_only_the_options_the_command_has(tmp_path):
    """A download that fails advises a local file with --weights FILE only in commands that have --weights; the
    library says weights=."""
    if "resnet18" not in zoo.list_models():
        pytest.skip("needs zoo-torchvision (a model whose weights are downloaded)")
    unreachable = {"ZOO_MIRROR": "http://zoo-test.invalid/"}
    sample = str(ROOT / "plugins" / "zoo-digits" / "samples" / "3.png")
    for args, has_weights in ((["pull", "resnet18"], True),
                              (["bundle", "export", "resnet18", "-o", str(tmp_path / "m.zoo")], True),
                              (["predict", "resnet18", sample], True), (["export", "resnet18"], True)):
        result = run_zoo(*args, env=unreachable)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "the host name does not resolve" in result.stderr and "ZOO_OFFLINE=1" in result.stderr
        assert ("pass a local file with --weights FILE" in result.stderr) == has_weights, (args, result.stderr)
        assert "weights=" not in result.stderr, args
    served = served_load_error("resnet18", unreachable)
    assert "does not resolve" in served and "weights=" not in served, served
    code = ("import zoo\ntry:\n    zoo.get('resnet18')\nexcept zoo.DownloadError as error:\n    print(error)")
    library = run_zoo(code=code, env=unreachable)
    assert "pass a local file with zoo.get(..., weights=FILE)" in library.stdout and "--weights" not in library.stdout


def test_main_in_process_puts_the_zoo_logger_back_as_it_was(capsys):
    import logging

    from zoo.cli import main

    logger = logging.getLogger("zoo")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(["-v", "list", "resnet50"]) == 0 and main(["list", "resnet50"]) == 0
    assert (list(logger.handlers), logger.level, logger.propagate) == before  # no handler left on a closed stream
    assert "resnet50" in capsys.readouterr().out
