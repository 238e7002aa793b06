"""Registry: lookup, aliases, globs, duplicates, failure isolation, plugin selection."""

from __future__ import annotations

import types

import pytest
from conftest import make_spec, registry_with

import zoo
from zoo.errors import (
    AmbiguousModelError,
    DuplicateModelError,
    PluginNotInstalledError,
    SpecError,
    UnknownModelError,
    ZooError,
)
from zoo.plugins import PluginManager, Selection
from zoo.registry import Registry, natural_key


def plugin(*specs, fail_after: int | None = None):
    """A plugin object whose hook registers ``specs`` (and raises after ``fail_after`` of them)."""

    @zoo.hookimpl
    def zoo_register_models(register):
        for i, spec in enumerate(specs):
            if i == fail_after:
                raise RuntimeError("boom in the middle")
            register(spec)

    return types.SimpleNamespace(zoo_register_models=zoo_register_models)


def test_get_is_case_insensitive_and_follows_aliases():
    registry = registry_with(a=plugin(make_spec("resnet50", aliases=("resnet50.v2",))))
    spec = registry.get("ResNet50")
    assert spec.name == "resnet50" and spec.plugin == "a"
    assert registry.get(" RESNET50.V2 ") is spec
    assert "resnet50.v2" in registry and "resnet51" not in registry


def test_unknown_name_suggests_close_matches():
    registry = registry_with(a=plugin(make_spec("resnet50"), make_spec("resnet18"), make_spec("vgg16")))
    with pytest.raises(UnknownModelError) as info:
        registry.get("resnet-50")
    error = info.value
    assert isinstance(error, KeyError) and isinstance(error, ZooError)
    assert error.suggestions[0] == "resnet50" and "vgg16" not in error.suggestions
    assert "did you mean 'resnet50'" in str(error) and "zoo list" in str(error)


def test_catalogued_name_whose_plugin_is_missing_names_the_distribution():
    registry = registry_with()  # no plugin at all; the catalogue still knows torchvision's models
    with pytest.raises(PluginNotInstalledError) as info:
        registry.get("resnet50")
    assert info.value.distribution == "zoo-torchvision"
    assert "zoo-torchvision" in str(info.value)
    assert isinstance(info.value, UnknownModelError)
    names = [e.name for e in registry.not_installed("resnet5*")]
    assert names == ["resnet50", "resnet50-embedding", "resnet50-embedding.imagenet1k_v1", "resnet50.imagenet1k_v1"]


def test_27_03_a_name_two_plugins_register_is_ambiguous_and_nothing_else_is_withdrawn():
    registry = registry_with(first=plugin(make_spec("tiny")), second=plugin(make_spec("other"), make_spec("tiny")))
    infos = registry.plugin_manager.infos
    assert "other" in registry and registry.get("other").plugin == "second"  # the rest of the plugin stays
    with pytest.raises(AmbiguousModelError) as raised:
        registry.get("tiny")
    assert isinstance(raised.value, KeyError) and raised.value.qualified == ("first:tiny", "second:tiny")
    assert "first:tiny, second:tiny" in str(raised.value)
    assert registry.get("second:tiny").plugin == "second" and registry.get("FIRST:Tiny").plugin == "first"
    assert registry.names("tiny") == ["first:tiny", "second:tiny"]
    assert infos["first"].error is None and infos["second"].error is None
    assert infos["first"].models == 1 and infos["second"].models == 2
    assert "ambiguous" in infos["first"].conflicts[0] and "second:tiny" in infos["first"].conflicts[0]


def test_alias_colliding_with_a_name_is_a_duplicate():
    registry = Registry()
    registry.register(make_spec("tiny"), "a")
    with pytest.raises(DuplicateModelError, match="'a' and plugin 'b'"):
        registry.register(make_spec("small", aliases=("tiny",)), "b")
    with pytest.raises(DuplicateModelError, match="registers the model name 'x' twice"):
        registry.register_all([make_spec("x"), make_spec("y", aliases=("x",))], "c")
    assert "y" not in registry and len(registry) == 1


def test_bad_registration_names_plugin_and_field():
    registry = registry_with(bad=plugin(make_spec("fine"), {"name": "not a spec"}))
    error = registry.plugin_manager.infos["bad"].error
    assert isinstance(error.cause, SpecError) and error.cause.plugin == "bad"
    assert "plugin 'bad'" in str(error) and "'spec'" in str(error)

    @zoo.hookimpl
    def zoo_register_models(register):
        register(make_spec("ok"))
        register(make_spec("broken", task="Bad Task"))

    registry = registry_with(worse=types.SimpleNamespace(zoo_register_models=zoo_register_models))
    error = registry.plugin_manager.infos["worse"].error
    assert "plugin 'worse'" in str(error) and "model 'broken'" in str(error) and "field 'task'" in str(error)
    assert len(registry) == 0


def test_a_plugin_failing_midway_is_withdrawn_and_others_keep_working():
    registry = registry_with(
        good=plugin(make_spec("a1"), make_spec("a2")),
        flaky=plugin(make_spec("b1"), make_spec("b2"), fail_after=1),
    )
    assert registry.names() == ["a1", "a2"]
    error = registry.plugin_manager.infos["flaky"].error
    assert "boom in the middle" in str(error) and "RuntimeError" in str(error)


