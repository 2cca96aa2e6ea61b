"""The bundled MNIST subset: splits, ranges, padding."""

import numpy as np
import pytest
import torch

from core.data import MNIST5K_PATH, fit_size, load_dataset, mnist5k_split_indices


def test_bundled_file_holds_5000_digits_sorted_by_label():
    with np.load(MNIST5K_PATH) as data:
        images, labels = data["images"], data["labels"]
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert np.all(np.diff(labels.astype(int)) >= 0), "the source file is sorted by label"


def test_splits_hold_every_digit_and_never_overlap():
    train, test = load_dataset(split="train"), load_dataset(split="test")
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    with np.load(MNIST5K_PATH) as data:
        labels = data["labels"]
    train_rows, test_rows = mnist5k_split_indices(labels, "train"), mnist5k_split_indices(labels, "test")
    assert not set(train_rows) & set(test_rows)
    # within each class the first 400 rows in file order are training rows
    assert set(train_rows) == {r for d in range(10) for r in np.flatnonzero(labels == d)[:400]}


def test_images_are_padded_to_32_and_scaled_to_minus_one_one():
    data = load_dataset(image_size=32)
    assert data.images.shape == (4000, 1, 32, 32) and data.images.dtype == torch.float32
    assert data.images.min() == -1 and data.images.max() == 1
    assert torch.all(data.images[:, :, :2, :] == -1) and torch.all(data.images[:, :, :, -2:] == -1)
    assert load_dataset(image_size=28).images.shape[-1] == 28
    assert fit_size(data.images[:2], 16).shape == (2, 1, 16, 16)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="unknown dataset 'cifar100'; choose one of mnist5k"):
        load_dataset("cifar100")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset(split="validation")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(image_size=4)
