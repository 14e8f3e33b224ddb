"""Victim architectures: the paper's four torchvision models adapted to small images, and a small BN CNN.

Offers :func:`build_model` and :data:`MODELS`. The paper (§4.1) uses ResNet18, VGG16, EfficientNetV2-S and
MobileNetV3-small; on 28/32-pixel inputs their ImageNet stems would shrink the image to a few pixels, so the first
convolution becomes a stride-1 3x3 convolution (the usual CIFAR adaptation) and it takes the input's channel count.
``"cnn"`` is the embedded default of this book: five conv-BN-ReLU blocks and a linear head that learns a strong
backdoor on Fashion-MNIST in about a minute on two CPU cores.

``width`` scales every architecture's channel counts (a CPU can train ResNet18 at a quarter width) and keeps its
topology exactly: the same modules under the same ``named_modules()`` names — depth, residual connections,
BatchNorm placement, depthwise convolutions and squeeze-excitation blocks, the small-image stem — only narrower.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "scaled_channels", "multiply_adds", "SmallCNN"]


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Sequential):
    """A plain ``nn.Sequential`` CNN with BatchNorm: the book's base victim.

    Shape: input ``[N, C, H, W]`` (H = W ≥ 8) → logits ``[N, num_classes]``.

    >>> SmallCNN(1, 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 16) -> None:
        w = width
        super().__init__(
            *_block(channels, w), nn.MaxPool2d(2),
            *_block(w, 2 * w), *_block(2 * w, 2 * w), nn.MaxPool2d(2),
            *_block(2 * w, 4 * w), *_block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * w, num_classes),
        )


def _torchvision_models():
    """``torchvision.models``, imported on first use: importing torchvision costs ~1.5 s (it pulls in
    torch._dynamo), which every kernel of the book would pay for the small CNN alone."""
    from torchvision import models

    return models


def scaled_channels(c: int, width: float) -> int:
    """A channel count ``c`` at ``width``: ``c`` itself at 1.0, else ``c · width`` rounded to a multiple of 8, and
    at least 8 — so depthwise convolutions keep one group per channel and squeeze-excitation blocks a non-empty
    bottleneck at any width.

    >>> scaled_channels(64, 0.25), scaled_channels(16, 0.25), scaled_channels(960, 1.0)
    (16, 8, 960)
    """
    if width == 1.0:
        return c
    return max(8, 8 * round(c * width / 8))


def _normal_linear(m: nn.Linear) -> None:   # torchvision's VGG and MobileNetV3
    nn.init.normal_(m.weight, 0, 0.01)
    nn.init.zeros_(m.bias)


def _uniform_linear(m: nn.Linear) -> None:  # torchvision's EfficientNet
    bound = 1.0 / math.sqrt(m.out_features)
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


def _narrowed(build: Callable[[], nn.Module], width: float,
              linear_init: Callable[[nn.Linear], None] | None) -> nn.Module:
    """``build()`` with every hidden channel count scaled by :func:`scaled_channels`; the module tree is unchanged.

    At width 1.0 this is ``build()`` itself. Otherwise the full-width model is built on the meta device (no memory,
    no random numbers) and each conv, BatchNorm and linear layer is replaced, in ``named_modules()`` order, by a
    narrower one of the same kind and settings; the input channels of the first conv and the outputs of the last
    linear layer (the logits) are kept. Since connected layers share their channel count at full width, they
    share the scaled one: residual sums, depthwise convs (groups = channels) and SE blocks stay consistent. New
    layers get torchvision's initialisation: Kaiming-normal (fan-out) convs, BatchNorm at 1/0, and
    ``linear_init`` for linear layers (None: PyTorch's default, as torchvision's ResNet).
    """
    if width == 1.0:
        return build()
    with torch.device("meta"):
        model = build()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    first_conv = next(n for n, m in layers if isinstance(m, nn.Conv2d))
    last_linear = [n for n, m in layers if isinstance(m, nn.Linear)][-1]
    for name, m in layers:
        parent, _, attr = name.rpartition(".")
        new = _narrow_layer(m, width, keep_in=name == first_conv, keep_out=name == last_linear, linear_init=linear_init)
        setattr(model.get_submodule(parent) if parent else model, attr, new)
    # a layer kind this function does not know holds weights: refuse rather than return a half-built model (under
    # a caller's meta-device context, as in multiply_adds, every tensor is meta and that is intended)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left and not torch.empty(0).is_meta:
        raise NotImplementedError(f"cannot scale the width of {', '.join(left)}")
    return model


