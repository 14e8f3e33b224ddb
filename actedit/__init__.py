"""actedit — activation-guided model editing against backdoors (Hsieh et al.), as a library.

The public API::

    import actedit
    edited = actedit.edit_model(victim, images, trigger=trigger)          # BDK (Eq. 1-5)
    edited = actedit.edit_model(victim, images)                           # ¬BDK
    fixed = actedit.repair(edited, images, labels, trigger=trigger)       # §3.1 repair
    actedit.evaluate(fixed, test_x, test_y, trigger=trigger, target=2)    # {"asr", "acc", "ctca", ...}

Modules, one per paper concept: data, triggers, narcissus, poisoning, models, training, capture, edit, repair,
baselines, metrics, experiments (victims, the method registry, the runner), session, cache, paper, report, params, timing,
efficiency, widgets, detect, io, cli.
"""
__version__ = "0.1.0"

from .edit import EditConfig, compute_factors, edit_model, extract, select_layers  # noqa: E402
from .metrics import evaluate, score  # noqa: E402
from .repair import RepairConfig, repair  # noqa: E402
from .seeding import set_seed  # noqa: E402

__all__ = ["__version__", "EditConfig", "edit_model", "extract", "compute_factors", "select_layers", "repair",
           "RepairConfig", "evaluate", "score", "set_seed"]
