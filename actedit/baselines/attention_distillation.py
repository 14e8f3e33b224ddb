"""NAD: Neural Attention Distillation (Li et al. 2021, ICLR, "Neural Attention Distillation: Erasing Backdoor
Triggers from Deep Neural Networks" [28]) — §4.1 baseline 4, ¬BDK.

Offers :class:`NADConfig`, :func:`nad`, :func:`attention_map` and :func:`attention_loss`. Two steps:

1. teacher = the victim fine-tuned on clean D_U — the paper's basicFT ("the basicFT model, acting as the teacher
   model, only passes on its ability to clean data", §4.1);
2. student = the victim trained on D_U with ``CE(f_s(x), y) + Σ_i β_i · AT(F_s^i(x), F_t^i(x))`` over three
   stages i, where the attention map of a feature map F ``[N, C, H, W]`` is ``a = Σ_c |F_c|^p`` (p = 2), flattened
   to ``[N, H·W]`` and L2-normalised per sample, and AT is the mean squared difference of the two maps — as in the
   NAD reference code (``F.mse_loss`` of the normalised maps; the NAD paper writes the L2 norm of the difference,
   the β values belong to the code's form).

The library defaults are the reference schedule of the official code (bboylyg/NAD): ``config.py`` (the version
with ``beta1/2/3 = 500/1000/1000``; another version in the repository's history has 0/0/5000), ``main.py`` and
``utils/util.py`` (``adjust_learning_rate``): the student trains 20 epochs, batch 64, SGD (momentum 0.9, weight
decay 1e-4) at lr 0.1 for epochs 0-1 and 0.01 from epoch 2 (the code's 1e-4 from epoch 20 is never reached),
p = 2, on 5 % of the training data with random crop + flip (+ Cutout, ``data_loader.py``); the teacher is the
victim fine-tuned the same way with β = 0, "for 5~10 epochs" (README, "How to get teacher model?") — 10 here.
Differences of form: the code's SGD is Nesterov and its augmentation adds Cutout(1, 3); ours is plain momentum SGD
with crop + flip (:func:`actedit.training.fit`).

The book runs a short schedule instead (:func:`actedit.experiments.victim_configs`): the teacher is basicFT with
the victim's recipe and the student gets the victim's epochs and learning rate with the cosine decay of our one
loop — 30 epochs of teacher and student per run do not fit its build budget. The paper's own timing points to
something short too: Table 7 gives NAD 114.9 s against basicFT's 71.56 s on 5000 images, i.e. the student costs
0.6× (if NAD's time includes its teacher) to 1.6× (if not; the student also runs the teacher forward) one basicFT
schedule.

The three stages map onto our models through :func:`actedit.baselines.stage_layers` (the last child of each of
the last three resolution stages): ResNet18 ``layer2``/``layer3``/``layer4`` (NAD's group 1/2/3 analogue), the
small CNN ``"2"``/``"9"``/``"16"`` (the ReLU of the last conv block before each pooling layer), VGG16
``features.22``/``.32``/``.42``.
"""
from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from ..training import LossFn, TrainConfig
from ._common import Features, Trigger, check_positive, check_train, fine_tune, stage_layers
from .finetune import BasicFTConfig, basic_ft

__all__ = ["NADConfig", "nad", "attention_map", "attention_loss", "NAD_TEACHER", "NAD_STUDENT"]
log = logging.getLogger(__name__)

#: the student's schedule in the NAD code (bboylyg/NAD config.py, main.py, utils/util.py adjust_learning_rate)
NAD_STUDENT = TrainConfig(
    epochs=20,              # --epochs 20
    batch_size=64,          # --batch_size 64
    lr=0.1,                 # --lr 0.1 for epochs 0-1 ...
    schedule="step",
    milestones=(2,),        # ... then 0.01 (adjust_learning_rate: epoch < 2: lr; epoch < 20: 0.01)
    momentum=0.9,           # --momentum 0.9 (the code's SGD is also Nesterov; ours is not)
    weight_decay=1e-4,      # --weight_decay 1e-4
    optimizer="sgd",
    augment=True,           # get_train_loader: RandomCrop(32, padding=4) + RandomHorizontalFlip (+ Cutout)
)
#: the teacher: the victim fine-tuned like the student with beta = 0, "5~10 epochs" (NAD README) — 10
NAD_TEACHER = replace(NAD_STUDENT, epochs=10)