def test_unknown_hook_is_reported_as_a_plugin_error():
    @zoo.hookimpl
    def zoo_register_model(register):  # typo: the hook is zoo_register_models
        pass

    registry = registry_with(typo=types.SimpleNamespace(zoo_register_model=zoo_register_model))
    error = registry.plugin_manager.infos["typo"].error
    assert "zoo_register_model" in str(error) and "not a zoo hook" in str(error)


def test_hook_with_wrong_argument_is_rejected_at_load():
    @zoo.hookimpl
    def zoo_register_models(registar):
        pass

    registry = registry_with(wrong=types.SimpleNamespace(zoo_register_models=zoo_register_models))
    assert "registar" in str(registry.plugin_manager.infos["wrong"].error)


def test_names_globs_filters_and_natural_sort():
    specs = [make_spec(n) for n in ("resnet152", "resnet18", "resnet50", "resnet101", "resnext50", "vgg16")]
    specs.append(make_spec("age", task="age-estimation", postprocess=lambda outputs: []))
    registry = registry_with(p=plugin(*specs))
    assert registry.names("resnet*") == ["resnet18", "resnet50", "resnet101", "resnet152"]
    assert registry.names("RESNE*50") == ["resnet50", "resnext50"]
    assert registry.names(["vgg*", "age"]) == ["age", "vgg16"]
    assert registry.names(task="age-estimation") == ["age"]
    assert registry.names(plugin="nobody") == []
    assert sorted(["b10", "b9", "a"], key=natural_key) == ["a", "b9", "b10"]


def test_variants_share_the_architecture():
    registry = registry_with(p=plugin(make_spec("net", aliases=("net.v2",)), make_spec("net.v1"), make_spec("netx")))
    assert registry.variants("net.v1") == ["net", "net.v1"]


@pytest.mark.parametrize(
    ("env", "autoload", "only"),
    [
        ({}, True, None),
        ({"ZOO_LOAD_PLUGINS": "a, b,"}, True, {"a", "b"}),
        ({"ZOO_LOAD_PLUGINS": ""}, True, set()),
        ({"ZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}, False, None),
        ({"ZOO_DISABLE_PLUGIN_AUTOLOAD": "0"}, True, None),
    ],
)
def test_selection_from_env(env, autoload, only):
    selection = Selection.from_env(env)
    assert selection.autoload is autoload
    assert selection.only == (None if only is None else frozenset(only))


def test_the_public_api_uses_the_installed_plugins():
    # zoo-torchvision is installed in the test environment (see the README's test command).
    assert "resnet50" in zoo.list_models("resnet*")
    assert zoo.get_spec("ResNet50.IMAGENET1K_V1").name == "resnet50.imagenet1k_v1"
    assert any(p.name == "torchvision" and p.error is None for p in zoo.list_plugins())


def test_env_selection_applies_to_the_default_registry(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert zoo.list_models() == []
    from zoo.registry import reset_default_registry

    reset_default_registry()
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "zoo-torchvision")  # a distribution name works too
    assert len(zoo.list_models()) > 100


def test_plugin_manager_reports_a_second_plugin_with_the_same_name():
    manager = PluginManager()
    manager.add_plugin(plugin(make_spec("a")), "same", distribution="dist-one")
    info = manager.add_plugin(plugin(make_spec("b")), "same", distribution="dist-two")
    assert info.error is not None and "same" in str(info.error)
    assert [i.distribution for i in manager.failures()] == ["dist-two"]


def test_27_17_a_spec_of_an_unregistered_task_without_postprocess_is_refused_naming_the_tasks():
    registry = registry_with(vague=plugin(make_spec("fine"), make_spec("shapeless", task="depth-estimation")))
    error = registry.plugin_manager.infos["vague"].error
    assert isinstance(error.cause, SpecError) and error.cause.field == "task" and error.cause.model == "shapeless"
    assert "'depth-estimation'" in str(error) and "image-classification, image-embedding, instance-segmentation" in str(error)
    # With its own postprocessing, a task no plugin registers is fine: the spec says how to read the outputs.
    registry = registry_with(own=plugin(make_spec("deep", task="depth-estimation", postprocess=lambda outputs: [])))
    assert registry.get("deep").task == "depth-estimation"


def test_27_19_a_keypoint_pipeline_is_not_refused_by_the_decode_check():
    pipeline = zoo.ModelSpec(name="pose-pipeline", task="keypoint-detection", requires=("fine",),
                             run=lambda image: None)
    registry = registry_with(poses=plugin(make_spec("fine"), pipeline))
    assert registry.plugin_manager.infos["poses"].error is None
    assert registry.get("pose-pipeline").is_pipeline


def test_29_select_takes_names_qualified_names_and_globs_with_filters():
    registry = registry_with(first=plugin(make_spec("tiny"), make_spec("tinier"), make_spec("age", task="age-estimation",
                                                                                          postprocess=lambda outputs: [])),
                             second=plugin(make_spec("tiny")))
    assert registry.select(["first:tiny", "tin*"]) == ["first:tiny", "tinier", "second:tiny"]
    assert registry.select(None, task="age-estimation") == ["age"]
    assert registry.select(["second:tiny"], plugin="second") == ["second:tiny"]
    with pytest.raises(UnknownModelError):
        registry.select(["tinyy"])
    with pytest.raises(zoo.UsageError, match="no model matches zz\\* of task age-estimation"):
        registry.select(["zz*"], task="age-estimation")
