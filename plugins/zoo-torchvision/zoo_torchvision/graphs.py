"""The torch side of the plugin (imported by ``build`` only): torchvision's detectors and
segmenters as the zoo exports them.

:func:`trained_architecture` builds exactly the network that torchvision builds for a set of
weights (its builder's arguments, frozen BatchNorm and its epsilon included) without
downloading them. :class:`Detector` and :class:`Segmenter` wrap a model so that its graph
takes the zoo's tensor and returns the outputs the zoo's tasks read.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from types import MethodType
from typing import Any
from unittest import mock

import torch
import torchvision
from torchvision.models import get_model, get_model_weights
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, poolers
from torchvision.ops import boxes as box_ops

_PATCHING = threading.Lock()


def _untrained(arch: str, num_classes: int) -> torch.nn.Module:
    """``arch`` as its builder makes it without any weights (BatchNorm where trained models may freeze it)."""
    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if "aux_loss" in inspect.signature(torchvision.models.get_model_builder(arch)).parameters:
        kwargs["aux_loss"] = True  # segmenters' weights come with the auxiliary head
    return get_model(arch, **kwargs)


def trained_architecture(arch: str, weights: str, num_classes: int) -> torch.nn.Module:
    """torchvision's ``arch`` as built for its ``weights`` variant, randomly initialised, with ``num_classes`` classes.

    torchvision's builders change the network when given weights: BatchNorm is frozen in
    the backbones of detectors, its epsilon set to 0 for some variants, auxiliary heads
    added. The builder is run with ``weights`` whose download is replaced by the state of
    a randomly initialised model, so that every such decision is torchvision's own. For
    another number of classes (fine-tuned weights), the frozen layers are copied onto the
    untrained architecture with that many classes.
    """
    enum = get_model_weights(arch)[weights]
    classes = len(enum.meta["categories"])
    state = {key: value for key, value in _untrained(arch, classes).state_dict().items()
             if not key.endswith("num_batches_tracked")}  # frozen BatchNorm has no counter; BatchNorm makes one
    with _PATCHING, mock.patch.object(type(enum), "get_state_dict", lambda self, *args, **kwargs: state):
        trained = get_model(arch, weights=enum)  # the patch is the class's, for every thread: hence the lock
    if num_classes == classes:
        return trained
    model = _untrained(arch, num_classes)
    for name, module in trained.named_modules():
        if isinstance(module, FrozenBatchNorm2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FrozenBatchNorm2d(len(module.weight), eps=module.eps))
    return model


def _exact_resize(self: GeneralizedRCNNTransform, image: torch.Tensor,
                  target: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, Any]:
    """``GeneralizedRCNNTransform.resize`` at inference, with the same size in PyTorch and in the exported graph.

    torchvision computes the factor in float64 in eager mode but in float32 when traced, so
    a 400x600 image becomes 320x480 in PyTorch and 319x479 in ONNX, and every box comes back
    0.3% off. Here the size is ``floor(side * factor)`` in float64 in both, and the image is
    resized to that size (what ``recompute_scale_factor=True`` does in eager mode).
    """
    if self.training or self.fixed_size is not None:
        return GeneralizedRCNNTransform.resize(self, image, target)
    sides = torch._shape_as_tensor(image)[-2:].to(torch.float64)
    # one float64 vector: the exporter would make a Python number, or one element of this vector, float32
    limits = torch.tensor([self.min_size[-1], self.max_size], dtype=torch.float64)
    factor = (limits / torch.stack([sides.min(), sides.max()])).min()
    size = torch.floor(sides * factor).to(torch.int64)
    resized = torch.nn.functional.interpolate(image[None], size=list(size) if torchvision._is_tracing() else
                                              size.tolist(), mode="bilinear", align_corners=False)[0]
    return resized, target


_BATCHED_NMS = box_ops.batched_nms


class _PerClassNms(torch.autograd.Function):
    """``torchvision.ops.batched_nms``, exported as one ONNX NonMaxSuppression with a class axis.

    Traced, torchvision turns the classes into one with its coordinate trick (each class's
    boxes moved apart), and onnxruntime's NonMaxSuppression compares every kept box with
    every candidate: 4.2 of 5.5 s for Faster R-CNN when 90,000 boxes (1,000 proposals times
    90 classes) pass the score threshold. Here the graph gives each class its own row of
    scores (-1 in the other rows, under the threshold of 0), so onnxruntime suppresses within
    each class, as torchvision does eagerly for many boxes, and the kept boxes are then
    sorted by score, as ``batched_nms`` returns them. In PyTorch it is ``batched_nms`` itself.
    torchvision's detectors score in [0, 1]; a box whose score is exactly 0 (a probability
    that underflowed) is dropped, as OpenCV's NMS needs a threshold of at least 0.
    """

    @staticmethod
    def forward(ctx: Any, boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
        return _BATCHED_NMS(boxes, scores, idxs, iou_threshold)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> Any:
        def const(value: Any, dtype: torch.dtype) -> Any:
            return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

        def axis(op: str, value: Any, index: int) -> Any:  # Unsqueeze/Squeeze: axes an input from opset 13
            if g.opset >= 13:
                return g.op(op, value, const([index], torch.int64))
            return g.op(op, value, axes_i=[index])

        zero, one = const([0], torch.int64), const(1, torch.int64)
        # classes: the largest id plus one; the 0 appended keeps ReduceMax off an empty tensor
        classes = g.op("Add", g.op("ReduceMax", g.op("Concat", idxs, zero, axis_i=0), keepdims_i=0), one)
        rows = g.op("Equal", axis("Unsqueeze", idxs, 0),
                    axis("Unsqueeze", g.op("Range", const(0, torch.int64), classes, one), 1))
        table = g.op("Where", rows, axis("Unsqueeze", scores, 0), const(-1.0, torch.float32))
        count = g.op("Shape", scores)  # at most every box of a class
        selected = g.op("NonMaxSuppression", axis("Unsqueeze", boxes, 0), axis("Unsqueeze", table, 0), count,
                        const([iou_threshold], torch.float32), const([0.0], torch.float32))
        kept = axis("Squeeze", g.op("Gather", selected, const([2], torch.int64), axis_i=1), 1)
        _, order = g.op("TopK", g.op("Gather", scores, kept, axis_i=0), g.op("Shape", kept), outputs=2)
        return g.op("Gather", kept, order, axis_i=0)


def _merge_levels(levels: torch.Tensor, unmerged: list[torch.Tensor]) -> torch.Tensor:
    """The pooled features of each pyramid level, back in their boxes' order: one Gather.

    torchvision's traced merge scatters each level into a zero tensor of every box's
    features (a ScatterElements of 1,000 x 256 x 7 x 7 elements per level: half a second
    in onnxruntime for Faster R-CNN); the same rows come out of one concatenation and one
    gather by the inverse of the order the levels took them in.
    """
    order = torch.cat([torch.where(levels == level)[0] for level in range(len(unmerged))])
    return torch.cat(unmerged)[torch.argsort(order)]


@contextlib.contextmanager
def _faster_graph() -> Iterator[None]:
    """While traced, torchvision's detectors use :class:`_PerClassNms` and :func:`_merge_levels`.

    Both compute what torchvision's own traced code computes; PyTorch's eager runs are untouched.
    """
    if not torch.jit.is_tracing():
        yield
        return
    with (_PATCHING, mock.patch.object(box_ops, "batched_nms", _PerClassNms.apply),
          mock.patch.object(poolers, "_onnx_merge_levels", _merge_levels)):
        yield


class Detector(torch.nn.Module):
    """A torchvision detector for one image ``(1, 3, H, W)`` in [0, 1], of any size.

    The model resizes and normalises the image itself and maps its boxes back, so the
    outputs are in the input's pixels: boxes ``(N, 4)`` xyxy, scores, class ids (COCO's
    91 ids); Mask R-CNN adds masks ``(N, H, W)`` (probabilities, thresholded by the zoo);
    Keypoint R-CNN adds keypoints ``(N, 17, 3)`` as ``(x, y, score)`` with torchvision's
    ``keypoints_scores`` (heatmap logits) as the score.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        if isinstance(model.transform, GeneralizedRCNNTransform):
            model.transform.resize = MethodType(_exact_resize, model.transform)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with _faster_graph():
            found = self.model(list(images))[0]  # one image: the zoo runs them one at a time (randomize runs more)
        outputs = [found["boxes"], found["scores"], found["labels"]]
        if "masks" in found:
            outputs.append(found["masks"][:, 0])
        if "keypoints" in found:
            outputs.append(torch.cat([found["keypoints"][:, :, :2], found["keypoints_scores"][:, :, None]], 2))
        return tuple(outputs)


