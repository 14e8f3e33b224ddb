"""The unlearning baselines of §4.1, with one calling convention.

Offers :func:`basic_ft`, :func:`nad` (¬BDK), :func:`act_ft`, :func:`ba_eraser` (BDK) and their frozen configs
(:class:`BasicFTConfig`, :class:`NADConfig`, :class:`ActFTConfig`, :class:`BaEraserConfig`), each holding its
optimisation settings as ``train: TrainConfig``. The defaults are the authors' reference schedules where a source
gives one (basicFT: BackdoorBench's 100-epoch FT defense; NAD: the official code's 10-epoch teacher and 20-epoch
student; actFT: the paper's own description; BaEraser: ours), each cited in its module; the book runs the short
recipe of :func:`actedit.experiments.victim_configs` instead. The list of methods — these four and the edit, with
whether each needs the trigger — is :data:`actedit.experiments.METHODS`, and one runner runs them all::

    from actedit.experiments import METHODS, run_method
    unlearned = run_method("BaEraser", victim.model, images, labels, trigger=victim.trigger)

Every unlearning baseline has the signature
``method(model, images, labels, *, trigger=None, config=None, device="cpu", progress=False) -> nn.Module`` and
returns a trained copy: the victim stays bitwise unchanged. The BDK methods require ``trigger``; the ¬BDK ones
ignore it. All training goes through :func:`actedit.training.fit` by way of one helper (:func:`._common.fine_tune`).
One module per method, each citing its paper: :mod:`.finetune` (basicFT), :mod:`.attention_distillation` (NAD,
Li et al. 2021), :mod:`.activation_finetune` (actFT, after Qiao et al. 2019), :mod:`.unlearning` (BaEraser, Liu et
al. 2022). The retrained reference R is :func:`actedit.experiments.get_retrained`.
"""
from __future__ import annotations

from ._common import Features, penultimate_layer, stage_layers
from .activation_finetune import ActFTConfig, act_ft
from .attention_distillation import NADConfig, attention_loss, attention_map, nad
from .finetune import BasicFTConfig, basic_ft
from .unlearning import BaEraserConfig, ba_eraser

__all__ = ["basic_ft", "nad", "act_ft", "ba_eraser", "BasicFTConfig", "NADConfig", "ActFTConfig", "BaEraserConfig",
           "Features", "stage_layers", "penultimate_layer", "attention_map", "attention_loss"]
