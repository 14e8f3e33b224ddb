"""On-disk cache of trained models, keyed by the full configuration, the package version and the code that trains.

Offers :class:`Cache`, :func:`default_root`, :func:`key_hash`, :func:`state_digest`, :func:`source_digest`,
:data:`SOURCES`, :func:`atomic_write` and :class:`CacheLockTimeout`. Entries are single safetensors files (no pickle,
so loading runs no code); their header holds the key, a SHA-256 of the tensor data, the digest of the package code
the entry depends on and free-form JSON metadata (e.g. a training history).

An entry is never served stale: its file name hashes the caller's key (which names the device a model was trained
on), the package version and :func:`source_digest` of the code that decides its content (:data:`SOURCES`), and
the header repeats all three. An entry that does not parse, whose checksum does not match or that was written for
another key, version or code is treated as missing and rebuilt.

Which code counts. A trained model is decided by how the data are loaded and split (``data``), the triggers and the
Narcissus pattern (``triggers``, ``narcissus``), which images are poisoned (``poisoning``), the architectures
(``models``), the one training loop and its defaults (``training``), the seeds (``seeding``), the entry format
(``cache``) and, of ``experiments``, the definitions that turn a :class:`~actedit.experiments.VictimSpec` into a
trained victim (the spec, its recipe, the key, the loading and the training calls). The baselines' unlearned models
add the ``baselines`` subpackage and ``capture``. Modules that only *use* trained models (edit, repair, metrics,
widgets, summary, report, cli, ...) and the rest of ``experiments`` are left out on purpose, so that editing them
does not retrain every victim (about ten CPU-minutes for the book). Only code counts: the digest is taken over each
module's syntax tree without docstrings, so comments, docstrings and layout never invalidate an entry.

Writes go through :func:`atomic_write` (a unique temporary file renamed into place), so two processes writing the
same entry both succeed and a reader never sees half a file. Builders of the same entry are serialised with
``filelock`` (``flock`` where the file system has it, a lock file elsewhere), waiting at most ``lock_timeout``.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import filelock
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__

__all__ = ["Cache", "CacheLockTimeout", "SOURCES", "atomic_write", "default_root", "key_hash", "source_digest",
           "state_digest"]
log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent

_TRAINING = ("data", "triggers", "narcissus", "poisoning", "models", "training", "seeding", "cache",
             "experiments.VictimSpec", "experiments.load_splits", "experiments.triggers_for", "experiments.model_key",
             "experiments.get_victim", "experiments.get_retrained", "experiments._trained")

#: The code each kind of entry depends on (see the module docstring): ``"name"`` is the module ``actedit/name.py``
#: (or, for ``"baselines"``, the whole subpackage); ``"module.definition"`` is one top-level class or function of
#: it. A kind not named here depends on every module of the package.
SOURCES: dict[str, tuple[str, ...]] = {
    "models": _TRAINING,            # victims, retrained references R, fit_cached runs
    "narcissus": _TRAINING,         # Narcissus patterns (surrogate training + trigger optimisation)
    "unlearned": _TRAINING + ("baselines", "capture"),   # the baselines' unlearned models (Tables 3/4/10)
}

#: Seconds a builder waits for another process building the same entry (a paper-scale victim can take hours).
LOCK_TIMEOUT = 4 * 3600.0


class CacheLockTimeout(TimeoutError):
    """Another process held a cache entry's lock for longer than the cache's ``lock_timeout``."""


def default_root() -> Path:
    """``$ACTEDIT_CACHE`` if set; else ``.cache/actedit`` in the source checkout; else ``~/.cache/actedit``."""
    env = os.environ.get("ACTEDIT_CACHE")
    if env:
        return Path(env)
    repo = _PACKAGE.parent
    if (repo / "pyproject.toml").exists() and os.access(repo, os.W_OK):
        return repo / ".cache" / "actedit"
    return Path.home() / ".cache" / "actedit"


def _sources(names: tuple[str, ...] | None) -> list[tuple[Path, str | None]]:
    """``(file, definition or None for the whole file)`` for each entry of a :data:`SOURCES` tuple."""
    if names is None:
        return [(p, None) for p in sorted(_PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts]
    found = []
    for name in names:
        module, _, definition = name.partition(".")
        if (_PACKAGE / module).is_dir():
            found += [(p, None) for p in sorted((_PACKAGE / module).rglob("*.py")) if "__pycache__" not in p.parts]
        else:
            found.append((_PACKAGE / f"{module}.py", definition or None))
    return found


@functools.lru_cache(maxsize=None)
def _code_digest(path: Path, definition: str | None = None) -> str:
    """SHA-256 of a module's code (or of one top-level ``definition`` of it): its syntax tree without docstrings, so
    comments, docstrings and layout do not count (a module's code does not change while the process runs, hence
    the memo). A ``definition`` the module does not have raises ``LookupError``."""
    source = path.read_bytes()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        if definition is not None:
            raise
        return hashlib.sha256(source).hexdigest()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    if definition is not None:
        nodes = [n for n in tree.body if getattr(n, "name", None) == definition]
        if not nodes:
            raise LookupError(f"{path}: no top-level {definition!r}, which actedit.cache.SOURCES names; update it")
        tree = nodes[0]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def source_digest(kind: str | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the code :data:`SOURCES` names for ``kind`` (the whole package for a kind
    it does not name), read from the installed package; see :func:`_code_digest` for what counts."""
    names = SOURCES.get(kind) if kind is not None else None
    h = hashlib.sha256()
    for path, definition in _sources(names):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: a module the cache's {kind!r} entries depend on (SOURCES) is missing")
        label = path.relative_to(_PACKAGE).as_posix() + (f":{definition}" if definition else "")
        h.update(label.encode() + b"\0" + _code_digest(path, definition).encode())
    return h.hexdigest()[:16]


