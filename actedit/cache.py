"""On-disk cache of trained models, keyed by a hash of the full configuration and the package version.

Offers :class:`Cache` and :func:`default_root`. Entries are single safetensors files (no pickle, so loading runs no
code); their header holds the key, a SHA-256 of the tensor data and free-form JSON metadata (e.g. a training
history). Writes go to a unique temporary file that is atomically renamed into place, so two processes writing the
same entry both succeed and a reader never sees half a file. An entry that does not parse, whose checksum does not
match or that was written for another key or package version is treated as missing and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__

__all__ = ["Cache", "default_root", "key_hash", "state_digest"]
log = logging.getLogger(__name__)


def default_root() -> Path:
    """``$ACTEDIT_CACHE`` if set; else ``.cache/actedit`` in the source checkout; else ``~/.cache/actedit``."""
    env = os.environ.get("ACTEDIT_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").exists() and os.access(repo, os.W_OK):
        return repo / ".cache" / "actedit"
    return Path.home() / ".cache" / "actedit"


def key_hash(key: dict[str, Any]) -> str:
    """SHA-256 (first 20 hex digits) of the canonical JSON of ``key`` plus the package version."""
    payload = json.dumps({"key": key, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a tensors dict (names, dtypes, shapes and bytes): equal digests mean equal tensors."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Cache:
    """A directory of cached tensors dicts.

    >>> import tempfile; c = Cache(tempfile.mkdtemp())
    >>> state, meta = c.get_or_build("demo", {"a": 1}, lambda: ({"w": torch.ones(2)}, {"note": "x"}))
    >>> c.load("demo", {"a": 1})[1]["note"]
    'x'
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / kind / f"{key_hash(key)}.safetensors"

    def load(self, kind: str, key: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict] | None:
        """The entry's ``(state, meta)``, or ``None`` if missing, corrupt, or written for another key/version."""
        path = self.path(kind, key)
        if not path.exists():
            return None
        try:
            state = load_file(str(path))
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
            if header.get("actedit_version") != __version__:
                raise ValueError(f"written by actedit {header.get('actedit_version')}, this is {__version__}")
            if json.loads(header.get("key", "null")) != json.loads(json.dumps(key, sort_keys=True, default=str)):
                raise ValueError("key mismatch")
            if header.get("sha256") != state_digest(state):
                raise ValueError("checksum mismatch")
            meta = json.loads(header.get("meta", "{}"))
        except (SafetensorError, ValueError, OSError, json.JSONDecodeError, RuntimeError) as err:
            log.warning("cache entry %s is unusable (%s); it will be rebuilt", path, err)
            return None
        return state, meta

    def save(self, kind: str, key: dict[str, Any], state: dict[str, torch.Tensor], meta: dict | None = None) -> Path:
        """Write an entry atomically (temporary file + rename in the same directory)."""
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
        header = {
            "actedit_version": __version__,
            "key": json.dumps(key, sort_keys=True, default=str),
            "sha256": state_digest(state),
            "meta": json.dumps(meta or {}, default=str),
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file(state, tmp, metadata=header)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def get_or_build(
        self, kind: str, key: dict[str, Any],
        build: Callable[[], tuple[dict[str, torch.Tensor], dict]],
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Load the entry, or call ``build() -> (state, meta)``, save it and return it.

        Concurrent callers for the same entry are serialised with an advisory lock file, so a model is trained
        once and the others load it; where locking is unavailable both build and the atomic rename keeps it whole.
        """
        hit = self.load(kind, key)
        if hit is not None:
            log.info("cache hit %s/%s", kind, key_hash(key))
            return hit
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock")):
            hit = self.load(kind, key)
            if hit is not None:
                return hit
            state, meta = build()
            self.save(kind, key, state, meta)
        return state, meta


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic rename still keeps entries whole
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
