"""registry.toml agrees with what the first-party plugins register."""

from __future__ import annotations

import importlib.util

from conftest import ROOT

from zoo.catalogue import dump_catalogue, load_catalogue

spec = importlib.util.spec_from_file_location("update_catalogue", ROOT / "scripts" / "update_catalogue.py")
update_catalogue = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_catalogue)


def test_registry_toml_matches_the_first_party_plugins():
    expected = update_catalogue.first_party_catalogue()
    assert expected, "no first-party plugin is installed in the test environment"
    actual = load_catalogue()
    missing = sorted({e.name for e in expected} - set(actual))
    extra = sorted(set(actual) - {e.name for e in expected})
    assert not missing, f"registered but not catalogued (run scripts/update_catalogue.py): {missing[:10]}"
    assert not extra, f"catalogued but not registered (run scripts/update_catalogue.py): {extra[:10]}"
    for entry in expected:
        assert actual[entry.name] == entry, f"{entry.name} differs; run scripts/update_catalogue.py"


def test_registry_toml_is_exactly_what_the_script_writes():
    text = (ROOT / "registry.toml").read_text(encoding="utf-8")
    assert text == dump_catalogue(update_catalogue.first_party_catalogue())


def test_every_first_party_plugin_is_listed():
    plugins = update_catalogue.first_party_plugins()
    assert plugins == {"digits": "zoo-digits", "ssrnet": "zoo-ssrnet", "torchvision": "zoo-torchvision", "faces": "zoo-faces",
                       "ocr": "zoo-ocr", "timm": "zoo-timm"}


def test_32_1_an_owner_whose_names_one_plugin_has_is_one_entry():
    """zoo-timm's 3,000 Hub names are one entry, timm/*: a name of it says which distribution to install."""
    from conftest import registry_with

    from zoo.errors import PluginNotInstalledError

    catalogue = load_catalogue()
    assert "timm/*" in catalogue and not any(name.startswith("timm/") and name != "timm/*" for name in catalogue)
    registry = registry_with()  # no plugin installed
    for name in ("timm/resnet50.a1_in1k", "timm/anything-else"):
        try:
            registry.get(name)
        except PluginNotInstalledError as error:
            assert error.distribution == "zoo-timm"
        else:
            raise AssertionError(f"{name} was found without a plugin")
    assert [e.name for e in registry.not_installed("timm/*")] == ["timm/*"]


def test_the_wheel_carries_the_top_level_registry_toml_and_every_module(tmp_path):
    """registry.toml lives at the top of the repository; the wheel must still hold it as package data, and every
    module of the package (an editable install, as in CI, would hide a subpackage the wheel leaves out)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # Built from a copy without build/ and *.egg-info: setuptools takes files listed in a stale egg-info as package
    # data, which would hide a subpackage missing from pyproject.toml.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "plugins",
                                                                "tests", "bench", "docs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("onnx_zoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = archive.read("zoo/registry.toml").decode("utf-8")
        names = set(archive.namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "zoo").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert packaged == (ROOT / "registry.toml").read_text(encoding="utf-8")
    assert "[models." in packaged


def test_32_1_a_misspelt_name_of_a_loaded_owner_gets_suggestions_not_an_install_hint():
    import pytest

    import zoo
    from zoo.errors import PluginNotInstalledError, UnknownModelError

    if "timm/resnet50.a1_in1k" not in zoo.list_models("timm/resnet50*"):
        pytest.skip("zoo-timm is not installed")
    with pytest.raises(UnknownModelError) as raised:
        zoo.get_spec("timm/resnet50.a1_in1kk")
    assert not isinstance(raised.value, PluginNotInstalledError)
    assert "timm/resnet50.a1_in1k" in raised.value.suggestions
    from zoo.registry import default_registry

    assert not default_registry().not_installed("timm/*")  # its models are installed: nothing to install