def _narrow_layer(m: nn.Module, width: float, *, keep_in: bool, keep_out: bool,
                  linear_init: Callable[[nn.Linear], None] | None) -> nn.Module:
    if isinstance(m, nn.BatchNorm2d):
        new = nn.BatchNorm2d(scaled_channels(m.num_features, width), eps=m.eps, momentum=m.momentum, affine=m.affine,
                             track_running_stats=m.track_running_stats)
        return new  # PyTorch's default BatchNorm init is torchvision's (weight 1, bias 0)
    if isinstance(m, nn.Linear):
        new = nn.Linear(m.in_features if keep_in else scaled_channels(m.in_features, width),
                        m.out_features if keep_out else scaled_channels(m.out_features, width), bias=m.bias is not None)
        if linear_init is not None:
            linear_init(new)
        return new
    c_in = m.in_channels if keep_in else scaled_channels(m.in_channels, width)
    c_out = scaled_channels(m.out_channels, width)
    if m.groups == 1:
        groups = 1
    elif m.groups == m.in_channels == m.out_channels:  # depthwise: one group per channel at any width
        groups = c_in
    else:
        raise NotImplementedError(f"cannot scale a grouped convolution with {m.groups} groups: {m}")
    new = nn.Conv2d(c_in, c_out, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                    groups=groups, bias=m.bias is not None, padding_mode=m.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _resnet18(channels: int, num_classes: int, size: int, width: float) -> nn.Module:
    m = _narrowed(lambda: _torchvision_models().resnet18(weights=None, num_classes=num_classes), width,
                  None)
    stem = m.bn1.num_features
    if size <= 64:  # CIFAR stem: keep resolution for 28-64 px inputs
        m.conv1 = nn.Conv2d(channels, stem, 3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    else:
        m.conv1 = nn.Conv2d(channels, stem, 7, stride=2, padding=3, bias=False)
    return m


def _vgg16(channels: int, num_classes: int, size: int, width: float) -> nn.Module:
    # VGG16 with BatchNorm (the paper's method targets models "with or without BN"; the BN variant trains from
    # scratch reliably). The 4096-wide ImageNet head is scaled to 512 for 32-px inputs, as in CIFAR VGGs.
    m = _narrowed(lambda: _torchvision_models().vgg16_bn(weights=None, num_classes=num_classes), width, _normal_linear)
    first = m.features[0]
    m.features[0] = nn.Conv2d(channels, first.out_channels, 3, padding=1)
    if size < 32:  # 28 px: 28→14→7→3→1 after four pools; a fifth would reach 0
        m.features[-1] = nn.Identity()
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    c = scaled_channels(512, width)
    m.classifier = nn.Sequential(
        nn.Linear(c, c), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(c, c), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(c, num_classes),
    )
    return m


def _efficientnet_v2_s(channels: int, num_classes: int, size: int, width: float) -> nn.Module:
    m = _narrowed(lambda: _torchvision_models().efficientnet_v2_s(weights=None, num_classes=num_classes), width,
                  _uniform_linear)
    conv = m.features[0][0]
    m.features[0][0] = nn.Conv2d(channels, conv.out_channels, 3, stride=1 if size <= 64 else 2, padding=1, bias=False)
    return m


def _mobilenet_v3_small(channels: int, num_classes: int, size: int, width: float) -> nn.Module:
    m = _narrowed(lambda: _torchvision_models().mobilenet_v3_small(weights=None, num_classes=num_classes), width,
                  _normal_linear)
    for bn in m.modules():
        # torchvision's BatchNorm momentum 0.01 suits ImageNet-length training; after the few hundred steps of this
        # book's recipes its running statistics still lag the weights (eval-mode accuracy at chance while
        # train-mode accuracy is ~85 %), so MobileNetV3 gets PyTorch's 0.1, as the other architectures have.
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = 0.1
    conv = m.features[0][0]
    m.features[0][0] = nn.Conv2d(channels, conv.out_channels, 3, stride=1 if size <= 64 else 2, padding=1, bias=False)
    return m


def _cnn(channels: int, num_classes: int, size: int, width: float) -> nn.Module:
    return SmallCNN(channels, num_classes, width=scaled_channels(16, width))


_BUILDERS: dict[str, Callable[[int, int, int, float], nn.Module]] = {
    "cnn": _cnn,
    "resnet18": _resnet18,
    "vgg16": _vgg16,
    "efficientnet_v2_s": _efficientnet_v2_s,
    "mobilenet_v3_small": _mobilenet_v3_small,
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, *, num_classes: int, channels: int, size: int, width: float = 1.0) -> nn.Module:
    """Build an untrained classifier.

    Arguments:
        name: one of :data:`MODELS`.
        num_classes: number of output logits.
        channels: input channels (1 for MNIST-like data, 3 for colour).
        size: input height = width in pixels (decides the stem).
        width: channel multiplier, 1.0 = the architecture as published (the paper's). Every hidden channel count
            ``c`` becomes :func:`scaled_channels` ``(c, width)``; the module tree and its names stay the same. The
            edit's layer list L (:func:`actedit.edit.select_layers`) names the same layers as at full width down to
            0.125 (ResNet18, EfficientNetV2-S), 0.25 (VGG16, small CNN) and 0.5 (MobileNetV3-small, whose depthwise
            weights grow with the width rather than its square); ``tests/test_models.py`` checks these.

    >>> build_model("cnn", num_classes=10, channels=1, size=28)(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    for arg, value in (("num_classes", num_classes), ("channels", channels), ("size", size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width < math.inf:
        raise ValueError(f"width must be a positive number (1.0: the published architecture), got {width!r}")
    return _BUILDERS[name](channels, num_classes, size, float(width))


def multiply_adds(name: str, *, channels: int, size: int, width: float = 1.0, num_classes: int = 10) -> int:
    """Multiply-adds of the conv and linear layers of one forward pass of one image — a machine-independent
    measure of what an architecture costs to train (a training step costs about three forward passes).

    Counted on the meta device: no weights are allocated and nothing is computed.

    >>> multiply_adds("cnn", channels=1, size=28) > multiply_adds("cnn", channels=1, size=28, width=0.5)
    True
    """
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, channels=channels, size=size, width=width)
        total = 0

        def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            nonlocal total
            if isinstance(module, nn.Conv2d):
                total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
            else:
                total += output.numel() * module.in_features

        handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        try:
            model.eval()(torch.empty(1, channels, size, size))
        finally:
            for h in handles:
                h.remove()
    return int(total)
