"""zoo-timm: every pretrained timm tag with weights on the Hugging Face Hub, by name, preprocessed as timm does.

Each tag is ``timm/ARCH.TAG`` (``timm/resnet50.a1_in1k``); timm's default tag of an architecture
(what ``timm.create_model(ARCH, pretrained=True)`` loads) also answers to ``timm/ARCH``.
Classifiers are ``image-classification`` models; each is also ``timm/ARCH-embedding.TAG`` (alias
``timm/ARCH.TAG-embedding``: the features before its classifier), and the tags without a classifier
(feature backbones, CLIP-style image towers, the vision encoders of language models) are embedding
models under their own names (alias ``timm/ARCH-embedding.TAG``, as every embedding model of the plugin).

Registration reads ``models.toml`` (generated from timm by ``generate_models.py``) and imports
neither torch nor timm: one :class:`zoo.Preprocess` per distinct preprocessing, and the labels
read from ``labels/SUBSET.txt`` only when a model is looked up. :func:`build` imports timm.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zoo

__version__ = "0.1.0"

HERE = Path(__file__).parent
#: The task of embedding models.
EMBEDDING_TASK = "image-embedding"
#: What each kind of head becomes: the task's graph outputs.
CLASSIFIER_OUTPUTS = ("logits",)
EMBEDDING_OUTPUTS = ("embedding", "features")
#: A classifier's embedding variant is ``timm/ARCH-embedding.TAG`` (its weights variants are those of
#: ``timm/ARCH-embedding``), also found as ``timm/ARCH.TAG-embedding``.
SUFFIX = "-embedding"
#: The columns of a row of ``models.toml``'s ``[models]`` (``generate_models.py`` says what each holds).
COLUMNS = ("kind", "classes", "labels", "default", "preprocess", "license", "dim", "layout", "prefix", "hub")
#: The label sets' names as a summary says them.
SUBSETS = {"imagenet-1k": "ImageNet-1k", "imagenet-12k": "ImageNet-12k (timm's subset of ImageNet-21k)",
           "imagenet-22k": "ImageNet-22k", "imagenet-21k-goog": "ImageNet-21k (Google's)",
           "imagenet-22k-ms": "ImageNet-22k (Microsoft's order)", "imagenet-21k-miil": "ImageNet-21k-P (MIIL)"}


def weights_of(hub: str, filename: str) -> zoo.HubFile:
    """The published weights of a tag: the file ``filename`` of its Hub repository ``hub`` (``OWNER/NAME`` or
    ``OWNER/NAME@REVISION``), never timm's older download URL."""
    repo, _, revision = hub.partition("@")
    return zoo.HubFile(repo=repo, filename=filename, revision=revision or "main")


def build(spec: zoo.ModelSpec, weights: Path | None) -> Any:
    """The timm model for ``spec`` in eval mode, with ``weights`` loaded.

    A classifier has as many classes as ``spec.labels``: ``zoo.get(name, weights="ft.pth",
    labels=[...])`` builds one fine-tuned for other classes. An embedding model is the network
    with its whole checkpoint loaded (its classes are the published weights', or as many as the
    labels given), returning ``embedding`` and ``features`` (:class:`zoo_timm.graphs.Embedder`).
    """
    import timm

    info = spec.extra["timm"]
    classes = len(spec.labels) or info["classes"]
    # The tagged name, so that timm builds the network as that tag's pretrained_cfg says (img_size, global_pool).
    model = timm.create_model(info["model"], pretrained=False, num_classes=classes)
    if weights is not None:
        model = _loaded(model, weights, spec.name, info["model"], classes)
    if info["head"] != "classifier":
        from zoo_timm.graphs import Embedder

        model = Embedder(model, head=info["head"] if info["dim"] else "", layout=info["layout"])
    return model.eval()


def _loaded(model: Any, weights: Path, name: str, tagged: str, classes: int) -> Any:
    """``model`` with the checkpoint at ``weights`` loaded: as it is (timm's layout, what the Hub's timm
    repositories hold), else converted by timm's own loader for this architecture (its checkpoint filter, as
    ``timm.create_model(pretrained=True)`` applies it to a checkpoint in the original authors' layout)."""
    try:
        return zoo.load_weights(model, weights, what=name)
    except zoo.WeightsError as error:
        import timm

        state = zoo.load_state_dict(weights)  # tensors only, never unpickled code
        try:
            return timm.create_model(tagged, pretrained=True, num_classes=classes,
                                     pretrained_cfg_overlay={"state_dict": state, "num_classes": classes})
        except Exception:  # noqa: BLE001 - timm's loader cannot convert it either: the zoo's error says why
            raise error from None


