"""Victim architectures: the paper's four torchvision models adapted to small images, and a small BN CNN.

Offers :func:`build_model` and :data:`MODELS`. The paper (§4.1) uses ResNet18, VGG16, EfficientNetV2-S and
MobileNetV3-small; on 28/32-pixel inputs their ImageNet stems would shrink the image to a few pixels, so the first
convolution becomes a stride-1 3x3 convolution (the usual CIFAR adaptation) and it takes the input's channel count.
``"cnn"`` is the embedded default of this book: five conv-BN-ReLU blocks and a linear head that learns a strong
backdoor on Fashion-MNIST in about a minute on two CPU cores.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "build_model", "SmallCNN"]


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


def _resnet18(channels: int, num_classes: int, size: int) -> nn.Module:
    m = _torchvision_models().resnet18(weights=None, num_classes=num_classes)
    if size <= 64:  # CIFAR stem: keep resolution for 28-64 px inputs
        m.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        m.maxpool = nn.Identity()
    else:
        m.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return m


def _vgg16(channels: int, num_classes: int, size: int) -> nn.Module:
    # VGG16 with BatchNorm (the paper's method targets models "with or without BN"; the BN variant trains from
    # scratch reliably). The 4096-wide ImageNet head is scaled to 512 for 32-px inputs, as in CIFAR VGGs.
    m = _torchvision_models().vgg16_bn(weights=None, num_classes=num_classes)
    first = m.features[0]
    m.features[0] = nn.Conv2d(channels, first.out_channels, 3, padding=1)
    if size < 32:  # 28 px: 28→14→7→3→1 after four pools; a fifth would reach 0
        m.features[-1] = nn.Identity()
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.classifier = nn.Sequential(
        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )
    return m


def _efficientnet_v2_s(channels: int, num_classes: int, size: int) -> nn.Module:
    m = _torchvision_models().efficientnet_v2_s(weights=None, num_classes=num_classes)
    conv = m.features[0][0]
    m.features[0][0] = nn.Conv2d(channels, conv.out_channels, 3, stride=1 if size <= 64 else 2, padding=1, bias=False)
    return m


def _mobilenet_v3_small(channels: int, num_classes: int, size: int) -> nn.Module:
    m = _torchvision_models().mobilenet_v3_small(weights=None, num_classes=num_classes)
    conv = m.features[0][0]
    m.features[0][0] = nn.Conv2d(channels, conv.out_channels, 3, stride=1 if size <= 64 else 2, padding=1, bias=False)
    return m


def _cnn(channels: int, num_classes: int, size: int) -> nn.Module:
    return SmallCNN(channels, num_classes)


_BUILDERS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "cnn": _cnn,
    "resnet18": _resnet18,
    "vgg16": _vgg16,
    "efficientnet_v2_s": _efficientnet_v2_s,
    "mobilenet_v3_small": _mobilenet_v3_small,
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, *, num_classes: int, channels: int, size: int) -> nn.Module:
    """Build an untrained classifier.

    Arguments:
        name: one of :data:`MODELS`.
        num_classes: number of output logits.
        channels: input channels (1 for MNIST-like data, 3 for colour).
        size: input height = width in pixels (decides the stem).

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
    return _BUILDERS[name](channels, num_classes, size)
