"""The hooks a zoo plugin can implement: the plugin author's manual.

A plugin is a module (usually the top-level module of a distribution named
``zoo-<name>``) that the zoo finds through an entry point in the group ``zoo``::

    # pyproject.toml of the distribution zoo-mymodels
    [project.entry-points.zoo]
    mymodels = "zoo_mymodels"

The entry point's name (``mymodels``) is the plugin's name: ``zoo plugins`` lists it and
``ZOO_LOAD_PLUGINS=mymodels`` selects it. In the module, decorate functions named after
the hooks below with :data:`zoo.hookimpl`; a hook implementation may accept only the
arguments it needs, in any order, as with pytest.

Rules every plugin keeps:

* **Import nothing heavy at module level.** The zoo imports every plugin to run even
  ``zoo list``, which must stay fast. Import torch, torchvision and friends inside the
  functions that need them (``ModelSpec.build``, ``ModelSpec.postprocess``).
* **Use only the public API**: names exported by ``zoo``.
* **Fail alone.** If a plugin's import or one of its hooks raises, the zoo reports it in
  ``zoo plugins`` and keeps every other plugin working. Whatever a failing hook had
  registered is withdrawn, so a plugin is either wholly there or wholly absent.

The zoo's own tasks are registered by :mod:`zoo.builtin_tasks` through the same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from zoo.spec import ModelSpec
    from zoo.tasks import Task

#: The pluggy project name, and the entry-point group plugins are found in.
PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook implementations with this marker (exported as ``zoo.hookimpl``).
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register the models this plugin provides.

    Call ``register(spec)`` once for each :class:`zoo.ModelSpec`. The zoo checks the
    spec there and then: ``register`` raises :class:`zoo.SpecError` for a value that is
    not a ``ModelSpec``, and :class:`zoo.DuplicateModelError` when the name or one of the
    aliases is taken, naming both plugins. Let those errors propagate: the zoo reports
    them against your plugin.

    Register every weights variant as its own spec: the default weights under the bare
    architecture name (``resnet50``, with the alias ``resnet50.imagenet1k_v2`` if you
    like) and the others as ``ARCH.TAG`` (``resnet50.imagenet1k_v1``).

    This hook runs on every ``zoo`` command, so it must be cheap: build specs from data
    (a TOML file shipped in the package, read with :mod:`tomllib`) and keep heavy work
    inside ``build`` and ``postprocess``, which run only when a model is used.

    Example::

        @zoo.hookimpl
        def zoo_register_models(register):
            register(zoo.ModelSpec(name="tiny", task="image-classification",
                                   preprocess=zoo.Preprocess(resize=(32, 32)),
                                   build=build_tiny, labels=("cat", "dog")))

    :param register: ``register(spec)``, to call once per :class:`zoo.ModelSpec`.
    :returns: nothing; what counts is what was passed to ``register``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       A spec may declare a dynamic input size, several named inputs, renamed outputs, a
       ``decode`` table for its task's default postprocessing, default ``options``, and
       ``requires`` with ``run`` for a pipeline of registered models.
    """


@hookspec
def zoo_register_tasks(register: Callable[[Task], None]) -> None:
    """Register new tasks: kinds of model with their own result type and postprocessing.

    Call ``register(task)`` once for each :class:`zoo.Task`. A spec whose ``task`` names
    it gets its default postprocessing, options, parity comparison and ``decode`` check.
    ``register`` raises :class:`zoo.DuplicateModelError` when the task's name is taken
    (the built-in tasks are ``image-classification``, ``object-detection``,
    ``instance-segmentation``, ``keypoint-detection``, ``semantic-segmentation``,
    ``regression`` and ``image-embedding``). Tasks are registered before any model, so a plugin may register a
    task and models of it.

    Example::

        @zoo.hookimpl
        def zoo_register_tasks(register):
            register(zoo.Task("depth-estimation", Depth, postprocess_depth,
                              summary="a distance per pixel", compare=compare_depth))

    :param register: ``register(task)``, to call once per :class:`zoo.Task`.
    :returns: nothing.

    .. versionadded:: 0.2
    """
