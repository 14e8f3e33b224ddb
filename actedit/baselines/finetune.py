"""basicFT: fine-tune the victim on clean D_U "in the same way as the initial training" (§4.1, baseline 3, ¬BDK).

Offers :class:`BasicFTConfig` and :func:`basic_ft`. The paper gives no further detail; "the same way" is read as
the victim's own recipe (:class:`actedit.experiments.VictimSpec`: momentum SGD, weight decay, cosine decay, its
epochs, learning rate and batch size), only on D_U instead of D_T. Its Tables 6/7 show what that does with little
data: with 5000 CIFAR10 samples ACC falls from 70.5 to 52.6 %, with 500 or fewer the model collapses to chance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..experiments import VictimSpec
from ..training import TrainConfig, fit
from ._common import Trigger, check_inputs, check_schedule, fresh_copy, train_config, trains

__all__ = ["BasicFTConfig", "basic_ft"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BasicFTConfig:
    """basicFT: the victim's training recipe, applied to D_U (§4.1 "in the same way as the initial training").

    The defaults follow :class:`~actedit.experiments.VictimSpec` (and :class:`~actedit.training.TrainConfig` for
    momentum, weight decay and schedule), so they track the book's victim; :meth:`like` copies another recipe.
    """

    epochs: int = VictimSpec.epochs            # the victim's epochs, now over D_U
    lr: float = VictimSpec.lr                  # the victim's learning rate
    batch_size: int = VictimSpec.batch_size
    momentum: float = TrainConfig.momentum
    weight_decay: float = TrainConfig.weight_decay
    schedule: str = TrainConfig.schedule       # per-step cosine decay to 0, as the victim
    seed: int = 0                              # batch order

    def __post_init__(self) -> None:
        check_schedule("BasicFTConfig", epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                       momentum=self.momentum, weight_decay=self.weight_decay)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"BasicFTConfig.schedule must be 'cosine' or 'constant', got {self.schedule!r}")

    @classmethod
    def like(cls, recipe: TrainConfig, **changes) -> "BasicFTConfig":
        """The config that repeats ``recipe`` (e.g. ``victim.spec.train_config()``) on D_U."""
        fields = dict(epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay, schedule=recipe.schedule, seed=recipe.seed)
        fields.update(changes)
        return cls(**fields)


def basic_ft(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger | None = None,
             config: BasicFTConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = False) -> nn.Module:
    """basicFT (¬BDK): a copy of ``model`` fine-tuned with cross-entropy on the clean D_U.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> tuned = basic_ft(net, torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)), config=BasicFTConfig(epochs=1))
    >>> tuned is net
    False

    Arguments:
        model: the victim f_θ; left bitwise unchanged.
        images: D_U, ``[N, C, H, W]`` float in [0, 1].
        labels: ``[N]`` int64, the true labels.
        trigger: ignored — basicFT works without backdoor knowledge; accepted so that every baseline has one
            signature.
        config: :class:`BasicFTConfig` (default: the victim's recipe).

    Returns:
        the fine-tuned copy on ``device``, in ``model``'s train/eval mode. A config with zero epochs or a zero
        learning rate returns an untouched copy.
    """
    config = config or BasicFTConfig()
    check_inputs(model, images, labels)
    tuned = fresh_copy(model, device)
    if trains(config.epochs, config.lr):
        fit(tuned, images, labels, config=train_config(config, schedule=config.schedule), device=device,
            progress=progress, desc="basicFT")
    tuned.train(model.training)
    return tuned
