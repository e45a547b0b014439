from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.emnist_fixtures import class_glyph, write_emnist_fixture, write_idx

from emnist_lightning.data.augment import RandomAffineBatch
from emnist_lightning.data.datamodule import EMNISTDataModule, load_split
from emnist_lightning.data.idx_files import expected_files, raw_folder
from emnist_lightning.data.sampling import EpochSeededBatchSampler, stratified_split
from emnist_lightning.errors import DataFilesError


def _ready(data_dir: Path, **kwargs) -> EMNISTDataModule:
    dm = EMNISTDataModule(data_dir=str(data_dir), download=False, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_loader_returns_upright_images_and_class_indices(tiny_emnist: Path) -> None:
    images, labels = load_split(tiny_emnist, "balanced", train=True)
    assert images.shape == (47 * 12, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.min() == 0 and labels.max() == 46
    # The fixture stores glyphs transposed, as EMNIST does; the loader must undo that.
    first_cls = int(labels[0])
    rng_image = images[0, 0].numpy()
    expected_rows = 3 + (first_cls * 5) % 22
    assert rng_image[expected_rows + 1, 10:20].mean() > 150  # the horizontal bar is horizontal


def test_orientation_of_a_single_asymmetric_image(tmp_path: Path) -> None:
    upright = np.zeros((1, 28, 28), dtype=np.uint8)
    upright[0, 2, 5:20] = 255  # a bar along the top row
    folder = raw_folder(tmp_path)
    folder.mkdir(parents=True)
    for train in (True, False):
        images_name, labels_name = expected_files("digits", train)
        write_idx(folder / images_name, upright.transpose(0, 2, 1))
        write_idx(folder / labels_name, np.array([3], dtype=np.uint8))
    images, labels = load_split(tmp_path, "digits", train=True)
    assert torch.equal(images[0, 0], torch.from_numpy(upright[0]))
    assert labels.tolist() == [3]


@pytest.mark.parametrize(
    ("split", "num_classes"),
    [("byclass", 62), ("letters", 26), ("digits", 10), ("mnist", 10), ("bymerge", 47)],
)
def test_every_split_loads_with_its_classes(tmp_path: Path, split: str, num_classes: int) -> None:
    write_emnist_fixture(tmp_path, split=split, train_per_class=3, test_per_class=1)
    dm = _ready(tmp_path, split=split, val_fraction=0.34)  # one of three images per class
    assert dm.num_classes == num_classes == len(dm.characters)
    _, labels = next(iter(dm.train_dataloader()))
    assert labels.min() >= 0 and labels.max() < num_classes


def test_validation_is_stratified_seeded_and_disjoint(tiny_emnist: Path) -> None:
    dm = _ready(tiny_emnist, val_fraction=0.25)
    train_idx, val_idx = dm.train_indices, dm.val_indices
    assert len(val_idx) == 47 * 3 and len(train_idx) == 47 * 9
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    labels = dm._train[1]
    assert torch.bincount(labels[val_idx], minlength=47).tolist() == [3] * 47
    again = _ready(tiny_emnist, val_fraction=0.25)
    assert torch.equal(again.val_indices, val_idx)
    other_seed = _ready(tiny_emnist, val_fraction=0.25, seed=7)
    assert not torch.equal(other_seed.val_indices, val_idx)


def test_val_set_is_what_the_validation_loader_yields(tiny_emnist: Path) -> None:
    dm = _ready(tiny_emnist, val_fraction=0.25)
    images, labels = dm.val_set()
    batches = list(dm.val_dataloader())
    assert torch.equal(torch.cat([b[0] for b in batches]), images)
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    assert len(labels) == 47 * 3


def test_stratified_split_keeps_rare_classes_proportional() -> None:
    labels = torch.tensor([0] * 100 + [1] * 10)
    train_idx, val_idx = stratified_split(labels, 0.1, seed=0)
    assert torch.bincount(labels[val_idx]).tolist() == [10, 1]
    assert len(train_idx) + len(val_idx) == 110


def test_test_set_is_the_official_one_untouched(tiny_emnist: Path) -> None:
    dm = _ready(tiny_emnist)
    images, labels = load_split(tiny_emnist, "balanced", train=False)
    batches = list(dm.test_dataloader())
    assert torch.equal(torch.cat([b[0] for b in batches]), images)
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)


def test_in_memory_batches_equal_the_per_sample_torchvision_path(tiny_emnist: Path) -> None:
    fast = _ready(tiny_emnist, batch_size=50)
    slow = _ready(tiny_emnist, batch_size=50, in_memory=False)
    for loader_name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        fast_batches = list(getattr(fast, loader_name)())
        slow_batches = list(getattr(slow, loader_name)())
        assert len(fast_batches) == len(slow_batches)
        for (fi, fl), (si, sl) in zip(fast_batches, slow_batches, strict=True):
            assert torch.equal(fi, si) and torch.equal(fl, sl)


def test_every_epoch_sees_every_training_sample_once_in_a_new_order() -> None:
    sampler = EpochSeededBatchSampler(103, 10, shuffle=True, seed=1)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = [i for batch in sampler for i in batch]
        assert sorted(order) == list(range(103))
        assert len(list(sampler)) == len(sampler) == 11
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]
    replay = EpochSeededBatchSampler(103, 10, shuffle=True, seed=1)
    replay.set_epoch(1)
    assert [i for batch in replay for i in batch] == orders[1]


