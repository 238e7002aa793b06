"""zoo-torchvision: every torchvision image classifier, with each of its weights variants.

Registration reads ``models.toml`` (generated from torchvision by ``generate_models.py``)
and imports neither torch nor torchvision; :func:`build` imports them when a model is
exported. The default weights of an architecture are registered under its bare name
(``resnet50``, alias ``resnet50.imagenet1k_v2``), the others as ``ARCH.TAG``
(``resnet50.imagenet1k_v1``).
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import zoo

__version__ = "0.1.0"

TASK = "image-classification"


def build(spec: zoo.ModelSpec, weights: Path | None) -> Any:
    """The torchvision model for ``spec`` in eval mode, with ``weights`` (a state-dict file) loaded.

    The model has as many classes as ``spec.labels``: ``zoo.get(name, weights="ft.pth",
    labels=[...])`` builds a model fine-tuned for other classes.
    """
    import torchvision

    info = spec.extra["torchvision"]
    model = torchvision.models.get_model(info["arch"], weights=None, num_classes=len(spec.labels),
                                         **info["builder_kwargs"])
    if weights is not None:
        zoo.load_weights(model, weights, what=spec.name)
    return model.eval()


def load_specs() -> list[zoo.ModelSpec]:
    """Build every spec from ``models.toml``."""
    data = tomllib.loads((files(__name__) / "models.toml").read_text(encoding="utf-8"))
    labels = tuple(data["categories"])
    specs = []
    for name, entry in data["models"].items():
        tag = entry["weights"].lower()
        acc = entry["metrics"]["acc@1"]
        specs.append(zoo.ModelSpec(
            name=name,
            aliases=(f"{entry['arch']}.{tag}",) if entry["default"] else (),
            task=TASK,
            summary=f"{entry['arch']} with torchvision's {entry['weights']} weights (ImageNet-1K top-1 {acc:.1f}%)",
            license=entry["license"],
            homepage=entry["recipe"],
            preprocess=zoo.Preprocess(
                resize=entry["resize"], crop=entry["crop"], interpolation=entry["interpolation"],
                antialias=entry["antialias"], mean=entry["mean"], std=entry["std"],
            ),
            labels=labels,
            weights=zoo.Artifact(url=entry["url"], sha256=entry["sha256"]),
            build=build,
            outputs=("logits",),
            metrics=entry["metrics"],
            extra={"torchvision": {"arch": entry["arch"], "weights": entry["weights"],
                                   "builder_kwargs": entry["builder_kwargs"], "version": data["torchvision"]}},
        ))
    return specs


@zoo.hookimpl
def zoo_register_models(register):  # type: ignore[no-untyped-def]
    for spec in load_specs():
        register(spec)
