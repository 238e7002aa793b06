"""Regenerate zoo_timm/models.toml and the label files in zoo_timm/labels/ from the installed timm.

    python plugins/zoo-timm/generate_models.py [--probes /tmp/timm-probes.json]

Every pretrained tag timm lists (``timm.list_pretrained()``) becomes one entry, read from its
``pretrained_cfg``; the plugin reads the file at registration, so that ``zoo list`` imports
neither torch nor timm. What each entry becomes:

* **classifier**: a head over a class set timm can name (``timm.data.infer_imagenet_subset``:
  ImageNet-1k, -12k, -22k, -21k-goog, -22k-ms, -21k-miil). Registered as ``timm/ARCH.TAG``
  (task ``image-classification``) and, where the zoo has the ``image-embedding`` task, also as
  ``timm/ARCH-embedding.TAG`` (alias ``timm/ARCH.TAG-embedding``): the same weights, the output
  before the classifier.
* **embedding**: no head to read classes from, registered only as an embedding model under its
  own name: feature backbones (``num_classes == 0``, e.g. DINOv2, MAE, SAM's encoder; among them
  the vision encoders of language models, whose ``forward_head`` timm refuses: their tokens, to
  average), and the heads in :data:`UNNAMED_CLASSES`, trained on class sets whose names timm does
  not ship (a class number alone tells a user nothing, so their pre-logits features are what they
  offer).
* **projection**: a CLIP-style image tower (CLIP, OpenCLIP, EVA-CLIP, SigLIP-like, MobileCLIP,
  Perception Encoder, ViTamin). Its ``num_classes`` (384 to 1280) is the size of the image-text
  embedding that its head, a projection, makes; there are no classes. Registered as an
  embedding model whose embedding is the projection's output (the vector that is compared with
  the text tower's), not the features before it.
* **skipped**: listed in the file's ``skipped`` with the reason: no Hugging Face Hub repository,
  or preprocessing that the zoo's ``Preprocess`` cannot state (see :func:`preprocessing`).

Each network runs once on PyTorch's meta device (:func:`probe`, shapes only) for what the
embedding graph returns: the embedding's size, and ``forward_features``' layout.

Timm's default tag of an architecture (what ``timm.create_model(ARCH, pretrained=True)`` loads)
is ``get_pretrained_cfg(ARCH).tag``: the first tag the model's file declares, or one it marks,
not the first that ``list_pretrained`` lists (that list is sorted by name). It is marked
``default`` and registered with the alias ``timm/ARCH`` too.

The label sets are written once each, as ``labels/SUBSET.txt``, one name a line in class order:
the first WordNet lemma of each class (``tench``, not ``n01440764``), from
``timm.data.ImageNetInfo``; where two classes of a set share it, the first other lemma that
tells them apart is added in brackets (``maillot (tank suit)``), else the synset
(``crane (n02012849)``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_data_config
from timm.models import get_pretrained_cfg

PACKAGE = Path(__file__).parent / "zoo_timm"
OUT = PACKAGE / "models.toml"
LABELS = PACKAGE / "labels"
VERSION = timm.__version__
#: The weights file of a Hub repository: timm reads it first (``load_state_dict_from_hf``).
WEIGHTS_FILE = "model.safetensors"
#: Heads trained on class sets whose names timm does not ship: their models are embedding models.
UNNAMED_CLASSES = {
    19168: "ImageNet-21K (winter 2021 release), whose class names timm does not ship",
    115217: "Bamboo's 115217 classes, whose names timm does not ship",
}
#: A head that is no classifier but an image-text projection (its size the embedding's): CLIP-style towers.
PROJECTION = re.compile(r"clip|pe_core")
#: SPDX identifiers for timm's licence names; others (a model's own licence) are kept as timm names them.
SPDX = {"apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause", "cc-by-4.0": "CC-BY-4.0",
        "cc-by-nc-4.0": "CC-BY-NC-4.0"}


class Skip(Exception):
    """A tag the zoo cannot serve faithfully; the message says why."""


def preprocessing(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``zoo.Preprocess`` fields that reproduce timm's eval transform for ``cfg``, and a note on timm's terms.

    timm (``transforms_imagenet_eval``) resizes to ``floor(size / crop_pct)`` and crops ``size``:
    ``center`` resizes the shorter side (torchvision's ``Resize(int)``) and centre-crops; ``squash``
    resizes both sides (``Resize((h, w))``) and centre-crops; ``border`` fits the longer side
    (``ResizeKeepRatio(longest=1)``, sides rounded) and pads with ``round(255 * mean)`` around it
    (``CenterCropOrPad``). Each on a PIL image, antialiased as Pillow resizes; then ``ToTensor``
    and ``Normalize(mean, std)``.
    """
    data = resolve_data_config({}, pretrained_cfg=cfg)
    channels, height, width = data["input_size"]
    pct, mode, interpolation = data["crop_pct"], data["crop_mode"], data["interpolation"]
    note = f"{mode}, crop_pct {pct}, {interpolation}"
    if channels != 3:
        raise Skip(f"{channels}-channel input: the zoo's images are RGB")
    if interpolation not in ("bilinear", "bicubic"):
        raise Skip(f"interpolation {interpolation!r}: the zoo reproduces Pillow's bilinear and bicubic only")
    pixels = {"interpolation": interpolation, "antialias": True, "mean": list(data["mean"]),
              "std": list(data["std"])}
    scaled = (math.floor(height / pct), math.floor(width / pct))
    if mode == "squash":
        return {"resize": list(scaled), "crop": [height, width], **pixels}, note
    if mode == "border":
        fill = {round(255 * m) for m in data["mean"]}
        if pct != 1 or len(fill) != 1:
            raise Skip(f"crop_mode 'border' with crop_pct {pct} and mean {list(data['mean'])}: the zoo's letterbox "
                       f"pads with one pixel value and crops nothing; this needs a letterbox to "
                       f"floor(size / crop_pct) then a centre crop, padded with round(255 * mean) per channel")
        return {"resize": "letterbox", "size": [height, width], "pad_value": fill.pop(), **pixels}, note
    if mode != "center":
        raise Skip(f"crop_mode {mode!r} is not one of timm's center, squash and border")
    if scaled[0] != scaled[1]:
        raise Skip(f"crop_mode 'center' on a {height}x{width} input: timm's ResizeKeepRatio scales by the smaller "
                   f"of the two ratios and rounds each side, which the zoo's shorter-side resize does not")
    return {"resize": scaled[0], "crop": [height, width], **pixels}, note