def key_hash(key: dict[str, Any], sources: str | None = None) -> str:
    """SHA-256 (first 20 hex digits) of the canonical JSON of ``key``, the package version and ``sources``."""
    payload = json.dumps({"key": key, "version": __version__, "sources": sources}, sort_keys=True, default=str)
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


def _new_file_mode(path: Path) -> int:
    """The permissions ``open(path, "w")`` leaves: the existing file's, else ``0o666`` less the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        pass
    try:   # Linux tells the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Write ``path`` whole or not at all: yields a fresh temporary path beside it to write to.

    >>> import tempfile; target = Path(tempfile.mkdtemp()) / "report.json"
    >>> with atomic_write(target) as tmp:
    ...     _ = tmp.write_text("{}")
    >>> target.read_text()
    '{}'

    The temporary name is unique (``tempfile.mkstemp`` in the target's folder), so concurrent writers of the same
    path never share one. On a normal exit the file is flushed to disk (``fsync``) and renamed over ``path``
    (``os.replace``: atomic on POSIX and Windows, so a reader sees the old file or the new one, never half of
    one); on an exception it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _new_file_mode(path))     # mkstemp gives 0600; a plain open(path, "w") would not
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Cache:
    """A directory of cached tensors dicts.

    >>> import tempfile; c = Cache(tempfile.mkdtemp())
    >>> state, meta = c.get_or_build("demo", {"a": 1}, lambda: ({"w": torch.ones(2)}, {"note": "x"}))
    >>> c.load("demo", {"a": 1})[1]["note"]
    'x'

    Arguments:
        root: the directory (default :func:`default_root`).
        lock_timeout: seconds :meth:`get_or_build` waits for another process building the same entry before it
            raises :class:`CacheLockTimeout` (default :data:`LOCK_TIMEOUT`).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        if lock_timeout < 0:
            raise ValueError(f"lock_timeout must be >= 0 seconds, got {lock_timeout}")
        self.root = Path(root) if root is not None else default_root()
        self.lock_timeout = lock_timeout

    def path(self, kind: str, key: dict[str, Any]) -> Path:
        return self.root / kind / f"{key_hash(key, source_digest(kind))}.safetensors"

    def load(self, kind: str, key: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict] | None:
        """The entry's ``(state, meta)``, or ``None`` if missing, corrupt, or written for another key, version or
        package code."""
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
            if header.get("sources") != source_digest(kind):
                raise ValueError(f"written by other package code (sources {header.get('sources')}, "
                                 f"now {source_digest(kind)})")
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
        """Write an entry atomically (:func:`atomic_write`)."""
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}
        header = {
            "actedit_version": __version__,
            "sources": source_digest(kind),
            "key": json.dumps(key, sort_keys=True, default=str),
            "sha256": state_digest(state),
            "meta": json.dumps(meta or {}, default=str),
        }
        with atomic_write(path) as tmp:
            save_file(state, str(tmp), metadata=header)
        return path

    def get_or_build(
        self, kind: str, key: dict[str, Any],
        build: Callable[[], tuple[dict[str, torch.Tensor], dict]],
    ) -> tuple[dict[str, torch.Tensor], dict]:
        """Load the entry, or call ``build() -> (state, meta)``, save it and return it.

        Concurrent callers for the same entry are serialised with a lock file beside it (``<entry>.lock``), so a
        model is trained once and the others load it. A caller that waits longer than ``lock_timeout`` gets a
        :class:`CacheLockTimeout` naming the lock file, and nothing is built or written.
        """
        hit = self.load(kind, key)
        if hit is not None:
            log.info("cache hit %s", self.path(kind, key))
            return hit
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_suffix(".lock"), self.lock_timeout):
            hit = self.load(kind, key)
            if hit is not None:
                return hit
            state, meta = build()
            self.save(kind, key, state, meta)
        return state, meta


@contextmanager
def _locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold ``filelock``'s lock on ``path``: ``flock`` where the file system offers it, else (filelock falls back
    by itself, or we do for older releases) a lock file that exists while it is held."""
    lock: filelock.BaseFileLock = filelock.FileLock(str(path), timeout=timeout)
    try:
        try:
            lock.acquire()
        except NotImplementedError:  # flock unsupported here (older filelock releases do not fall back)
            lock = filelock.SoftFileLock(str(path), timeout=timeout)
            lock.acquire()
    except filelock.Timeout:
        raise CacheLockTimeout(
            f"{path}: waited {timeout:g} s for this cache entry's lock; another process is building the entry. "
            "Wait for it, or give Cache(lock_timeout=...) more time; if no actedit process is running, the lock "
            "is stale (a lock file left by a killed process on a file system without flock): delete it.") from None
    try:
        yield
    finally:
        lock.release()
