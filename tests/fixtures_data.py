"""Tiny datasets written in the real on-disk formats, for tests/test_data.py.

Every writer returns the arrays it wrote (``uint8 [N, C, H, W]`` images in file order, ``int64 [N]`` labels)
so a test can compare what ``load_dataset`` returns with what is on disk. Pixel (0, 0, 0) and (0, 0, 1) of
image ``i`` hold ``i % 256`` and ``i // 256`` (:func:`image_ids` reads them back), so a test can tell which
file image ended up in which split.
"""
from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def balanced_labels(per_class: int, num_classes: int, seed: int) -> np.ndarray:
    """``per_class`` of each class, shuffled, ``int64 [per_class * num_classes]``."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels).astype(np.int64)


def tagged_images(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    """Random ``uint8 [n, channels, size, size]`` images carrying their index in two pixels."""
    images = np.random.default_rng(seed).integers(0, 256, (n, channels, size, size), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 0, 1] = np.arange(n) // 256
    return images


def image_ids(images: torch.Tensor) -> torch.Tensor:
    """Indices written by :func:`tagged_images`, read back from loaded ``float32 [N, C, H, W]`` images."""
    pixels = (images[:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0] + 256 * pixels[:, 1]


# ---------------------------------------------------------------------------------------------------------- IDX

def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian uint32 dims, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(folder: Path, *, gz: bool, per_class: tuple[int, int] = (6, 2)) -> dict[str, np.ndarray]:
    """{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in ``folder``; 10 classes, 28x28 grayscale."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, count, seed in (("train", per_class[0], 1), ("t10k", per_class[1], 2)):
        labels = balanced_labels(count, 10, seed)
        images = tagged_images(len(labels), 1, 28, seed)
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images[:, 0]), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array.astype(np.uint8))
            if gz:
                (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        written[f"{prefix}_images"], written[f"{prefix}_labels"] = images, labels
    return written


# -------------------------------------------------------------------------------------------------------- CIFAR

class Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 ``str`` opcodes, as the genuine CIFAR pickles (cPickle) have.

    Loaded with ``encoding='bytes'`` both come back as ``bytes``, exactly like the real files.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _binstring(self, raw: bytes, obj: object) -> None:
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_bytes(self, obj: bytes) -> None:
        self._binstring(obj, obj)

    def save_str(self, obj: str) -> None:
        self._binstring(obj.encode("latin1"), obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def dump_cifar_pickle(path: Path, content: dict, style: str) -> None:
    """``style='py2'``: a Python 2 style pickle naming ``numpy.core.multiarray`` like the real files;
    ``style='py3'``: plain ``pickle.dump`` (protocol 4) of the same dict."""
    if style == "py3":
        with path.open("wb") as handle:
            pickle.dump(content, handle, protocol=4)
        return
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump({k.decode(): v for k, v in content.items()})
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))


