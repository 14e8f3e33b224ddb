"""Tests for actedit.session and actedit.widgets: the γ/λ explorer, driven programmatically on a tiny backdoored CNN.

The explorer's numbers must be exactly those of the package's own path — ``evaluate`` on ``edit_model`` (and on
``repair`` of it) with the same settings and data — whichever control moved and whether or not the unedited front
of the network is reused.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("ipywidgets")

from actedit.edit import edit_model  # noqa: E402
from actedit.metrics import evaluate, score  # noqa: E402
from actedit.repair import repair  # noqa: E402
from actedit.seeding import generator, set_seed  # noqa: E402
from actedit.training import TrainConfig, fit  # noqa: E402
from actedit.triggers import make_trigger  # noqa: E402
from actedit.session import EditSession, ExplorerSettings  # noqa: E402
from actedit.widgets import Explorer, plot_gamma_lambda, update_seconds  # noqa: E402
from conftest import fingerprint  # noqa: E402

SIZE, CLASSES, TARGET = 16, 4, 0


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c = a bright 5x5 blob in quadrant c of a noisy 16x16 image (an easy task a tiny CNN learns)."""
    g = generator(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    images = torch.rand(n, 1, SIZE, SIZE, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        r, k = 8 * (c // 2) + 1, 8 * (c % 2) + 1
        images[i, 0, r:r + 5, k:k + 5] += 0.6
    return images.clamp(0, 1), labels


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES))


class Wrapped(nn.Module):
    """The same network behind a non-Sequential module: the session must fall back to whole-model evaluation."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)




@pytest.fixture(scope="module")
def victim():
    """A tiny backdoored CNN (20 % of its training images carry a 2x2 white square and label 0), its data."""
    trigger = make_trigger("white", channels=1, size=SIZE)
    x, y = blobs(480, seed=1)
    poison = torch.arange(480) % 5 == 0
    x[poison], y[poison] = trigger(x[poison]), TARGET
    set_seed(0)
    model = tiny_cnn()
    fit(model, x, y, config=TrainConfig(epochs=6, batch_size=32, lr=0.1), progress=False)
    model.eval()
    unseen_x, unseen_y = blobs(64, seed=2)
    test_x, test_y = blobs(160, seed=3)
    return dict(model=model, trigger=trigger, unseen=(unseen_x, unseen_y), test=(test_x, test_y))


def make_session(victim, model=None, **kwargs) -> EditSession:
    return EditSession(model or victim["model"], *victim["unseen"], *victim["test"], trigger=victim["trigger"],
                       target=TARGET, retrained_acc=90.0, n_eval=120, num_classes=CLASSES, **kwargs)


@pytest.fixture
def explorer(victim):
    return Explorer(make_session(victim), ExplorerSettings(n_images=32), draw=False)


def reference(victim, session: EditSession, s: ExplorerSettings, *, repaired: bool = False) -> dict:
    """What the package computes for settings ``s`` without the explorer."""
    x, y = victim["unseen"][0][:s.n_images], victim["unseen"][1][:s.n_images]
    trigger = victim["trigger"] if s.bdk else None
    model = edit_model(victim["model"], x, trigger=trigger, config=s.edit_config())
    if repaired:
        model = repair(model, x, y, trigger=trigger, lr=s.lr)
    return evaluate(model, session.test_images, session.test_labels, trigger=victim["trigger"], target=TARGET,
                    num_classes=CLASSES)


def assert_same(shown: dict, ref: dict, session: EditSession) -> None:
    for key in ("asr", "acc", "ctca", "per_class"):
        assert shown[key] == ref[key], key
    expected = score(ref["asr"], session.victim_metrics["asr"], ref["acc"], session.retrained_acc)
    assert shown["score"] == expected or (math.isnan(expected) and math.isnan(shown["score"]))


def test_victim_has_a_backdoor(explorer):
    victim = explorer.session.victim_metrics
    assert victim["asr"] > 50 and victim["acc"] > 60  # the fixture is a meaningful victim
    assert victim["score"] == 0.0                    # Eq. 6: the victim forgets nothing


MOVES = [
    {},                                                   # the initial update
    {"gamma": 1.0, "lam": 0.5},
    {"gamma": 2.0},
    {"bdk": False},                                       # ¬BDK, BN still frozen
    {"bdk": False, "bn": "update"},
    {"bn": "update"},                                     # BDK with updated moving averages
    {"alpha": 0.5, "beta": -1.5},
    {"n_images": 8, "gamma": 0.25},
    {"bdk": False, "alpha": -1.0, "beta": 0.0},
]


@pytest.mark.parametrize("move", MOVES, ids=[",".join(m) or "initial" for m in MOVES])
def test_displayed_metrics_equal_edit_model(victim, explorer, move):
    shown = explorer.set(**move)
    s = explorer.settings
    assert shown is explorer.metrics and shown["stage"] == "edited"
    assert {k: shown[k] for k in move} == move
    assert_same(shown, reference(victim, explorer.session, s), explorer.session)
    assert explorer.error is None


def test_sequence_of_moves_reuses_cached_extractions(victim, explorer):
    """Going back and forth through cached extractions still gives the package's numbers every time."""
    for move in MOVES[1:] + [{"bdk": True, "bn": "frozen", "alpha": 0.0, "beta": -1.0, "n_images": 32}]:
        explorer.set(**move)
        assert_same(explorer.metrics, reference(victim, explorer.session, explorer.settings), explorer.session)
    assert len(explorer.session._extractions) > 1


def test_widget_values_drive_the_same_update(victim, explorer):
    """A reader moving a widget (its .value) triggers the update, as set() does."""
    explorer.controls["gamma"].value = 1.5
    assert explorer.metrics["gamma"] == 1.5
    explorer.controls["bdk"].value = False
    assert explorer.metrics["bdk"] is False
    assert_same(explorer.metrics, reference(victim, explorer.session, explorer.settings), explorer.session)


def test_set_runs_one_update_for_several_controls(explorer, monkeypatch):
    calls = []
    original = explorer.session.evaluate_edit
    monkeypatch.setattr(explorer.session, "evaluate_edit", lambda s: calls.append(s) or original(s))
    explorer.set(gamma=1.0, lam=1.5, bdk=False, bn="update")
    assert len(calls) == 1
    explorer.set(lr=1e-3)      # the learning rate matters only for repair
    explorer.set(gamma=1.0)    # unchanged
    assert len(calls) == 1


@pytest.mark.parametrize("move", [{}, {"bdk": False, "lr": 1e-3}, {"gamma": 1.0, "bn": "update", "lr": 1e-1}])
def test_repair_button_equals_repair(victim, explorer, move):
    explorer.set(**move)
    shown = explorer.press_repair()
    assert shown["stage"] == "repaired"
    assert_same(shown, reference(victim, explorer.session, explorer.settings, repaired=True), explorer.session)
    explorer.set(gamma=0.75)   # any move re-edits from the victim: the repair is not kept
    assert explorer.metrics["stage"] == "edited"


def test_front_reuse_is_exact_and_falls_back(victim):
    """Reusing the unedited front of a Sequential gives the numbers of whole-model evaluation, bit for bit."""
    moves = [ExplorerSettings(n_images=16), ExplorerSettings(n_images=16, bdk=False, bn="update", gamma=1.5)]
    fast, slow = make_session(victim), make_session(victim, reuse_front=False)
    wrapped = make_session(victim, model=Wrapped(victim["model"]))
    for s in moves:
        a, b, c = fast.evaluate_edit(s)[0], slow.evaluate_edit(s)[0], wrapped.evaluate_edit(s)[0]
        assert a == b == c
    assert fast._fronts and not slow._fronts and not wrapped._fronts
    assert len(fast._fronts) == 2   # frozen BN shares the victim's front; updated BN has its own


def test_identity_setting_gives_the_victim(explorer):
    """γ = 0, λ = 1 with frozen BN multiplies every weight by 1 (Eq. 4–5): the victim's numbers, Score 0."""
    shown = explorer.set(gamma=0.0, lam=1.0, bn="frozen")
    victim = explorer.session.victim_metrics
    assert all(shown[k] == victim[k] for k in ("asr", "acc", "ctca", "per_class", "score"))


def test_caller_model_unchanged(victim, explorer):
    before = fingerprint(victim["model"])
    explorer.set(gamma=1.0, bn="update", bdk=False)
    explorer.press_repair()
    explorer.session.grid([0.5], [1.0], base=ExplorerSettings(n_images=16))
    assert fingerprint(victim["model"]) == before


def test_grid_rows_equal_single_updates(victim, explorer):
    session = explorer.session
    grid = session.grid([0.0, 1.0], [0.5, 1.0], base=ExplorerSettings(n_images=32))
    assert len(grid) == 2 * 2 * 2 * 2
    assert set(grid.columns) == {"bdk", "bn", "gamma", "lam", "asr", "acc", "ctca", "score"}
    row = grid[(grid.bdk == "¬BDK") & (grid.bn == "update") & (grid.gamma == 1.0) & (grid.lam == 0.5)].iloc[0]
    ref = reference(victim, session, ExplorerSettings(gamma=1.0, lam=0.5, bdk=False, bn="update", n_images=32))
    assert row.asr == ref["asr"] and row.acc == ref["acc"] and row.ctca == ref["ctca"]
    fig = plot_gamma_lambda(grid[(grid.bdk == "BDK") & (grid.bn == "frozen")], mark=(1.0, 1.0))
    assert len(fig.axes) == 3
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_drawing_and_layer_dropdown(victim):
    ex = Explorer(make_session(victim), ExplorerSettings(n_images=16))
    first = ex.figure.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    layers = list(ex.controls["layer"].options)
    assert layers == ex.session.extraction(ex.settings).layers and len(layers) >= 2
    metrics = ex.metrics
    ex.set(layer=layers[-1])               # only the histogram changes
    assert ex.metrics is metrics and ex.figure.value != first
    ex.press_repair()
    assert ex.figure.value[:4] == b"\x89PNG"
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("Explorer")


def test_update_seconds_reports_without_changing_the_numbers(explorer):
    before = dict(explorer.metrics)
    times = update_seconds(explorer, 2)
    assert set(times) == {"update", "total"} and times["update"] > 0
    assert explorer.metrics == before
    with pytest.raises(ValueError, match="repeats"):
        update_seconds(explorer, 0)


@pytest.mark.parametrize("bad, match", [
    ({"gamma": 3.0}, "gamma"), ({"lam": -0.1}, "lam"), ({"bdk": "yes"}, "bdk"), ({"bn": "train"}, "bn"),
    ({"n_images": 7}, "n_images"), ({"layer": "nope"}, "layer"), ({"delta": 1}, "unknown"), ({"lr": 5.0}, "lr"),
])
def test_set_rejects_bad_values(explorer, bad, match):
    before = explorer.metrics
    with pytest.raises(ValueError, match=match):
        explorer.set(**bad)
    assert explorer.metrics is before


def test_bad_construction(victim):
    x, y = victim["unseen"]
    tx, ty = victim["test"]
    with pytest.raises(ValueError, match="target"):
        EditSession(victim["model"], x, y, tx, ty, trigger=victim["trigger"], target=CLASSES)
    with pytest.raises(ValueError, match="n_eval"):
        EditSession(victim["model"], x, y, tx, ty, trigger=victim["trigger"], target=0, n_eval=0)
    with pytest.raises(TypeError, match="images"):
        EditSession(victim["model"], x.numpy(), y, tx, ty, trigger=victim["trigger"], target=0)
    with pytest.raises(ValueError, match="n_images"):
        make_session(victim).extraction(ExplorerSettings(n_images=65))
    with pytest.raises(ValueError, match="gamma"):
        ExplorerSettings(gamma=-1.0)
    with pytest.raises(ValueError, match="bn"):
        ExplorerSettings(bn="train")


def test_evaluation_subset_is_the_one_of_every_chapter(victim):
    from actedit.experiments import eval_index

    a, b = make_session(victim), make_session(victim)
    assert torch.equal(a.test_images, b.test_images) and a.test_images.shape[0] == 120
    assert torch.equal(a.test_images, victim["test"][0][eval_index(160, 120)])


def test_from_victim_uses_the_chapters_draw_and_measures_r(victim):
    """from_victim orders D_U as experiments.draw_unseen does and measures ACC^R on the evaluation subset."""
    from types import SimpleNamespace

    from actedit.data import ImageSet
    from actedit.experiments import draw_unseen

    x, y = victim["unseen"]
    tx, ty = victim["test"]
    splits = SimpleNamespace(unseen=ImageSet(x, y), test=ImageSet(tx, ty), top_k=1, num_classes=CLASSES)
    stub = SimpleNamespace(model=victim["model"], splits=splits, trigger=victim["trigger"],
                           verify_trigger=victim["trigger"], spec=SimpleNamespace(target=TARGET))
    session = EditSession.from_victim(stub, victim["model"], seed=3, n_eval=100)
    expected_x, _ = draw_unseen(x, y, 10, 3)
    assert torch.equal(session.unseen_images[:10], expected_x)
    assert session.retrained_acc == session.victim_metrics["acc"]   # R here is the victim itself
    assert session.test_images.shape[0] == 100


def test_sequential_with_its_own_forward_is_evaluated_whole(victim):
    """A Sequential subclass with its own forward may do more than chain its children: no front reuse."""

    class Scaled(nn.Sequential):
        def forward(self, x):
            return super().forward(x) * 2.0

    model = Scaled(*tiny_cnn())
    model.load_state_dict(victim["model"].state_dict())
    model.eval()
    session = make_session(victim, model=model)
    s = ExplorerSettings(n_images=16, gamma=1.0)
    assert session.evaluate_edit(s)[0] == make_session(victim, model=model, reuse_front=False).evaluate_edit(s)[0]
    assert not session._fronts
