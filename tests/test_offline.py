"""Issue 8: the default path — load Fashion-MNIST, train a small victim into a fresh cache, edit, repair,
evaluate — runs with every socket refusing to connect. Skipped where Fashion-MNIST is not installed."""
from __future__ import annotations

import math
import socket
import urllib.request

import pytest

from actedit.cache import Cache
from actedit.data import DatasetNotFoundError, load_dataset
from actedit.edit import edit_model
from actedit.experiments import VictimSpec, get_victim, load_splits
from actedit.metrics import score
from actedit.repair import repair


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args[1:] or args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_the_guard_works(no_network):
    with pytest.raises(NetworkUsed):
        urllib.request.urlopen("http://example.com", timeout=1)


def test_default_path_runs_offline(no_network, tmp_path):
    load_splits.cache_clear()               # really read the files under the guard, not a memoised copy
    try:
        load_dataset("fashion-mnist", test_limit=10)
    except DatasetNotFoundError as err:
        pytest.skip(f"Fashion-MNIST is not installed: {err}")
    spec = VictimSpec(train_limit=2000, epochs=1, test_limit=500)   # the base recipe, cut to seconds
    victim = get_victim(spec, cache=Cache(tmp_path), progress=False)
    assert any(tmp_path.rglob("*.safetensors"))
    images, labels = victim.unseen(64)
    edited = edit_model(victim.model, images, trigger=victim.trigger)
    fixed = repair(edited, images, labels, trigger=victim.trigger)
    before, after = victim.evaluate(), victim.evaluate(fixed)
    for result in (before, after):
        assert all(math.isfinite(result[k]) for k in ("acc", "asr", "ctca"))
    assert math.isfinite(score(after["asr"], before["asr"], after["acc"], before["acc"])) or before["asr"] == 0