def test_ranks_split_an_epoch_between_them_without_overlap() -> None:
    parts = []
    for rank in range(3):
        sampler = EpochSeededBatchSampler(100, 8, shuffle=True, seed=0, rank=rank, world_size=3)
        parts.append([i for batch in sampler for i in batch])
    assert sorted(sum(parts, [])) == list(range(100))


def test_batches_become_unit_floats_and_only_training_batches_are_augmented(
    tiny_emnist: Path,
) -> None:
    dm = _ready(tiny_emnist, augment=RandomAffineBatch(degrees=20))
    images, labels = next(iter(dm.train_dataloader()))
    out_images, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert out_images.dtype == torch.float32 and out_images.min() >= 0 and out_images.max() <= 1
    assert torch.allclose(out_images, images.float() / 255)  # no trainer: no augmentation
    assert torch.equal(out_labels, labels)


def test_random_affine_warps_each_image_differently_and_keeps_shape() -> None:
    torch.manual_seed(0)
    glyph = torch.from_numpy(class_glyph(5, np.random.default_rng(0))).float().div(255)
    batch = glyph.expand(8, 1, 28, 28).clone()
    warped = RandomAffineBatch(degrees=15, translate=0.1, scale=(0.9, 1.1), shear=5)(batch)
    assert warped.shape == batch.shape
    assert not torch.allclose(warped[0], warped[1])
    identity = RandomAffineBatch(degrees=0, translate=0, scale=(1, 1), shear=0)(batch)
    assert torch.allclose(identity, batch, atol=1e-5)


def test_missing_files_offline_name_the_folder_the_files_and_the_fix(tmp_path: Path) -> None:
    dm = EMNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(DataFilesError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert str(raw_folder(tmp_path)) in message
    assert "emnist-balanced-train-images-idx3-ubyte" in message
    assert "data.download=true" in message and "\n" not in message


def _copy_fixture(src: Path, dst: Path) -> Path:
    folder = raw_folder(dst)
    folder.mkdir(parents=True)
    for path in raw_folder(src).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_truncated_idx_file_is_named_in_a_clear_error(tiny_emnist: Path, tmp_path: Path) -> None:
    folder = _copy_fixture(tiny_emnist, tmp_path)
    images = folder / "emnist-balanced-train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(DataFilesError, match="emnist-balanced-train-images-idx3-ubyte is corrupt"):
        _ready(tmp_path)


def test_file_that_is_not_idx_is_named_in_a_clear_error(tiny_emnist: Path, tmp_path: Path) -> None:
    folder = _copy_fixture(tiny_emnist, tmp_path)
    (folder / "emnist-balanced-test-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataFilesError, match="test-labels-idx1-ubyte is not a uint8 IDX file"):
        _ready(tmp_path)


def test_images_and_labels_of_different_lengths_are_refused(
    tiny_emnist: Path, tmp_path: Path
) -> None:
    folder = _copy_fixture(tiny_emnist, tmp_path)
    write_idx(folder / "emnist-balanced-train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataFilesError, match="holds 564 images but"):
        _ready(tmp_path)


@pytest.mark.parametrize("world_size", [1, 2])
def test_training_batches_never_hold_a_single_image(world_size: int) -> None:
    from emnist_lightning.data.sampling import EpochSeededBatchSampler

    # 2 * 9 + 1 images per rank: the remainder image joins the last batch.
    for rank in range(world_size):
        sampler = EpochSeededBatchSampler(
            19 * world_size, 9, shuffle=True, rank=rank, world_size=world_size, pad=True
        )
        sizes = [len(batch) for batch in sampler]
        assert sizes == [9, 10] and len(sampler) == 2
        assert len({p for batch in sampler for p in batch}) == 19
