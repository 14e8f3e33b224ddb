"""basicFT: fine-tune the victim on clean D_U "in the same way as the initial training" (§4.1, baseline 3, ¬BDK).

Offers :class:`BasicFTConfig` and :func:`basic_ft`. The paper gives no further detail; "the same way" is read as
the victim's own recipe (:class:`actedit.experiments.VictimSpec`: momentum SGD, weight decay, cosine decay, its
epochs, learning rate and batch size), only on D_U instead of D_T. Its Tables 6/7 show what that does with little
data: with 5000 CIFAR10 samples ACC falls from 70.5 to 52.6 %, with 500 or fewer the model collapses to chance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..training import TrainConfig
from ._common import Trigger, check_train, fine_tune

__all__ = ["BasicFTConfig", "basic_ft"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BasicFTConfig:
    """basicFT: the victim's training recipe, applied to D_U (§4.1 "in the same way as the initial training").

    ``train`` defaults to :class:`~actedit.training.TrainConfig`'s defaults, which are the book's victim recipe
    (:meth:`actedit.experiments.VictimSpec.train_config`: momentum SGD, weight decay, per-step cosine decay, its
    epochs, learning rate and batch size); pass another victim's recipe as ``BasicFTConfig(train=recipe)``.
    """

    train: TrainConfig = field(default_factory=TrainConfig)   # the victim's recipe, now over D_U

    def __post_init__(self) -> None:
        check_train("BasicFTConfig", self.train)


def basic_ft(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger | None = None,
             config: BasicFTConfig | None = None, device: str | torch.device = "cpu",
             progress: bool = False) -> nn.Module:
    """basicFT (¬BDK): a copy of ``model`` fine-tuned with cross-entropy on the clean D_U.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> tuned = basic_ft(net, torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)),
    ...                  config=BasicFTConfig(TrainConfig(epochs=1)))
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
    return fine_tune(model, images, labels, train=config.train, device=device, progress=progress, desc="basicFT")
