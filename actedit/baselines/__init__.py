"""The unlearning baselines of §4.1 and the retrained reference, with one calling convention.

Offers :func:`basic_ft`, :func:`nad` (¬BDK), :func:`act_ft`, :func:`ba_eraser` (BDK), their frozen configs
(:class:`BasicFTConfig`, :class:`NADConfig`, :class:`ActFTConfig`, :class:`BaEraserConfig`), :func:`retrain`, and
:data:`BASELINES` (name → function) for loops over all four::

    from actedit.baselines import BASELINES, BaEraserConfig
    from actedit.timing import timed
    for name, method in BASELINES.items():
        config = BaEraserConfig(target=2) if name == "BaEraser" else None
        with timed() as t:
            unlearned = method(victim, images, labels, trigger=trigger, config=config)

Every unlearning baseline has the signature
``method(model, images, labels, *, trigger=None, config=None, device="cpu", progress=False) -> nn.Module`` and
returns a trained copy: the victim stays bitwise unchanged. The BDK methods require ``trigger``; the ¬BDK ones
ignore it. All training goes through :func:`actedit.training.fit`. One module per method, each citing its paper:
:mod:`.finetune` (basicFT), :mod:`.attention_distillation` (NAD, Li et al. 2021), :mod:`.activation_finetune`
(actFT, after Qiao et al. 2019), :mod:`.unlearning` (BaEraser, Liu et al. 2022), :mod:`.retraining`; and
:mod:`.comparison` (:func:`run_comparison`: all six methods of Tables 3, 4 and 10 on one victim, scored by Eq. 6).
"""
from __future__ import annotations

from typing import Callable

from ._common import Features, penultimate_layer, stage_layers
from .activation_finetune import ActFTConfig, act_ft
from .attention_distillation import NADConfig, attention_loss, attention_map, nad
from .comparison import METHODS, best_methods, in_setting, run_comparison, score_table, victim_configs
from .finetune import BasicFTConfig, basic_ft
from .retraining import retrain
from .unlearning import BaEraserConfig, ba_eraser

__all__ = ["basic_ft", "nad", "act_ft", "ba_eraser", "retrain", "BasicFTConfig", "NADConfig", "ActFTConfig",
           "BaEraserConfig", "BASELINES", "BDK", "CONFIGS", "Features", "stage_layers", "penultimate_layer",
           "attention_map", "attention_loss", "METHODS", "run_comparison", "victim_configs", "best_methods", "score_table", "in_setting"]

#: name (as in the paper's tables) → baseline function
BASELINES: dict[str, Callable] = {"actFT": act_ft, "BaEraser": ba_eraser, "basicFT": basic_ft, "NAD": nad}
#: whether each baseline needs backdoor knowledge (the trigger)
BDK: dict[str, bool] = {"actFT": True, "BaEraser": True, "basicFT": False, "NAD": False}
#: name → its config class
CONFIGS: dict[str, type] = {"actFT": ActFTConfig, "BaEraser": BaEraserConfig, "basicFT": BasicFTConfig,
                            "NAD": NADConfig}
