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


# -- issue 27, item 3: one plugin cannot take another's names ---------------------------------------------------

TAKES_A_NAME = """
    import zoo

    @zoo.hookimpl
    def zoo_register_models(register):
        for name in ("resnet18", "{own}", "{shared}"):
            register(zoo.ModelSpec(name=name, task="image-classification", summary="{dist}'s " + name,
                                   preprocess=zoo.Preprocess(resize=(8, 8)), build=print, labels=("a", "b")))
"""


@pytest.fixture(scope="module")
def rivals(plugin_site):
    return plugin_site({"zoo-broken": TAKES_A_NAME.format(own="brokennet", shared="twinnet", dist="broken"),
                        "zoo-zrival": TAKES_A_NAME.format(own="rivalnet", shared="twinnet", dist="zrival")})


def test_27_03_a_third_party_name_conflict_affects_only_the_conflicting_models(rivals):
    listed = json.loads(zoo_with(rivals, "list", "--json").stdout)
    by_name = {row["name"]: row for row in listed}
    # zoo-torchvision keeps every model and its names; the rivals keep their other models.
    assert sum(row["plugin"] == "torchvision" for row in listed) >= 133
    assert by_name["resnet18"]["plugin"] == "torchvision"
    assert {"brokennet", "rivalnet", "broken:resnet18", "zrival:resnet18", "broken:twinnet", "zrival:twinnet"} <= set(
        by_name)
    assert "twinnet" not in by_name  # two third parties: the bare name chooses neither
    shown = zoo_with(rivals, "list", "resnet18")
    assert shown.returncode == 0 and shown.stdout.splitlines()[1].split()[:3] == ["resnet18", "image-classification",
                                                                                  "torchvision"]

    # Qualified names work in every command; the ambiguous bare name names both qualified ones.
    info = json.loads(zoo_with(rivals, "info", "broken:resnet18", "--json").stdout)
    assert info["plugin"] == "broken" and info["summary"] == "broken's resnet18"
    assert json.loads(zoo_with(rivals, "info", "torchvision:resnet18", "--json").stdout)["plugin"] == "torchvision"
    ambiguous = zoo_with(rivals, "info", "twinnet")
    assert ambiguous.returncode != 0 and "Traceback" not in ambiguous.stderr
    assert "broken:twinnet" in ambiguous.stderr and "zrival:twinnet" in ambiguous.stderr
    assert zoo_with(rivals, "info", "zrival:twinnet").returncode == 0

    # zoo plugins reports each conflict on both sides, and no plugin failed.
    plugins = {row["name"]: row for row in json.loads(zoo_with(rivals, "plugins", "--json").stdout)}
    assert plugins["broken"]["error"] is None and plugins["broken"]["models"] == 3
    assert any("'resnet18' belongs to torchvision:resnet18" in line for line in plugins["broken"]["conflicts"])
    assert any("'resnet18'" in line for line in plugins["torchvision"]["conflicts"])
    assert any("ambiguous" in line and "twinnet" in line for line in plugins["zrival"]["conflicts"])
    table = zoo_with(rivals, "plugins").stdout
    assert "several plugins register" in table and "broken:resnet18" in table


def test_27_03_qualified_names_reach_the_model_through_the_api(rivals, monkeypatch):
    code = ("import sys, zoo; s = zoo.get_spec(sys.argv[1]); print(s.plugin, s.summary); "
            "print(zoo.list_models('twinnet'))")
    result = run_zoo("broken:twinnet", code=code, env={"PYTHONPATH": os.pathsep.join(
        filter(None, [str(rivals), os.environ.get("PYTHONPATH")]))})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["broken broken's twinnet", "['broken:twinnet', 'zrival:twinnet']"]


def test_27_03_qualified_names_keep_to_their_plugin_in_selection_variants_and_the_cache(rivals):
    code = """
import json, sys, zoo
from zoo.registry import default_registry
from zoo.model import _variant
registry = default_registry()
print(json.dumps({
    "select": registry.select(["broken:*"]),
    "variants": registry.variants("broken:resnet18"),
    "variant": _variant(registry, registry.get("broken:resnet18"), "default").plugin,
}))
try:
    registry.select(["zrival:twinnet"], plugin="broken")
except zoo.UsageError as error:
    print("filtered:", error)
"""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(rivals), os.environ.get("PYTHONPATH")]))}
    done = run_zoo(code=code, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout.splitlines()[0])
    assert data["select"] == ["brokennet", "broken:resnet18", "broken:twinnet"]
    assert data["variants"] == ["broken:resnet18"] and data["variant"] == "broken"
    assert done.stdout.splitlines()[1].startswith("filtered: no model matches zrival:twinnet from plugin broken")
    # zoo export of a qualified name builds that plugin's model (its build is print: it fails, naming it)
    exported = zoo_with(rivals, "export", "broken:resnet18", "--weights", "random")
    assert exported.returncode != 0 and "(plugin broken)" in exported.stderr and "Traceback" not in exported.stderr