def write_cifar10(root: Path, fmt: str, *, per_class: tuple[int, int] = (5, 2)) -> dict[str, np.ndarray]:
    """A CIFAR-10 copy in ``root`` as ``fmt`` = 'bin', 'py2' or 'py3'; training images spread over 5 batches."""
    train_labels = balanced_labels(per_class[0], 10, 3)
    test_labels = balanced_labels(per_class[1], 10, 4)
    train_images = tagged_images(len(train_labels), 3, 32, 3)
    test_images = tagged_images(len(test_labels), 3, 32, 4)
    batches = np.array_split(np.arange(len(train_labels)), 5)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    if fmt == "bin":
        folder = root / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        for name, index in zip(names, batches):
            _write_records(folder / f"{name}.bin", train_images[index], [train_labels[index]])
        _write_records(folder / "test_batch.bin", test_images, [test_labels])
        (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for name, index in zip([*names, "test_batch"], [*batches, None]):
            images, labels = (test_images, test_labels) if index is None else (train_images[index], train_labels[index])
            content = {b"batch_label": b"fixture", b"labels": [int(y) for y in labels],
                       b"data": images.reshape(len(images), -1), b"filenames": [b"x.png"] * len(images)}
            dump_cifar_pickle(folder / name, content, fmt)
        meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": 10000, b"num_vis": 3072}
        dump_cifar_pickle(folder / "batches.meta", meta, fmt)
    return {"folder": folder, "train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}


def write_cifar100(root: Path, fmt: str, *, per_class: tuple[int, int] = (2, 1)) -> dict[str, np.ndarray]:
    """A CIFAR-100 copy (fine labels; coarse = fine // 5) in ``root`` as ``fmt`` = 'bin', 'py2' or 'py3'."""
    written: dict = {}
    folder = root / ("cifar-100-binary" if fmt == "bin" else "cifar-100-python")
    folder.mkdir(parents=True)
    for split, count, seed in (("train", per_class[0], 5), ("test", per_class[1], 6)):
        fine = balanced_labels(count, 100, seed)
        coarse = fine // 5
        images = tagged_images(len(fine), 3, 32, seed)
        if fmt == "bin":
            _write_records(folder / f"{split}.bin", images, [coarse, fine])
        else:
            content = {b"filenames": [b"x.png"] * len(fine), b"batch_label": b"fixture",
                       b"fine_labels": [int(y) for y in fine], b"coarse_labels": [int(y) for y in coarse],
                       b"data": images.reshape(len(images), -1)}
            dump_cifar_pickle(folder / split, content, fmt)
        written[f"{split}_images"], written[f"{split}_labels"] = images, fine
    names = [f"fine{i:03d}" for i in range(100)]
    if fmt == "bin":
        (folder / "fine_label_names.txt").write_text("\n".join(names) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(f"coarse{i}" for i in range(20)) + "\n")
    else:
        meta = {b"fine_label_names": [n.encode() for n in names],
                b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
        dump_cifar_pickle(folder / "meta", meta, fmt)
    written["folder"], written["names"] = folder, names
    return written


def _write_records(path: Path, images: np.ndarray, label_rows: list[np.ndarray]) -> None:
    """CIFAR binary records: label byte(s), then the R, G and B 32x32 planes."""
    labels = np.stack(label_rows, axis=1).astype(np.uint8)
    path.write_bytes(np.concatenate([labels, images.reshape(len(images), -1)], axis=1).tobytes())


# ------------------------------------------------------------------------------------------------ image folders

def write_cinic10(root: Path, folder_name: str = "cinic10", *, per_class: int = 3) -> dict[str, object]:
    """``root/folder_name/{train,valid,test}/<class>/*.png``, 32x32; the first test image of each class is
    grayscale (CINIC-10 has some). Returns the expected RGB ``uint8 [N, 3, 32, 32]`` per split, file order."""
    written: dict = {}
    for split_index, split in enumerate(("train", "valid", "test")):
        images, labels = [], []
        rng = np.random.default_rng(10 + split_index)
        for label, name in enumerate(CIFAR10_NAMES):
            folder = root / folder_name / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                if split == "test" and i == 0:
                    gray = pixels[..., 0]
                    Image.fromarray(gray, mode="L").save(folder / f"img{i:04d}.png")
                    pixels = np.repeat(gray[..., None], 3, axis=2)
                else:
                    Image.fromarray(pixels).save(folder / f"img{i:04d}.png")
                images.append(pixels.transpose(2, 0, 1))
                labels.append(label)
        written[f"{split}_images"], written[f"{split}_labels"] = np.stack(images), np.array(labels)
    return written


def tiny_colour(label: int) -> tuple[int, int, int]:
    """The flat colour of every TinyImageNet fixture image of class ``label`` (JPEG keeps flat colours)."""
    return (40 * label + 20, 200 - 40 * label, 120)


def write_tinyimagenet(root: Path, wnids: list[str], *, per_class: int = 4, val_per_class: int = 2,
                       words: bool = True) -> dict[str, object]:
    """``root/tiny-imagenet-200`` with wnids.txt, words.txt, train/<wnid>/images/*.JPEG (+ boxes file) and
    val/images/*.JPEG + val_annotations.txt. Images are flat :func:`tiny_colour` of their label (the wnid's
    position in sorted order); the first val image is saved grayscale, as some real ones are."""
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    if words:
        lines = [f"{w}\tthing {w}, other name" for w in wnids] + ["n99999999\tunused, entry"]
        (base / "words.txt").write_text("\n".join(lines) + "\n")
    label_of = {w: i for i, w in enumerate(sorted(wnids))}
    for wnid in wnids:
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            Image.new("RGB", (64, 64), tiny_colour(label_of[wnid])).save(images / f"{wnid}_{i}.JPEG")
    annotations, val_labels = [], []
    for k in range(val_per_class * len(wnids)):
        wnid = wnids[k % len(wnids)]
        image = Image.new("RGB", (64, 64), tiny_colour(label_of[wnid]))
        (image.convert("L") if k == 0 else image).save(base / "val" / "images" / f"val_{k}.JPEG")
        annotations.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
        val_labels.append(label_of[wnid])
    (base / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return {"folder": base, "label_of": label_of, "val_labels": np.array(val_labels)}