class Catalogue:
    """``models.toml`` read once, with one Preprocess per distinct preprocessing."""

    def __init__(self, text: str, runtimes: str = "") -> None:
        self.data = tomllib.loads(text)
        #: name -> {runtime: what happens}: the runtimes ``check_exports.py`` found that do not run a model.
        self.unsupported: dict[str, dict[str, str]] = {}
        for runtime, models in tomllib.loads(runtimes).items():
            for name, why in models.items():
                self.unsupported.setdefault(name, {})[runtime] = why
        self.preprocess = {key: zoo.Preprocess.from_dict(fields) for key, fields in self.data["preprocess"].items()}
        self.labels = {name: f"file:{HERE / path}" for name, path in self.data["labels"].items()}

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each tag's ``ARCH.TAG`` and its row as a mapping of the columns (:data:`COLUMNS`)."""
        for key, row in self.data["models"].items():
            yield key, dict(zip(COLUMNS, row))  # hub, when it is timm/ARCH.TAG, is left out

    def classifiers(self) -> Iterator[zoo.ModelSpec]:
        for key, entry in self.rows():
            if entry["kind"] == "classifier":
                yield self._spec(key, entry, "classifier")

    def embeddings(self) -> Iterator[zoo.ModelSpec]:
        """The embedding models: every classifier's ``-embedding`` variant, and the tags without a classifier."""
        for key, entry in self.rows():
            yield self._spec(key, entry, "projection" if entry["kind"] == "projection" else "pre_logits")

    def _spec(self, key: str, entry: dict[str, Any], head: str) -> zoo.ModelSpec:
        arch, _, tag = key.partition(".")
        preprocess = self.preprocess[entry["preprocess"]]
        height, width = preprocess.input_size
        classes, dim, default = entry["classes"], entry["dim"], entry["default"]
        hub = entry.get("hub") or f"timm/{key}"
        extra: dict[str, Any] = {"model": key, "head": head, "classes": classes}
        fields: dict[str, Any]
        if head == "classifier":
            fields = {"name": f"timm/{key}", "aliases": (f"timm/{arch}",) if default else (),
                      "task": "image-classification", "outputs": CLASSIFIER_OUTPUTS,
                      "labels_from": self.labels[entry["labels"]]}
            what = f"{SUBSETS[entry['labels']]} classifier ({classes} classes)"
        else:
            layout = entry["layout"]
            extra.update(layout=layout, dim=dim)
            outputs = (("embedding",) if dim else ()) + (("features",) if layout else ())
            fields = {"task": EMBEDDING_TASK, "outputs": outputs}
            if layout == "NLC" and entry["prefix"]:
                fields["decode"] = {"prefix_tokens": entry["prefix"]}
            if not dim:  # tokens for a language model, no pooled vector: the tokens' mean
                fields["options"] = {"pool": "avg"}
            if entry["kind"] == "classifier":  # named as the zoo names every classifier's embedding variant
                fields.update(name=f"timm/{arch}{SUFFIX}.{tag}", aliases=(f"timm/{key}{SUFFIX}",) + (
                    (f"timm/{arch}{SUFFIX}",) if default else ()))
                what = f"{dim} features before its {SUBSETS[entry['labels']]} classifier"
            else:  # its own name, and the name every embedding model of timm answers to
                fields.update(name=f"timm/{key}", aliases=(f"timm/{arch}{SUFFIX}.{tag}",) + (
                    (f"timm/{arch}", f"timm/{arch}{SUFFIX}") if default else ()))
                what = (f"{dim}-value image embedding of its image-text projection" if head == "projection" else
                        "the tokens of a language model's vision encoder (their mean: pool avg)" if not dim else
                        f"{dim} features (a backbone without a classifier)" if not classes else
                        f"{dim} features before its head of {classes} classes that timm does not name")
        return zoo.ModelSpec(
            summary=f"{arch} with timm's {tag} weights: {what}, {height}x{width}",
            license=entry["license"],
            homepage=f"https://huggingface.co/{hub.partition('@')[0]}",
            preprocess=preprocess,
            weights=weights_of(hub, self.data["weights_file"]),
            build=build,
            extra={"timm": extra},
            unsupported=self.unsupported.get(fields["name"], {}),
            **fields,
        )


def load_catalogue() -> Catalogue:
    """``models.toml``, parsed, with the runtimes that ``runtimes.toml`` says do not run a model."""
    return Catalogue(*((HERE / name).read_text(encoding="utf-8") for name in ("models.toml", "runtimes.toml")))


def load_specs(embeddings: bool = True) -> list[zoo.ModelSpec]:
    """Every spec of the catalogue: the classifiers, then (with ``embeddings``) the embedding models."""
    catalogue = load_catalogue()
    return [*catalogue.classifiers(), *(catalogue.embeddings() if embeddings else ())]


@zoo.hookimpl
def zoo_register_models(register):  # type: ignore[no-untyped-def]
    for spec in load_specs():
        register(spec)
