"""Where the edit's time goes: :func:`profile_edit` times each stage of :func:`actedit.edit_model` on its own.

Used by ``bench/run.py --only profile``; it mirrors the implementation of ``edit_model`` (extract → factors →
apply → finite check), so it lives beside the benchmark rather than in the package.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from actedit import efficiency
from actedit.capture import TraceDict
from actedit.edit import EditConfig, apply_factors, compute_factors, edit_model, extract, select_layers
from actedit.validation import check_images, check_trigger_output

Trigger = Callable[[torch.Tensor], torch.Tensor]

# Stages of the edit timed by profile_edit, in the order edit_model runs them.
PROFILE_STAGES = ("validate", "select_layers", "copy_model", "trigger", "forward", "hooks", "factors", "apply",
                  "finite_check")


def profile_edit(model: nn.Module, images: torch.Tensor, *, trigger: Trigger | None = None,
                 config: EditConfig | None = None, warmup: int = 1, repeats: int = 3,
                 device: str | torch.device = "cpu", clock: str = "wall") -> dict[str, float]:
    """Median seconds of each stage of :func:`actedit.edit_model`, timed one by one (:data:`PROFILE_STAGES`).

    - ``validate``: the input check (:func:`actedit.validation.check_images`);
    - ``select_layers``: computing L;
    - ``copy_model``: ``copy.deepcopy`` of the model (the invariant "return a copy");
    - ``trigger``: applying δ to every batch of D_U and checking its output (BDK only);
    - ``forward``: the plain forward pass over D_U in the extraction's BN mode;
    - ``hooks``: what capturing the layers of L adds to that pass (:class:`~actedit.capture.TraceDict` running
      means: forward with hooks − forward);
    - ``factors``: pooling, normalisation and rescaling (Eq. 2–4, :func:`~actedit.edit.compute_factors`);
    - ``apply``: the in-place multiplies of Eq. 5 (:func:`~actedit.edit.apply_factors` without its copy);
    - ``finite_check``: the check that the edited weights are finite (``aminmax`` of each weight in L).

    Plus ``edit_model`` (the whole call), ``sum_of_stages`` and ``unattributed`` (= whole − sum: mode switches,
    Python overhead, and whatever a stage costs differently when run alone). ``clock="cpu"`` reports this
    process's CPU time instead of wall time (steadier on a loaded CPU; not for GPU work). The stages mirror the
    implementation of ``edit_model`` at the time of writing; they are measured on scratch copies and leave
    ``model`` unchanged.
    """
    check_images(images)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    key = "seconds" if clock == "wall" else "cpu_seconds"
    config = dataclasses.replace(config or EditConfig(), device=str(device))
    model = model.to(device)
    bdk = trigger is not None
    mode = config.bn_mode(bdk)
    bs = config.batch_size
    layers = select_layers(model, config.layers)
    scratch = copy.deepcopy(model)
    batches = [images[s:s + bs] for s in range(0, images.shape[0], bs)]

    def run_trigger() -> None:
        for x in batches:
            check_trigger_output(trigger(x), x)

    def run_forward() -> None:
        efficiency.forward_pass(scratch, images, batch_size=bs, device=device, bn=mode)

    def run_capture() -> None:
        with TraceDict(scratch, layers, input=config.activation == "input") as traces:
            efficiency.forward_pass(scratch, images, batch_size=bs, device=device, bn=mode)
        for t in traces.values():
            t.mean  # noqa: B018 — reading the means is part of capture

    extraction = extract(model, images, trigger=trigger, config=config)
    factors = compute_factors(extraction, config)
    modules = dict(scratch.named_modules())
    edited = [modules[name].weight for name in factors]
    calls: dict[str, Callable[[], Any]] = {
        "validate": lambda: check_images(images),
        "select_layers": lambda: select_layers(model, config.layers),
        "copy_model": lambda: copy.deepcopy(model),
        "trigger": run_trigger if bdk else None,
        "forward": run_forward,
        "capture": run_capture,
        "factors": lambda: compute_factors(extraction, config),
        "apply": lambda: apply_factors(extraction, factors, copy_model=False),
        "finite_check": lambda: [bool(torch.isfinite(torch.stack(w.detach().aminmax())).all()) for w in edited],
        "edit_model": lambda: edit_model(model, images, trigger=trigger, config=config),
    }
    result: dict[str, float] = {}
    for name, fn in calls.items():
        result[name] = 0.0 if fn is None else efficiency.time_call(fn, warmup=warmup, repeats=repeats, device=device)[1][key]
    result["hooks"] = max(result.pop("capture") - result["forward"], 0.0)
    total = result.pop("edit_model")
    ordered = {name: result[name] for name in PROFILE_STAGES}
    ordered["sum_of_stages"] = sum(ordered.values())
    ordered["edit_model"] = total
    ordered["unattributed"] = total - ordered["sum_of_stages"]
    return ordered
