"""Regenerate zoo_torchvision/models.toml from the installed torchvision: every classifier, detector and segmenter.

    python plugins/zoo-torchvision/generate_models.py

The plugin reads that file at registration, so that ``zoo list`` never imports torch.
``tests/test_torchvision_metadata.py`` checks the file against torchvision's weights
metadata and transforms, model by model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torchvision
from torchvision.models import get_model_weights, list_models

OUT = Path(__file__).parent / "zoo_torchvision" / "models.toml"
HASH_IN_FILENAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's convention
#: Weights that are not a classifier (feature-extractor weights without a trained head).
VERSION = torchvision.__version__.split("+")[0]  # without the local build tag (+cpu, +cu130)
SKIPPED = {("vgg16", "IMAGENET1K_FEATURES"): "feature-extractor weights with no trained classifier head"}
#: SPDX identifiers for the licence URLs torchvision's metadata gives; weights without one
#: are distributed under torchvision's own BSD-3-Clause licence.
LICENSES = {"https://github.com/facebookresearch/SWAG/blob/main/LICENSE": "CC-BY-NC-4.0"}
#: Constructor arguments torchvision's classifier builders set themselves when given these weights.
AUX_KWARGS = {"transform_input": True, "aux_logits": True, "init_weights": False}
#: The task of each family's models, and the name of its categories in the file.
FAMILIES = {"classification": (torchvision.models, "image-classification"),
            "detection": (torchvision.models.detection, None),
            "segmentation": (torchvision.models.segmentation, "semantic-segmentation")}
#: Human keypoints are joined as COCO's annotations join them (its "skeleton", here counted from 0).
COCO_SKELETON = [[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8],
                 [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6]]
#: Names for the label sets, by their length: ImageNet's classes, COCO's 91 ids (with background and the ten
#: unused ones, "N/A"), Pascal VOC's 20 classes with background, and background or person for keypoints.
CATEGORY_SETS = {1000: "imagenet", 91: "coco", 21: "voc", 2: "coco_person"}


def builder_kwargs(arch: str, weights: torchvision.models.WeightsEnum) -> dict[str, object]:
    if arch in ("googlenet", "inception_v3"):
        return dict(AUX_KWARGS)
    if arch.startswith("vit_") and weights.meta["min_size"][0] != 224:
        return {"image_size": weights.meta["min_size"][0]}
    return {}


def embedding_dim(arch: str, kwargs: dict[str, object], crop: int) -> int:
    """How many values the classifier's last layer takes: the length of its embedding variant's vector.

    Found by running the headless model (:func:`zoo_torchvision.graphs.without_classifier`) on
    the meta device: no memory, no computation. RegNet's constructor computes its widths with
    tensors, which the meta device cannot hold: it is built on the CPU and moved there.
    """
    import torch
    from zoo_torchvision.graphs import without_classifier

    device = "cpu" if arch.startswith("regnet") else "meta"
    with torch.device(device):
        model = torchvision.models.get_model(arch, weights=None, **kwargs)
    model = without_classifier(model.to("meta").eval())
    with torch.no_grad():
        (dim,) = model(torch.zeros(1, 3, crop, crop, device="meta")).shape[1:]
    return int(dim)


def detection_task(arch: str) -> str:
    if arch.startswith("maskrcnn"):
        return "instance-segmentation"
    return "keypoint-detection" if arch.startswith("keypointrcnn") else "object-detection"


def preprocess(family: str, weights: torchvision.models.WeightsEnum) -> dict[str, object]:
    """The Preprocess fields that reproduce ``weights.transforms()``."""
    transform = weights.transforms()
    if family == "detection":  # ObjectDetection: the image in [0, 1]; the model resizes and normalises it
        return {}
    pixels = {"interpolation": transform.interpolation.value, "antialias": bool(transform.antialias),
              "mean": list(transform.mean), "std": list(transform.std)}
    if family == "segmentation":  # SemanticSegmentation: the shorter side resized, no crop
        (resize,) = transform.resize_size
        return {"resize": resize, **pixels}
    (resize,), (crop,) = transform.resize_size, transform.crop_size
    return {"resize": resize, "crop": crop, **pixels}


def metrics(meta: dict[str, object]) -> dict[str, float]:
    (values,) = meta["_metrics"].values()
    return {**values, "params": meta["num_params"], "gflops": meta["_ops"]}


def category_set(categories: list[str], sets: dict[str, list[str]]) -> str:
    """The name of the label set ``categories`` is, recorded in ``sets``."""
    name = CATEGORY_SETS[len(categories)]
    assert sets.setdefault(name, categories) == categories, categories
    return name


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # a JSON number or string is a TOML one
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def main() -> None:
    sets: dict[str, list[str]] = {}
    keypoint_names = None
    blocks = []
    for family, (module, task) in FAMILIES.items():
        for arch in list_models(module=module):
            enum = get_model_weights(arch)
            for weights in enum:
                if (arch, weights.name) in SKIPPED:
                    continue
                meta = weights.meta
                tag = weights.name.lower()
                default = weights == enum.DEFAULT
                sha = HASH_IN_FILENAME.search(weights.url.rsplit("/", 1)[-1])
                assert sha, weights.url
                entry = {
                    "arch": arch,
                    "weights": weights.name,
                    "task": task or detection_task(arch),
                    "default": default,
                    "url": weights.url,
                    "sha256": sha.group(1),
                    "file_size_mb": meta["_file_size"],
                    "license": LICENSES[meta["license"]] if "license" in meta else "BSD-3-Clause",
                    "recipe": meta["recipe"],
                    "categories": category_set(meta["categories"], sets),
                    "preprocess": preprocess(family, weights),
                    "metrics": metrics(meta),
                }
                if family == "classification":
                    entry["builder_kwargs"] = builder_kwargs(arch, weights)
                    entry["embedding_dim"] = embedding_dim(arch, entry["builder_kwargs"], entry["preprocess"]["crop"])
                if "keypoint_names" in meta:
                    assert keypoint_names in (None, meta["keypoint_names"])
                    keypoint_names = meta["keypoint_names"]
                name = arch if default else f"{arch}.{tag}"
                lines = [f"[models.{json.dumps(name)}]"] + [f"{k} = {toml_value(v)}" for k, v in entry.items()]
                blocks.append("\n".join(lines))
    header = (
        f"# Generated by generate_models.py from torchvision {VERSION}; do not edit by hand.\n"
        f'torchvision = "{VERSION}"\n'
        f"skipped = {toml_value([f'{a}.{w.lower()}: {why}' for (a, w), why in SKIPPED.items()])}\n"
        f"keypoint_names = {toml_value(keypoint_names)}\n"
        f"skeleton = {toml_value(COCO_SKELETON)}\n\n"
        "[categories]\n" + "".join(f"{name} = {toml_value(values)}\n" for name, values in sets.items())
    )
    OUT.write_text(header + "\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    print(f"wrote {len(blocks)} models to {OUT}")


if __name__ == "__main__":
    main()
