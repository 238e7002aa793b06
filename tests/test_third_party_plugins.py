"""Real plugin distributions, built from source and pip-installed into a throwaway folder."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_zoo

GOOD = """
    import zoo

    def build(spec, weights):
        raise NotImplementedError("not needed to be listed")

    @zoo.hookimpl
    def zoo_register_models(register):
        for size in (8, 16, 32):
            register(zoo.ModelSpec(
                name=f"thirdnet{size}", task="image-classification",
                summary=f"a third-party {size}px classifier", license="MIT",
                preprocess=zoo.Preprocess(resize=(size, size)), build=build, labels=("yes", "no"),
            ))
"""

BROKEN_IMPORT = """
    raise ImportError("this plugin needs a library that is not installed")
"""

BROKEN_HOOK = """
    import zoo

    @zoo.hookimpl
    def zoo_register_models(register):
        register(zoo.ModelSpec(name="halfway", task="image-classification",
                               preprocess=zoo.Preprocess(resize=(8, 8)), build=print))
        {}["missing key"]
"""


@pytest.fixture(scope="module")
def site(plugin_site):
    return plugin_site({"zoo-thirdparty": GOOD, "zoo-brokenimport": BROKEN_IMPORT, "zoo-brokenhook": BROKEN_HOOK})


def zoo_with(site, *args, **env):
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return run_zoo(*args, env={"PYTHONPATH": path, **env})


def test_installed_plugin_models_appear_in_zoo_list(site):
    result = zoo_with(site, "list", "thirdnet*", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["thirdnet8", "thirdnet16", "thirdnet32"]
    assert {r["plugin"] for r in rows} == {"thirdparty"}
    # The first-party plugin keeps working beside it.
    assert "resnet50" in zoo_with(site, "list", "resnet50").stdout


def test_broken_plugins_do_not_take_the_others_down(site):
    result = zoo_with(site, "list", "thirdnet8")
    assert result.returncode == 0
    assert "thirdnet8" in result.stdout
    assert "halfway" not in zoo_with(site, "list").stdout  # withdrawn with its failing hook
    warnings = result.stderr
    assert "plugin 'brokenimport' failed to import" in warnings
    assert "plugin 'brokenhook' failed to register its models" in warnings

    plugins = {p["name"]: p for p in json.loads(zoo_with(site, "plugins", "--json").stdout)}
    assert "needs a library that is not installed" in plugins["brokenimport"]["error"]
    assert plugins["brokenimport"]["distribution"] == "zoo-brokenimport"
    assert "KeyError" in plugins["brokenhook"]["error"] and plugins["brokenhook"]["models"] == 0
    assert plugins["thirdparty"]["error"] is None and plugins["thirdparty"]["version"] == "1.2.3"
    assert plugins["thirdparty"]["models"] == 3
    table = zoo_with(site, "plugins").stdout
    assert "FAILED: plugin 'brokenimport' failed to import" in table


def test_load_plugins_selects_by_entry_point_or_distribution(site):
    only = zoo_with(site, "list", "--json", ZOO_LOAD_PLUGINS="thirdparty")
    assert {r["plugin"] for r in json.loads(only.stdout)} == {"thirdparty"}
    assert only.stderr == ""  # the broken plugins were not even imported
    by_dist = zoo_with(site, "list", "--json", ZOO_LOAD_PLUGINS="zoo-thirdparty,torchvision")
    assert {r["plugin"] for r in json.loads(by_dist.stdout)} == {"thirdparty", "torchvision"}
    none = zoo_with(site, "list", "--json", ZOO_DISABLE_PLUGIN_AUTOLOAD="1")
    assert json.loads(none.stdout) == []
    explicit = zoo_with(site, "list", "--json", ZOO_DISABLE_PLUGIN_AUTOLOAD="1", ZOO_LOAD_PLUGINS="thirdparty")
    assert len(json.loads(explicit.stdout)) == 3