def kind_of(name: str, cfg: dict[str, Any]) -> tuple[str, str | None]:
    """``(kind, label set)``: what the tag's head is (see the module docstring)."""
    classes = cfg.get("num_classes") or 0
    subset = infer_imagenet_subset(cfg)
    if subset is not None:
        return "classifier", subset
    if classes == 0 or classes in UNNAMED_CLASSES:
        return "embedding", None
    if PROJECTION.search(name) and classes <= 2048:
        return "projection", None
    raise SystemExit(f"{name}: a head of {classes} classes that is neither a known class set nor a CLIP-style "
                     f"projection; decide what it is (UNNAMED_CLASSES or PROJECTION) and regenerate")


def probe(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """What the embedding graph of ``name`` returns, found by running it on the meta device (shapes only).

    ``dim``: the embedding's size (``forward_head(pre_logits=True)``'s), 0 where timm's
    ``forward_head`` refuses (the vision encoders of language models: tokens, no pooled vector);
    ``layout``: ``forward_features``' output, ``NCHW`` (a map), ``NHWC`` (a map with the channels
    last: the graph transposes it), ``NLC`` (tokens, the first ``prefix`` of them class, register or
    distillation tokens), or ``""`` where it is no single tensor (several scales: the graph then has
    no ``features`` output).
    """
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False, num_classes=cfg.get("num_classes") or 0).eval()
        features = model.forward_features(torch.empty(1, *cfg["input_size"]))
        try:
            dim = int(model.forward_head(features, pre_logits=True).shape[-1])
        except NotImplementedError:  # "does not support classification use cases"
            dim = 0
    if not isinstance(features, torch.Tensor) or features.ndim not in (3, 4):
        return {"dim": dim, "layout": "", "prefix": 0}
    if features.ndim == 3:
        return {"dim": dim, "layout": "NLC", "prefix": int(getattr(model, "num_prefix_tokens", 0) or 0)}
    return {"dim": dim, "layout": "NHWC" if getattr(model, "output_fmt", "NCHW") == "NHWC" else "NCHW", "prefix": 0}


def readable_names(subset: str) -> list[str]:
    """One short name per class of ``subset``, unique within it (see the module docstring)."""
    info = ImageNetInfo(subset)
    synsets = info.label_names()
    lemmas = [info.label_name_to_description(s).split(", ") for s in synsets]
    firsts = Counter(words[0] for words in lemmas)
    taken = {first for first, count in firsts.items() if count == 1}
    names = []
    for synset, words in zip(synsets, lemmas):
        first = words[0]
        if firsts[first] == 1:
            names.append(first)
            continue
        candidates = [f"{first} ({other})" for other in words[1:] if other != first] + [f"{first} ({synset})"]
        name = next(c for c in candidates if c not in taken)
        taken.add(name)
        names.append(name)
    assert len(set(names)) == len(names) and all(n.strip() == n and "\n" not in n for n in names), subset
    return names


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)  # a JSON number or string is a TOML one
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


