"""Tests for actedit.capture: running means over batches, input capture, name lookup, and hook removal."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from actedit.capture import RunningMean, Trace, TraceDict, get_module
from actedit.seeding import generator
from conftest import no_hooks  # noqa: E402


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)),
                         nn.Linear(5, 2)).eval()


def batches() -> list[torch.Tensor]:
    g = generator(0)
    return [torch.rand(n, 2, 6, 6, generator=g) for n in (3, 7, 1, 5)]   # unequal batch sizes




def test_get_module_by_dotted_name():
    model = net()
    assert get_module(model, "2.1") is model[2][1]
    assert get_module(model, "") is model
    with pytest.raises(LookupError, match="2.7"):
        get_module(model, "2.7")


def test_trace_mean_is_the_mean_over_all_samples():
    model = net()
    xs = batches()
    with torch.no_grad(), Trace(model, "0") as t:
        for x in xs:
            model(x)
    with torch.no_grad():
        everything = model[0](torch.cat(xs))
    assert t.count == sum(len(x) for x in xs) == 16
    assert t.mean.shape == everything.shape[1:]
    assert torch.allclose(t.mean, everything.mean(dim=0), atol=1e-6)   # not the mean of the batch means
    batch_means = torch.stack([model[0](x).mean(0) for x in xs]).mean(0).detach()
    assert not torch.allclose(t.mean, batch_means, atol=1e-6)
    assert no_hooks(model)


def test_tracedict_several_layers_and_input():
    model = net()
    xs = batches()
    with torch.no_grad(), TraceDict(model, ["0", "2.1", "3"]) as out, TraceDict(model, ["2.1", "3"], input=True) as inp:
        for x in xs:
            model(x)
    x = torch.cat(xs)
    with torch.no_grad():
        a0 = model[0](x)
        flat = model[2][0](model[1](a0))
        a21 = model[2][1](flat)
        a3 = model[3](a21)
    assert list(out) == ["0", "2.1", "3"]
    for name, want in (("0", a0), ("2.1", a21), ("3", a3)):
        assert torch.allclose(out[name].mean, want.mean(0), atol=1e-6), name
        assert out[name].count == 16
    assert torch.allclose(inp["2.1"].mean, flat.mean(0), atol=1e-6)   # input=True: the layer's input
    assert torch.allclose(inp["3"].mean, a21.mean(0), atol=1e-6)
    assert no_hooks(model)


def test_running_mean_accumulates_in_float64_and_flags_non_finite():
    rm = RunningMean()
    with pytest.raises(RuntimeError, match="no activation"):
        rm.mean
    rm.add(torch.full((3, 2), 1e8))
    rm.add(torch.ones(1, 2))
    assert rm.sum.dtype == torch.float64 and rm.count == 4
    assert rm.finite
    assert torch.allclose(rm.mean.double(), torch.full((2,), (3e8 + 1) / 4, dtype=torch.float64))
    rm.add(torch.tensor([[float("inf"), 0.0]]))
    assert not rm.finite


def test_unknown_name_raises_lookup_error_and_leaves_no_hook():
    model = net()
    with pytest.raises(LookupError, match="nope"):
        TraceDict(model, ["0", "nope"])      # the valid name first: it must not keep a hook
    assert no_hooks(model)
    with pytest.raises(LookupError, match="nope"):
        Trace(model, "nope")
    assert no_hooks(model)


@pytest.mark.parametrize("where", ["block", "forward"])
def test_hooks_removed_when_the_block_raises(where):
    model = net()

    class Stop(Exception):
        pass

    def explode(module, inputs, output):
        raise Stop

    with pytest.raises(Stop):
        with TraceDict(model, ["0", "2.1", "3"]), Trace(model, "3", input=True):
            assert sum(len(m._forward_hooks) for m in model.modules()) == 4
            if where == "forward":
                handle = model[2][0].register_forward_hook(explode)   # raises mid-forward, after "0" recorded
                try:
                    model(batches()[0])
                finally:
                    handle.remove()
            raise Stop
    assert no_hooks(model)


def test_hooks_removed_when_a_hook_itself_raises():
    """A layer whose output is not a tensor makes the trace's own hook raise TypeError; no hook may remain."""
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    model = nn.Sequential(Pair())
    with pytest.raises(TypeError, match="not a tensor"):
        with Trace(model, "0"):
            model(torch.ones(2, 3))
    assert no_hooks(model)


def test_trace_records_only_inside_the_block():
    model = net()
    with torch.no_grad():
        with Trace(model, "3") as t:
            model(batches()[0])
        model(batches()[1])
    assert t.count == 3
