"""What the four unlearning baselines share: input checks, the one fine-tuning helper, and feature hooks.

Offers :func:`fine_tune` (copy, early return, fit, modes kept), :func:`penultimate_layer`, :func:`stage_layers`,
and the small helpers the baseline modules call. Not public: import the baselines from
:mod:`actedit.baselines`.
"""
from __future__ import annotations

import copy
import logging
import math
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
from torch import nn

from ..capture import Features, get_module  # noqa: F401  (Features: re-exported)
from ..training import LossFn, TrainConfig, TransformFn, fit, preserved_modes
from ..validation import check_images, check_labels, check_trigger_output

log = logging.getLogger(__name__)

Trigger = Callable[[torch.Tensor], torch.Tensor]
Objective = Callable[[nn.Module], AbstractContextManager[LossFn]]
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


#: One gentle pass: the schedule of actFT and BaEraser, whose sources give none we could read (see their modules):
#: one epoch, 128 clean images per batch (each batch also gets their δ copies), SGD at lr 0.01 with cosine decay,
#: momentum 0.9, weight decay 5e-4, no augmentation — small, so that the victim's ACC is kept (Table 7: actFT's ACC
#: 69.6 % vs the victim's 70.5 %).
ONE_GENTLE_PASS = TrainConfig(epochs=1, batch_size=128, lr=0.01, momentum=0.9, weight_decay=5e-4, optimizer="sgd",
                              schedule="cosine", augment=False)

def penultimate_layer(model: nn.Module) -> str:
    """Name of the last ``nn.Linear`` in ``named_modules()`` order; its *input* is the penultimate activation.

    The small CNN: ``"19"``; torchvision ResNet18: ``"fc"``; VGG16, EfficientNetV2-S, MobileNetV3: their
    ``classifier`` 's last ``Linear``.
    """
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear layer; pass the penultimate layer's name in the config")
    return names[-1]


@torch.no_grad()
def stage_layers(model: nn.Module, sample: torch.Tensor, count: int = 3) -> list[str]:
    """The ends of the last ``count`` resolution stages: where NAD (Li et al. 2021) takes its attention maps.

    NAD distils the outputs of the three groups of a WideResNet, each at its own resolution. The general reading
    used here: scan the top-level children (or, if the model has a ``features`` child, the children of
    ``features``), run ``sample`` through the model once in eval mode, group consecutive children whose output is
    ``[N, C, H, W]`` with the same ``H x W > 1``, and take the last child of each group. That gives

    - torchvision ResNet18 (28-64 px stem): ``layer2``, ``layer3``, ``layer4``;
    - the small CNN (``nn.Sequential``): ``"2"``, ``"9"``, ``"16"`` — the ReLUs of the last conv block before each
      pooling layer (28, 14 and 7 px on Fashion-MNIST);
    - VGG16-BN: ``features.22``, ``features.32``, ``features.42`` (last ReLU before each of the last three pools);
    - EfficientNetV2-S / MobileNetV3-small: the last three ``features.k`` stages that change the resolution.

    Fewer stages than ``count`` give fewer names; none raises ``ValueError``. The model and its mode are unchanged.
    """
    children = dict(model.named_children())
    if isinstance(children.get("features"), nn.Sequential):
        scope = [(f"features.{name}", child) for name, child in children["features"].named_children()]
    else:
        scope = [(name, child) for name, child in children.items()]
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            if isinstance(output, torch.Tensor):
                shapes[name] = tuple(output.shape)
        return hook

    handles = [child.register_forward_hook(recorder(name)) for name, child in scope]
    try:
        with preserved_modes(model):
            model.eval()(sample[:1].to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    stages: list[tuple[tuple[int, int], str]] = []
    for name, _ in scope:
        shape = shapes.get(name)
        if shape is None or len(shape) != 4 or shape[2] * shape[3] <= 1:
            continue
        if stages and stages[-1][0] == shape[2:]:
            stages[-1] = (shape[2:], name)
        else:
            stages.append((shape[2:], name))
    if not stages:
        raise ValueError("found no convolutional stage (a child with [N, C, H, W] output, H·W > 1); "
                         "NAD needs feature maps: pass NADConfig(layers=(...)) with conv layer names")
    return [name for _, name in stages[-count:]]


def check_inputs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Clear errors before any work: a module, float images ``[N, C, H, W]`` in [0, 1], labels ``[N]``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_images(images)
    check_labels(labels, images.shape[0], num_classes=None)


def require_trigger(trigger: Trigger | None, images: torch.Tensor, method: str) -> Trigger:
    """The BDK baselines need δ: raise without it, and check that it maps a batch to the same shape."""
    if trigger is None:
        raise ValueError(f"{method} works with backdoor knowledge (BDK): pass trigger=, the known trigger δ")
    if not callable(trigger):
        raise TypeError(f"trigger must be callable images -> images, got {type(trigger).__name__}")
    check_trigger_output(trigger(images[:2]), images[:2])
    return trigger


def magnify(trigger: Trigger, factor: float) -> Trigger:
    """``trigger.magnified(factor)`` where the trigger has it (patch opacity × factor, capped; Narcissus δ × factor);
    the trigger itself for ``factor == 1`` or a trigger without ``magnified``."""
    if factor == 1 or not hasattr(trigger, "magnified"):
        return trigger
    return trigger.magnified(factor)


def with_trigger(trigger: Trigger) -> TransformFn:
    """A :func:`actedit.training.fit` ``transform`` doubling each batch: ``[x; δ(x)]`` with labels ``[y; y]``.

    The loss functions of actFT and BaEraser split the batch back into its clean and poisoned halves.
    """
    def transform(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([x, trigger(x)]), torch.cat([y, y])
    return transform


def fine_tune(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, train: TrainConfig,
              objective: Objective | None = None, transform: TransformFn | None = None,
              device: str | torch.device = "cpu", progress: bool = False, desc: str = "fine-tune") -> nn.Module:
    """What every unlearning baseline does around its loss: check the inputs, copy ``model`` to ``device``, return
    the untouched copy when ``train`` cannot change it, else :func:`~actedit.training.fit` the copy.

    ``objective(copy)`` is a context manager yielding the loss ``loss(net, x, y)`` (default: cross-entropy); it is
    entered only when the copy trains, so hooks it registers (:class:`Features`) live exactly as long as the fit.
    Zero epochs or a zero learning rate return the copy untrained: a zero-lr pass in train mode would still move
    BatchNorm's running statistics. The copy keeps ``model``'s train/eval flags (``fit`` restores them); the
    caller's model is never moved or trained.
    """
    check_inputs(model, images, labels)
    tuned = copy.deepcopy(model).to(device)
    if train.epochs == 0 or train.lr == 0:
        return tuned
    with (objective(tuned) if objective is not None else nullcontext(None)) as loss:
        fit(tuned, images, labels, config=train, loss=loss, transform=transform, device=device, progress=progress,
            desc=desc)
    return tuned


def check_positive(owner: str, name: str, value: object, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{owner}.{name} must be a finite {kind} number, got {value!r}")


def check_train(owner: str, train: object) -> None:
    """A baseline config's optimisation settings must be a :class:`~actedit.training.TrainConfig`."""
    if not isinstance(train, TrainConfig):
        raise TypeError(f"{owner}.train must be a TrainConfig, got {type(train).__name__}")