#: The columns of a row of ``[models]``, in order.
COLUMNS = ("kind", "classes", "labels", "default", "preprocess", "license", "dim", "layout", "prefix", "hub")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probes", type=Path, help="a JSON file that keeps each tag's probe between runs "
                                                    "(probing every tag on the meta device takes minutes)")
    args = parser.parse_args()
    probes: dict[str, Any] = {}
    if args.probes and args.probes.is_file():
        probes = json.loads(args.probes.read_text())
        probes = probes["tags"] if probes.get("timm") == VERSION else {}
    names = timm.list_pretrained()
    skipped: dict[str, str] = {}
    preprocess: dict[str, tuple[dict[str, Any], str]] = {}  # id -> fields, note
    ids: dict[str, str] = {}  # the fields as JSON -> id
    subsets: set[str] = set()
    rows = []
    papers: dict[str, dict[str, str]] = {}  # where timm names the paper or the original code
    for name in names:
        arch, tag = name.split(".", 1)
        cfg = get_pretrained_cfg(name).to_dict()
        assert (cfg["architecture"], cfg["tag"]) == (arch, tag), name
        if not cfg.get("hf_hub_id"):
            skipped[name] = f"no Hugging Face Hub repository (timm downloads it from {cfg.get('url') or 'nowhere'})"
            continue
        try:
            fields, note = preprocessing(cfg)
        except Skip as why:
            skipped[name] = str(why)
            continue
        key = json.dumps(fields, sort_keys=True)
        if key not in ids:
            ids[key] = f"p{len(ids)}"
            preprocess[ids[key]] = (fields, note)
        kind, subset = kind_of(name, cfg)
        subsets.update([subset] if subset else [])
        if name not in probes:
            probes[name] = probe(name, cfg)
            if args.probes:
                args.probes.write_text(json.dumps({"timm": VERSION, "tags": probes}))
        found = probes[name]
        classes = cfg.get("num_classes") or 0
        hub = "" if cfg["hf_hub_id"] == f"timm/{name}" else cfg["hf_hub_id"]
        row = [kind, classes, subset or "", get_pretrained_cfg(arch).tag == tag, ids[key],
               SPDX.get(cfg.get("license") or "", cfg.get("license") or "unspecified"),
               classes if kind == "projection" else found["dim"], found["layout"], found["prefix"], hub]
        if not hub:
            row.pop()
        rows.append((name, kind, row))
        source = {"paper": cfg.get("paper_ids"), "origin": cfg.get("origin_url")}
        if any(source.values()):
            papers[name] = {key: value for key, value in source.items() if value}
    LABELS.mkdir(exist_ok=True)
    for subset in sorted(subsets):
        (LABELS / f"{subset}.txt").write_text("\n".join(readable_names(subset)) + "\n", encoding="utf-8")
    counts = Counter(kind for _, kind, _ in rows)
    no_features = [name for name, _, row in rows if not row[COLUMNS.index("layout")]]
    lines = [
        f"# Generated by generate_models.py from timm {VERSION}; do not edit by hand.",
        (f"# {len(names)} pretrained tags: {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}, "
         f"{len(skipped)} skipped."),
        f'timm = "{VERSION}"',
        f'weights_file = "{WEIGHTS_FILE}"',
        "skipped = [",
        *(f"    {toml_value(f'{name}: {why}')}," for name, why in skipped.items()),
        "]",
        "",
        "[labels]  # each label set once, one name a line, in class order",
        *(f'"{subset}" = "labels/{subset}.txt"' for subset in sorted(subsets)),
        "",
        "[preprocess]  # each distinct preprocessing once; the comment gives timm's terms",
        *(f"{pid} = {toml_value(fields)}  # {note}" for pid, (fields, note) in preprocess.items()),
        "",
        "# One row per tag (a row of values parses twice as fast as a table, and registration reads them all):",
        "#   kind: classifier, embedding or projection (generate_models.py says what each is)",
        "#   classes: timm's num_classes (a projection's: the size of its embedding); labels: the label set",
        "#   default: timm's default tag of the architecture; preprocess: an id in [preprocess]; licence",
        "#   dim: the embedding's size; layout and prefix: forward_features' output, NCHW, NHWC (transposed by the",
        "#     graph), NLC (tokens, the first prefix of them not patches) or empty (no features output)",
        "#   hub: the Hugging Face Hub repository, when it is not timm/ARCH.TAG",
        f"[models]  # ARCH.TAG = [{', '.join(COLUMNS)}]",
        *(f"{json.dumps(name)} = {toml_value(row)}" for name, _, row in rows),
        "",
        "[papers]  # the paper (paper_ids) and the original code (origin_url), where timm names them",
        *(f"{json.dumps(name)} = {toml_value(source)}" for name, source in papers.items()),
    ]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} tags ({dict(counts)}), {len(skipped)} skipped, {len(preprocess)} preprocessings "
          f"and {len(subsets)} label sets to {PACKAGE}; no features output for {len(no_features)}: "
          f"{', '.join(no_features[:10])}")


if __name__ == "__main__":
    main()
