"""Shared pytest set-up and the helpers many test modules use (import them: ``from conftest import fingerprint``).

One torch thread (faster and steadier on 2-core machines), no network. Helpers: :func:`fingerprint` (a model's
weights, buffers and train/eval flags, to prove a function left it unchanged), :func:`no_hooks`, and the tiny
victims :func:`tiny_model`, :func:`tiny_data` and :func:`tiny_victim` (an :class:`actedit.experiments.Victim`
on random 16 px images).
"""
import hashlib

import torch
from torch import nn

torch.set_num_threads(1)


def fingerprint(model: nn.Module) -> tuple[str, tuple[bool, ...]]:
    """SHA-256 over every parameter and buffer (names, dtypes, shapes, bytes) and the train/eval flags."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest(), tuple(m.training for m in model.modules())


def no_hooks(model: nn.Module) -> bool:
    """True when no module of ``model`` holds a forward hook or pre-hook."""
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def tiny_model(channels: int = 1) -> nn.Module:
    """The package's small CNN, 4 classes, width 4, seeded."""
    from actedit.models import SmallCNN

    torch.manual_seed(0)
    return SmallCNN(channels, num_classes=4, width=4)


def tiny_data(channels: int = 1, n: int = 24, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded random images ``[n, channels, size, size]`` and labels ``arange(n) % 4``."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, channels, size, size, generator=g), torch.arange(n) % 4


def tiny_victim(channels: int = 1):
    """A :class:`~actedit.experiments.Victim` of :func:`tiny_model` (untrained, eval mode): D_T 40, D_U 24 and D_V
    20 random 16 px images, the white trigger, y_t = 1."""
    from actedit.data import ImageSet, Splits
    from actedit.experiments import Victim, VictimSpec
    from actedit.poisoning import PoisonConfig, poison
    from actedit.triggers import make_trigger

    g = torch.Generator().manual_seed(2)

    def part(n):
        return ImageSet(torch.rand(n, channels, 16, 16, generator=g), torch.arange(n) % 4)

    splits = Splits(name="tiny", num_classes=4, channels=channels, size=16, top_k=1,
                    class_names=("a", "b", "c", "d"), train=part(40), unseen=part(24), test=part(20))
    trigger = make_trigger("white", channels=channels, size=16)
    spec = VictimSpec(dataset="fashion-mnist", target=1, epochs=1, batch_size=8)
    poisoned = poison(splits.train, trigger, PoisonConfig(rate=0.1, target=1))
    return Victim(spec, tiny_model(channels).eval(), splits, trigger, trigger.magnified(3), poisoned)
