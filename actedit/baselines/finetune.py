"""basicFT: fine-tune the victim on clean D_U "in the same way as the initial training" (§4.1, baseline 3, ¬BDK).

Offers :class:`BasicFTConfig` and :func:`basic_ft`. The paper gives no further detail. The library default is the
reference schedule of the fine-tuning defense in BackdoorBench (Wu et al. 2022, SCLBD/BackdoorBench,
``config/defense/ft/config.yaml`` and ``defense/ft.py``): 100 epochs, batch 256, SGD (momentum 0.9, weight decay
5e-4) at lr 0.01 with ``CosineAnnealingLR``, on the clean data with the dataset's training augmentation
(``get_transform(..., train=True)``: random crop + horizontal flip on CIFAR10). Two differences of form: our cosine
decays per step rather than per epoch, and our augmentation is :func:`actedit.training.fit`'s crop (pad 4) + flip.

The book reads "the same way as the initial training" as the victim's own short recipe instead
(:func:`actedit.experiments.victim_configs`: momentum SGD, weight decay, cosine decay, the victim's epochs,
learning rate and batch size, no augmentation) because 100 epochs per baseline run do not fit its build budget.
The paper's Tables 6/7 show what fine-tuning does with little data: with 5000 CIFAR10 samples ACC falls from 70.5
to 52.6 %, with 500 or fewer the model collapses to chance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..training import TrainConfig
from ._common import Trigger, check_train, fine_tune

__all__ = ["BasicFTConfig", "basic_ft", "BACKDOORBENCH_FT"]
log = logging.getLogger(__name__)

#: BackdoorBench's FT defense (SCLBD/BackdoorBench, config/defense/ft/config.yaml; defense/ft.py trains with
#: get_transform(train=True)): the reference schedule of basicFT and the default of :class:`BasicFTConfig`
BACKDOORBENCH_FT = TrainConfig(
    epochs=100,             # epochs: 100
    batch_size=256,         # batch_size: 256
    lr=0.01,                # lr: 0.01
    momentum=0.9,           # client_optimizer: sgd, sgd_momentum: 0.9
    weight_decay=5e-4,      # wd: 5.0e-4
    optimizer="sgd",
    schedule="cosine",      # lr_scheduler: CosineAnnealingLR (BackdoorBench steps it per epoch, we per step)
    augment=True,           # the dataset's training transform: random crop + horizontal flip
)


@dataclass(frozen=True)
class BasicFTConfig:
    """basicFT: fine-tuning on the clean D_U (§4.1 "in the same way as the initial training").

    ``train`` defaults to BackdoorBench's FT defense schedule, :data:`BACKDOORBENCH_FT` (100 epochs, batch 256,
    SGD lr 0.01 with cosine decay, momentum 0.9, weight decay 5e-4, training augmentation). The book passes the
    victim's own short recipe instead (:func:`actedit.experiments.victim_configs`), as
    ``BasicFTConfig(train=recipe)``.
    """

    train: TrainConfig = BACKDOORBENCH_FT   # the reference schedule (TrainConfig is frozen: sharing it is safe)

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
        config: :class:`BasicFTConfig` (default: BackdoorBench's 100-epoch FT schedule).

    Returns:
        the fine-tuned copy on ``device``, in ``model``'s train/eval mode. A config with zero epochs or a zero
        learning rate returns an untouched copy.
    """
    config = config or BasicFTConfig()
    return fine_tune(model, images, labels, train=config.train, device=device, progress=progress, desc="basicFT")
