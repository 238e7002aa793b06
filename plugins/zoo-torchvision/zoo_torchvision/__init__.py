"""zoo-torchvision: every torchvision model for images, with each of its weights variants.

Classifiers, detectors (boxes, instance masks, human keypoints) and semantic segmenters.
Registration reads ``models.toml`` (generated from torchvision by ``generate_models.py``)
and imports neither torch nor torchvision; :func:`build` imports them when a model is
exported. The default weights of an architecture are registered under its bare name
(``resnet50``, alias ``resnet50.imagenet1k_v2``), the others as ``ARCH.TAG``
(``resnet50.imagenet1k_v1``).

Each classifier is also an ``image-embedding`` model (:func:`embedding_spec`): the same
network and weights without its last layer, returning the features that layer takes
(``resnet50-embedding``, 2048 values; ``resnet50-embedding.imagenet1k_v1``).
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import zoo

__version__ = "0.2.0"

#: What each task's published metrics are called in summaries, most telling first.
METRICS = {"image-classification": ("acc@1", "ImageNet-1K top-1 {:.1f}%"),
           "object-detection": ("box_map", "COCO val2017 box mAP {:.1f}"),
           "instance-segmentation": ("mask_map", "COCO val2017 mask mAP {:.1f}"),
           "keypoint-detection": ("kp_map", "COCO val2017 keypoint mAP {:.1f}"),
           "semantic-segmentation": ("miou", "COCO val2017 (VOC classes) mIoU {:.1f}")}
#: The task of the classifiers' embedding variants (:func:`embedding_spec`), and what their names end with.
EMBEDDING, SUFFIX = "image-embedding", "-embedding"
#: The graph's outputs, in the order :class:`zoo_torchvision.graphs.Detector` returns them.
DETECTION_OUTPUTS = {"object-detection": ("boxes", "scores", "class_ids"),
                     "instance-segmentation": ("boxes", "scores", "class_ids", "masks"),
                     "keypoint-detection": ("boxes", "scores", "class_ids", "keypoints")}


def build(spec: zoo.ModelSpec, weights: Path | None) -> Any:
    """The torchvision model for ``spec`` in eval mode, with ``weights`` (a state-dict file) loaded.

    The model has as many classes as ``spec.labels``: ``zoo.get(name, weights="ft.pth",
    labels=[...])`` builds a model fine-tuned for other classes. An embedding model is its
    classifier, the checkpoint loaded whole (its classes are the published weights', or as
    many as the labels given), whose last layer is then removed
    (:func:`zoo_torchvision.graphs.without_classifier`). Detectors and segmenters are wrapped
    to return what the zoo reads (:mod:`zoo_torchvision.graphs`).
    """
    from zoo_torchvision import graphs

    info = spec.extra["torchvision"]
    if spec.task in ("image-classification", EMBEDDING):
        import torchvision

        classes = len(spec.labels) or info["classes"]  # an embedding's: the checkpoint's classes
        model = torchvision.models.get_model(info["arch"], weights=None, num_classes=classes, **info["builder_kwargs"])
        if weights is not None:
            zoo.load_weights(model, weights, what=spec.name)
        return (graphs.without_classifier(model) if spec.task == EMBEDDING else model).eval()
    model = graphs.trained_architecture(info["arch"], info["weights"], len(spec.labels))
    if weights is not None:
        zoo.load_weights(model, weights, what=spec.name)
    wrapper = graphs.Segmenter if spec.task == "semantic-segmentation" else graphs.Detector
    return wrapper(model).eval()


def _spec(name: str, entry: dict[str, Any], data: dict[str, Any], runtimes: dict[str, dict[str, str]]
          ) -> zoo.ModelSpec:
    task = entry["task"]
    key, summary = METRICS[task]
    kind = {"image-classification": "", "semantic-segmentation": "semantic segmentation, "}.get(task, "")
    fields: dict[str, Any] = {}
    if task in DETECTION_OUTPUTS:  # the graph takes one image in [0, 1] of any size, resizes it and runs NMS
        fields.update(outputs=DETECTION_OUTPUTS[task], batch_axis=False, decode={"nms": "graph"})
        if task == "keypoint-detection":
            fields["decode"].update(keypoint_names=tuple(data["keypoint_names"]),
                                    skeleton=tuple(map(tuple, data["skeleton"])))
    else:
        fields["outputs"] = ("logits",)
    builder = {"arch": entry["arch"], "weights": entry["weights"], "version": data["torchvision"]}
    if "builder_kwargs" in entry:
        builder["builder_kwargs"] = entry["builder_kwargs"]
    return zoo.ModelSpec(
        name=name,
        aliases=(f"{entry['arch']}.{entry['weights'].lower()}",) if entry["default"] else (),
        task=task,
        summary=f"{kind}{entry['arch']} with torchvision's {entry['weights']} weights "
                f"({summary.format(entry['metrics'][key])})",
        license=entry["license"],
        homepage=entry["recipe"],
        preprocess=zoo.Preprocess(**entry["preprocess"]),
        labels=tuple(data["categories"][entry["categories"]]),
        weights=zoo.Artifact(url=entry["url"], sha256=entry["sha256"]),
        build=build,
        metrics=entry["metrics"],
        extra={"torchvision": builder},
        unsupported={runtime: models[name] for runtime, models in runtimes.items() if name in models},
        **fields,
    )


def load_specs(*, embeddings: bool = False) -> list[zoo.ModelSpec]:
    """Build every spec from ``models.toml``, with the runtimes each is known not to run on (``runtimes.toml``);
    with ``embeddings``, each classifier's embedding variant after them (:func:`embedding_spec`), as the plugin
    registers them."""
    data, runtimes = (tomllib.loads((files(__name__) / f).read_text(encoding="utf-8"))
                      for f in ("models.toml", "runtimes.toml"))
    specs = [_spec(name, entry, data, runtimes) for name, entry in data["models"].items()]
    if embeddings:
        specs += [embedding_spec(spec, entry["embedding_dim"])
                  for spec, entry in zip(specs, data["models"].values()) if spec.task == "image-classification"]
    return specs


def embedding_name(name: str) -> str:
    """The name of a classifier's embedding variant: ``-embedding`` after the architecture, so that its weights
    variants are ``ARCH-embedding.TAG`` as any model's are (``resnet50.imagenet1k_v1`` ->
    ``resnet50-embedding.imagenet1k_v1``)."""
    arch, dot, tag = name.partition(".")
    return f"{arch}{SUFFIX}{dot}{tag}"


def embedding_spec(spec: zoo.ModelSpec, dim: int) -> zoo.ModelSpec:
    """The ``image-embedding`` variant of a classifier's spec: its network and weights without the last layer.

    Its graph's one output, ``embedding`` ``(N, dim)``, is what the classifier's last layer
    takes (``dim``: ``embedding_dim`` in ``models.toml``); it has no labels and no published
    metrics (its summary gives the classifier's top-1). It is also found as ``NAME-embedding``
    (``resnet50.imagenet1k_v1-embedding``).
    """
    info = spec.extra["torchvision"]
    name = embedding_name(spec.name)
    aliases = tuple(alias for own in (spec.name, *spec.aliases)
                    for alias in (embedding_name(own), own + SUFFIX) if alias != name)
    return zoo.ModelSpec(
        name=name,
        aliases=tuple(dict.fromkeys(aliases)),
        task=EMBEDDING,
        summary=f"{info['arch']}'s {dim} features before its classifier, with torchvision's "
                f"{info['weights']} weights (ImageNet-1K top-1 {spec.metrics['acc@1']:.1f}% as a classifier)",
        license=spec.license,
        homepage=spec.homepage,
        preprocess=spec.preprocess,
        weights=spec.weights,
        build=build,
        outputs=("embedding",),
        extra={"torchvision": {**info, "classes": len(spec.labels), "embedding_dim": dim}},
        unsupported=spec.unsupported,
    )


@zoo.hookimpl
def zoo_register_models(register):  # type: ignore[no-untyped-def]
    for spec in load_specs(embeddings=True):
        register(spec)