@dataclass(frozen=True)
class NADConfig:
    """Hyperparameters of NAD (Li et al. 2021); defaults: the official code's schedule (see the module docstring).

    The book passes a short schedule instead (:func:`actedit.experiments.victim_configs`).
    """

    # step 1: the teacher, fine-tuned on D_U (§4.1: the basicFT model); NAD: 10 epochs of the student's schedule
    teacher: BasicFTConfig = field(default_factory=lambda: BasicFTConfig(train=NAD_TEACHER))
    # step 2: the student; NAD: 20 epochs, batch 64, lr 0.1 then 0.01 from epoch 2, momentum 0.9, weight decay 1e-4
    train: TrainConfig = NAD_STUDENT
    # attention distillation (NAD code config.py: p = 2, beta1/2/3 = 500/1000/1000 for CIFAR10)
    betas: tuple[float, ...] = (500.0, 1000.0, 1000.0)   # shallow -> deep stage
    p: float = 2.0
    layers: tuple[str, ...] | None = None       # None: stage_layers(model), the last len(betas) stage ends

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, BasicFTConfig):
            raise TypeError(f"NADConfig.teacher must be a BasicFTConfig, got {type(self.teacher).__name__}")
        check_train("NADConfig", self.train)
        if not isinstance(self.betas, tuple) or not self.betas:
            raise ValueError(f"NADConfig.betas must be a non-empty tuple of weights, got {self.betas!r}")
        for beta in self.betas:
            check_positive("NADConfig", "betas[i]", beta)
        check_positive("NADConfig", "p", self.p, allow_zero=False)
        if self.layers is not None:
            if not (isinstance(self.layers, tuple) and all(isinstance(n, str) for n in self.layers)):
                raise ValueError(f"NADConfig.layers must be None or a tuple of module names, got {self.layers!r}")
            if len(self.layers) != len(self.betas):
                raise ValueError(f"NADConfig.layers has {len(self.layers)} names but betas {len(self.betas)} weights")


def attention_map(features: torch.Tensor, p: float = 2.0, eps: float = 1e-6) -> torch.Tensor:
    """NAD's attention map: ``Σ_c |F_c|^p`` over channels, flattened and L2-normalised per sample.

    Shape: ``[N, C, H, W]`` → ``[N, H·W]`` (each row has norm ≈ 1).

    >>> attention_map(torch.ones(2, 3, 2, 2)).norm(dim=1)
    tensor([1.0000, 1.0000])
    """
    if features.ndim != 4:
        raise ValueError(f"attention maps need [N, C, H, W] feature maps, got {tuple(features.shape)}")
    a = features.abs().pow(p).sum(dim=1).flatten(1)
    return a / (a.norm(dim=1, keepdim=True) + eps)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """AT loss of NAD: mean squared difference of the two attention maps (NAD code: ``F.mse_loss``)."""
    return F.mse_loss(attention_map(student, p), attention_map(teacher, p))


def nad(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, trigger: Trigger | None = None,
        config: NADConfig | None = None, device: str | torch.device = "cpu", progress: bool = False,
        teacher: nn.Module | None = None) -> nn.Module:
    """NAD (¬BDK): distil a basicFT teacher's attention into a copy of the victim, on clean D_U.

    Arguments:
        model: the victim f_θ; left bitwise unchanged.
        images: D_U, ``[N, C, H, W]`` float in [0, 1]; labels: ``[N]`` int64, true labels.
        trigger: ignored — NAD works without backdoor knowledge; accepted for the common signature.
        config: :class:`NADConfig`.
        teacher: an already fine-tuned teacher (e.g. the result of :func:`basic_ft` on the same D_U with
            ``config.teacher``) to skip step 1; it is used in eval mode and not changed.

    Returns:
        the student, a copy of ``model`` on ``device`` in ``model``'s train/eval mode. Zero student epochs or a
        zero learning rate return an untouched copy (and no teacher is trained).
    """
    config = config or NADConfig()

    @contextmanager
    def objective(student: nn.Module) -> Iterator[LossFn]:
        layers = list(config.layers) if config.layers is not None else stage_layers(student, images[:1],
                                                                                   count=len(config.betas))
        betas = config.betas[-len(layers):]     # a model with fewer stages keeps the deeper stages' weights
        log.info("NAD attention layers %s with betas %s", layers, betas)
        given = teacher if teacher is not None else basic_ft(model, images, labels, config=config.teacher,
                                                             device=device, progress=progress)
        frozen = copy.deepcopy(given).to(device).eval().requires_grad_(False)
        with Features(student, layers) as fs, Features(frozen, layers) as ft:
            def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    frozen(x)
                value = F.cross_entropy(net(x), y)
                for name, beta in zip(layers, betas):
                    value = value + beta * attention_loss(fs[name], ft[name], config.p)
                return value
            yield loss

    return fine_tune(model, images, labels, train=config.train, objective=objective, device=device,
                     progress=progress, desc="NAD student")
