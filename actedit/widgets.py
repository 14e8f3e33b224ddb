"""The γ/λ explorer: tune the edit live on a cached victim (supplement B.3, Fig. 4; issue 6).

Offers :class:`Explorer` (ipywidgets controls and plots over an :class:`actedit.session.EditSession`),
:func:`update_seconds` (time one update) and :func:`plot_gamma_lambda` (seaborn heatmaps of a γ × λ grid)::

    session = EditSession.from_victim(get_victim(spec), get_retrained(spec))
    explorer = Explorer(session)
    explorer                      # in Jupyter: the controls, the numbers, the per-class bars, the factor histogram
    explorer.set(gamma=1.0, lam=0.5, bdk=False)
    explorer.metrics              # {"stage": "edited", "asr": ..., "acc": ..., "ctca": ..., "score": ..., ...}

The computation (cached extraction, edit, evaluation) is the session's; this module only draws and reacts.
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, replace
from statistics import median
from typing import Sequence

from torch import nn

from .edit import LayerFactor
from .session import EditSession, ExplorerSettings
from .timing import timed

__all__ = ["Explorer", "update_seconds", "plot_gamma_lambda"]
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- widgets

_CONTROLS = ("gamma", "lam", "bdk", "bn", "alpha", "beta", "n_images", "layer", "lr")
_N_CHOICES = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 5000)


class Explorer:
    """ipywidgets controls over an :class:`EditSession`: every change re-edits the victim and redraws.

    Controls: γ and λ sliders (0–2, Eq. 4), BDK/¬BDK and BN frozen/updated toggles, α and β sliders (Eq. 7), the
    number of D_U samples, the layer whose factors are histogrammed, and a repair button with its learning rate
    (Table 8). Sliders report on release (``continuous_update=False``), so a drag costs one update. Outputs: ASR,
    ACC, CTCA and Score of the victim and of the current model; per-class accuracy before vs after (seaborn bars);
    the histogram of the chosen layer's factors A_l.

    Programmatic use (tests, papermill) goes through the widgets, i.e. the same path as a reader's clicks:
    :meth:`set` assigns widget values and runs one update, :meth:`press_repair` clicks the button, :attr:`metrics`
    holds the numbers on display, :attr:`model` the model they belong to.

    Arguments:
        session: the :class:`EditSession` (victim, data, caches).
        settings: the initial position of the controls.
        layer: the layer shown in the histogram (default: the first of L).
        draw: render the figure (off: numbers only, e.g. for timing the computation alone).
    """

    def __init__(self, session: EditSession, settings: ExplorerSettings | None = None, *, layer: str | None = None,
                 draw: bool = True, dpi: int = 72) -> None:
        import ipywidgets as W

        self.session = session
        settings = settings or ExplorerSettings()
        self.draw, self.dpi = draw, dpi
        pool = session.unseen_images.shape[0]
        choices = sorted({n for n in _N_CHOICES if n <= pool} | {pool, settings.n_images})
        layers = session.extraction(settings).layers
        if layer is not None and layer not in layers:
            raise ValueError(f"layer {layer!r} is not edited; choose one of {layers}")
        slider = dict(continuous_update=False, readout_format=".2f", style={"description_width": "initial"})
        self.controls = {
            "gamma": W.FloatSlider(value=settings.gamma, min=0.0, max=2.0, step=0.05, description="γ (Eq. 4)",
                                   **slider),
            "lam": W.FloatSlider(value=settings.lam, min=0.0, max=2.0, step=0.05, description="λ (Eq. 4)", **slider),
            "bdk": W.ToggleButtons(options=[("BDK", True), ("¬BDK", False)], value=settings.bdk),
            "bn": W.ToggleButtons(options=[("BN frozen", "frozen"), ("BN updated", "update")], value=settings.bn),
            "alpha": W.FloatSlider(value=settings.alpha, min=-2.0, max=2.0, step=0.1, description="α (Eq. 7)",
                                   **slider),
            "beta": W.FloatSlider(value=settings.beta, min=-2.0, max=2.0, step=0.1, description="β (Eq. 7)",
                                  **slider),
            "n_images": W.SelectionSlider(options=choices, value=settings.n_images, description="|D_U|",
                                          continuous_update=False),
            "layer": W.Dropdown(options=layers, value=layer or layers[0], description="histogram of"),
            "lr": W.FloatLogSlider(value=settings.lr, base=10, min=-5, max=0, step=1, description="repair lr",
                                   readout_format=".0e", continuous_update=False),
        }
        self.repair_button = W.Button(description="repair", icon="wrench",
                                      tooltip="fine-tune one epoch on D_U (§3.1 repair, Table 8)")
        self.numbers = W.HTML()
        self.status = W.HTML()
        self.figure = W.Image(format="png")
        c = self.controls
        self.widget = W.VBox([
            W.HBox([c["gamma"], c["lam"]]), W.HBox([c["bdk"], c["bn"]]), W.HBox([c["alpha"], c["beta"]]),
            W.HBox([c["n_images"], c["layer"]]), W.HBox([c["lr"], self.repair_button]),
            self.numbers, self.figure, self.status,
        ])
        self.metrics: dict = {}
        self.model: nn.Module = session.model
        self.factors: dict[str, LayerFactor] = {}
        self.timings: dict[str, float] = {}
        self.error: str | None = None
        self._holding = False
        self._bars = None
        for name, control in self.controls.items():
            control.observe(self._on_change, names="value")
        self.repair_button.on_click(self._on_repair)
        self.refresh()

    # ------------------------------------------------------------------------------------- programmatic API

    @property
    def settings(self) -> ExplorerSettings:
        """The controls' current values."""
        values = {name: self.controls[name].value for name in _CONTROLS if name != "layer"}
        return ExplorerSettings(**{k: (float(v) if k in ("gamma", "lam", "alpha", "beta", "lr") else v)
                                   for k, v in values.items()})

    def set(self, **values) -> dict:
        """Move controls (``gamma, lam, bdk, bn, alpha, beta, n_images, layer, lr``) and run one update.

        The values go into the widgets, exactly as a reader's input would; several at once cost one update.
        Returns :attr:`metrics`.
        """
        unknown = set(values) - set(_CONTROLS)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; valid: {', '.join(_CONTROLS)}")
        for name, value in values.items():
            self._check_value(name, value)
        before = replace(self.settings, lr=0.0)  # lr matters only when repair is pressed
        self._holding = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._holding = False
        if replace(self.settings, lr=0.0) != before or not self.metrics:
            self.refresh()
        elif "layer" in values:
            self._redraw()
        return self.metrics

    def press_repair(self) -> dict:
        """Click the repair button; returns :attr:`metrics` of the repaired model."""
        self.repair_button.click()
        return self.metrics

    def refresh(self) -> None:
        """Re-edit and re-evaluate for the current controls, then redraw (what every control change runs)."""
        settings = self.settings
        try:
            with timed(self.session.device) as total:
                metrics, self.model, self.factors = self.session.evaluate_edit(settings)
            self.timings = {"update": total.seconds}
            self._show(metrics, "edited", settings)
        except ValueError as err:  # e.g. bn="update" with too few images: say so, keep the last numbers
            self.error = str(err)
            self.status.value = f"<b>cannot edit:</b> {err}"
            log.warning("explorer: %s", err)

    # -------------------------------------------------------------------------------------------- callbacks

    def _check_value(self, name: str, value) -> None:
        control = self.controls[name]
        if hasattr(control, "options"):
            options = [o[1] if isinstance(o, tuple) else o for o in control.options]
            if value not in options or (isinstance(value, bool) != isinstance(options[0], bool)):
                raise ValueError(f"{name}={value!r} is not one of {options}")
        elif name == "lr":
            if not isinstance(value, (int, float)) or not 1e-5 <= value <= 1.0:
                raise ValueError(f"lr={value!r} must lie in [1e-5, 1]")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not control.min <= value <= control.max:
            raise ValueError(f"{name}={value!r} must be a number in [{control.min}, {control.max}]")

    def _on_change(self, change) -> None:
        if self._holding:
            return
        if change["owner"] is self.controls["layer"]:
            self._redraw()
        elif change["owner"] is not self.controls["lr"]:  # lr matters only when repair is pressed
            self.refresh()

    def _on_repair(self, _button=None) -> None:
        settings = self.settings
        self.repair_button.disabled = True
        try:
            with timed(self.session.device) as t:
                edited, _ = self.session.edit(settings)
                self.model = self.session.repair(edited, settings)
                metrics = self.session.evaluate(self.model)
            self.timings = {"repair": t.seconds}
            self._show(metrics, "repaired", settings)
        finally:
            self.repair_button.disabled = False

    # -------------------------------------------------------------------------------------------- display

    def _show(self, metrics: dict, stage: str, settings: ExplorerSettings) -> None:
        self.error = None
        self.metrics = {"stage": stage, **asdict(settings), **metrics}
        victim = self.session.victim_metrics
        rows = "".join(
            f"<tr><td>{label}</td><td>{victim[key]:.2f}</td><td><b>{metrics[key]:.2f}</b></td></tr>"
            for label, key in (("ASR", "asr"), ("ACC", "acc"), ("CTCA", "ctca"), ("Score", "score")))
        self.numbers.value = (f"<table><tr><th>%</th><th>victim</th><th>{stage}</th></tr>{rows}</table>")
        seconds = self.timings.get("update", self.timings.get("repair", math.nan))
        self.status.value = (f"{stage} with γ={settings.gamma:.2f}, λ={settings.lam:.2f}, "
                             f"{'BDK' if settings.bdk else '¬BDK'}, BN {settings.bn}, α={settings.alpha:.1f}, "
                             f"β={settings.beta:.1f}, N={settings.n_images} ({seconds:.2f} s)")
        self._redraw()

    def _redraw(self) -> None:
        if not self.draw or not self.metrics:
            return
        with timed() as t:
            self.figure.value = self._render()
        self.timings["draw"] = t.seconds

    def _render(self) -> bytes:
        """Per-class accuracy before vs after (seaborn bars) and the chosen layer's factor histogram, as PNG.

        Drawing costs as much as the update itself, so the figure is built once: seaborn draws the bar chart,
        later updates move the "after" bars and redraw only the histogram, with a fixed layout.
        """
        import numpy as np
        import pandas as pd
        import seaborn as sns
        from matplotlib.figure import Figure

        victim, current = self.session.victim_metrics["per_class"], self.metrics["per_class"]
        if self._bars is None:
            fig = Figure(figsize=(9.5, 3.0))
            fig.subplots_adjust(left=0.06, right=0.98, bottom=0.17, top=0.8, wspace=0.18)
            bars, hist = fig.subplots(1, 2, width_ratios=(1.6, 1))
            k = len(victim)
            data = pd.DataFrame({"class": list(range(k)) * 2, "accuracy (%)": list(victim) + list(current),
                                 "model": ["victim"] * k + ["after"] * k})
            sns.barplot(data, x="class", y="accuracy (%)", hue="model", errorbar=None, ax=bars)
            bars.set_ylim(0, 100)
            bars.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
            bars.set_title(f"per-class accuracy (target class {self.session.target})", fontsize=10, pad=18)
            self._bars = (fig, bars, hist)
        fig, bars, hist = self._bars
        for patch, value in zip(bars.containers[1], current):
            patch.set_height(0.0 if math.isnan(value) else value)
        bars.get_legend().get_texts()[1].set_text(self.metrics["stage"])
        layer = self.controls["layer"].value
        values = self.factors[layer].factor.flatten().numpy() if layer in self.factors else np.zeros(0)
        hist.clear()
        hist.hist(values, bins=min(30, max(5, values.size // 2)), color="C2", edgecolor="white", linewidth=0.5)
        hist.axvline(self.controls["lam"].value, color="0.3", linestyle="--", linewidth=1)
        hist.axvline(0.0, color="C3", linewidth=1)
        hist.set_xlabel("factor value (dashed: λ; red: 0, a sign flip)", fontsize=9)
        negative = 100.0 * (values < 0).mean() if values.size else 0.0
        hist.set_title(f"factors A_l of layer {layer!r}: {values.size}, {negative:.0f}% negative", fontsize=10)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # a short, stable text form (nbval compares text/plain)
            bundle = {**bundle, "text/plain": "Explorer (open in Jupyter to use the controls)"}
        return bundle


def update_seconds(explorer: Explorer, repeats: int = 5, *, draw: bool = False) -> dict[str, float]:
    """Median seconds of one explorer update for its current settings, with the extraction already cached.

    ``{"update": edit + evaluation, "draw": figure (``draw=True`` only), "total": both}``. The first update after
    a change of BDK/BN/α/β/N also runs the extraction (one forward pass of D_U); it is excluded here because it
    happens once per setting.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    saved = explorer.draw
    explorer.draw = draw
    try:
        explorer.refresh()  # warm: extraction and front cached
        runs = []
        for _ in range(repeats):
            explorer.refresh()
            runs.append(dict(explorer.timings))
    finally:
        explorer.draw = saved
    update = median(r["update"] for r in runs)
    result = {"update": update}
    if draw:
        result["draw"] = median(r.get("draw", math.nan) for r in runs)
        result["total"] = median(r["update"] + r.get("draw", math.nan) for r in runs)
    else:
        result["total"] = update
    return result


def plot_gamma_lambda(grid: "pd.DataFrame", metrics: Sequence[str] = ("score", "asr", "acc"), *,  # noqa: F821
                      mark: tuple[float, float] | None = (0.5, 1.0), title: str = "", height: float = 2.6):
    """Seaborn heatmaps of a γ × λ grid (rows γ, columns λ, one panel per metric), values in percent.

    ``grid`` is one (BDK, BN) slice of :meth:`EditSession.grid` (or the mean over seeds); ``mark`` outlines the
    paper's (γ, λ). Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Rectangle

    labels = {"score": "Score", "asr": "ASR", "acc": "ACC", "ctca": "CTCA"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(height * 1.25 * len(metrics), height), squeeze=False,
                             layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        table = grid.pivot_table(index="gamma", columns="lam", values=metric, aggfunc="mean").sort_index()
        cmap = "rocket_r" if metric == "asr" else "rocket"
        sns.heatmap(table, annot=True, fmt=".0f", vmin=0, vmax=100, cmap=cmap, cbar=False, ax=ax,
                    annot_kws={"fontsize": 7})
        ax.set_title(labels.get(metric, metric), fontsize=10)
        ax.set_xlabel("λ")
        ax.set_ylabel("γ")
        if mark is not None and mark[0] in table.index and mark[1] in table.columns:
            i, j = list(table.index).index(mark[0]), list(table.columns).index(mark[1])
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="C0", linewidth=2))
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