class Segmenter(torch.nn.Module):
    """A torchvision segmenter: class scores ``(N, classes, H, W)`` at the input's size.

    The auxiliary head (trained with the model, loaded with its weights) is dropped: the
    graph and PyTorch's eager runs then compute only the scores.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        if getattr(model, "aux_classifier", None) is not None:
            model.aux_classifier = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


def score_threshold(model: torch.nn.Module, value: float) -> torch.nn.Module:
    """``model`` (a :class:`Detector`) keeping only boxes scored at least ``value`` inside its graph."""
    for holder in (model.model, getattr(model.model, "roi_heads", None)):
        if hasattr(holder, "score_thresh"):
            holder.score_thresh = value
    return model


def decisive(model: torch.nn.Module, photo: torch.Tensor, spread: float = 3.0,
             center: float = -6.0) -> torch.nn.Module:
    """``model`` (a :class:`Detector` with random weights) made to detect, for tests.

    Random weights score every class near 1/91, and the sigmoid heads of RetinaNet and FCOS
    start from a prior of 0.01 that random scaling can push below float32's smallest number:
    torchvision's detectors drop boxes under 0.05 inside the graph, so a test would compare
    two empty lists, and near-equal scores would compare ties. Likewise masks near 0.5
    everywhere flip at the 0.5 threshold, and flat keypoint heatmaps move their maximum, on
    rounding alone. The score thresholds are set to 0 and the outputs of each logit layer
    (classes, masks, keypoint heatmaps) on ``photo`` (a preprocessed batch of one) are
    standardised to standard deviation ``spread`` and mean ``center`` for classes (a
    softmax ignores it; a sigmoid scores most boxes low and a few high), 0 for the rest.
    """
    score_threshold(model, 0.0)
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    layers = {name: [m for m in module.modules() if isinstance(m, kinds)][-1]
              for name, module in model.model.named_modules()
              if name.endswith(("cls_score", "cls_logits", "mask_fcn_logits", "kps_score_lowres"))
              or name.startswith("head.classification_head.module_list.")
              and name.count(".") == 3}  # SSD: one per feature map, its last convolution
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    hooks = [module.register_forward_hook(lambda _, __, output, name=name: seen[name].append(output.flatten()))
             for name, module in layers.items()]
    with torch.no_grad():
        try:
            model(photo)
        finally:
            for hook in hooks:
                hook.remove()
        for name, module in layers.items():
            outputs = torch.cat(seen[name])
            factor = spread / float(outputs.std())
            mean = center if "cls" in name or "classification" in name else 0.0
            module.weight.mul_(factor)
            module.bias.mul_(factor).add_(mean - factor * float(outputs.mean()))
    return model


#: Where torchvision's classifiers keep their classifier: ``fc`` (ResNet, RegNet, GoogLeNet, Inception,
#: ShuffleNet), ``head`` (Swin), ``heads`` (ViT), ``classifier`` (the others).
CLASSIFIER_ATTRIBUTES = ("fc", "head", "heads", "classifier")


def without_classifier(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a torchvision classifier, its weights loaded) returning the input of its last layer, ``(N, D)``.

    The layer that outputs the class logits becomes ``Identity``: the last ``Linear`` of the
    classifier, whatever comes before it staying (AlexNet's and VGG's two hidden layers, the
    hidden layer of MobileNetV3 and MaxViT, ConvNeXt's LayerNorm). SqueezeNet has no
    ``Linear``: its classifier is a 1x1 convolution to the classes, a ReLU and a global
    average pool; the convolution and its ReLU go, so that it returns its last 512 channels
    averaged over the image. GoogLeNet's and Inception's auxiliary heads run only in training
    mode, so an eval-mode graph never holds them. ``ValueError`` for a model of another shape.
    """
    holder = next((name for name in CLASSIFIER_ATTRIBUTES if isinstance(getattr(model, name, None), torch.nn.Module)),
                  None)
    if holder is None:
        raise ValueError(f"{type(model).__name__} has none of {', '.join(CLASSIFIER_ATTRIBUTES)}: no classifier found")
    head = getattr(model, holder)
    if isinstance(head, torch.nn.Linear):
        setattr(model, holder, torch.nn.Identity())
        return model
    layers = list(head) if isinstance(head, torch.nn.Sequential) else []
    linear = [i for i, layer in enumerate(layers) if isinstance(layer, torch.nn.Linear)]
    if linear:
        head[linear[-1]] = torch.nn.Identity()
        return model
    convolution = [i for i, layer in enumerate(layers) if isinstance(layer, torch.nn.Conv2d)]
    if convolution and isinstance(layers[-1], torch.nn.AdaptiveAvgPool2d):  # SqueezeNet
        last = convolution[-1]
        for i in range(last, len(layers) - 1):  # the convolution and its activation; the pooling stays
            head[i] = torch.nn.Identity()
        return model
    raise ValueError(f"{type(model).__name__}.{holder} is a {type(head).__name__} with no Linear layer to remove")
