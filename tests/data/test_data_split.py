"""Train/validation splits and standardisation fitted on the training part."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from small_data import indexed, make

from nnlab.data import DataError, Standardizer, split, standardize, xor


def test_split_sizes():
    train, val = split(make("spirals", n_samples=100), val_fraction=0.2)
    assert (train.n_samples, val.n_samples) == (80, 20)
    train, val = split(make("sine", n_samples=41), val_fraction=0.25)
    assert (train.n_samples, val.n_samples) == (31, 10)
    assert val.y.shape == (10, 1)


def test_split_parts_are_disjoint_and_cover_everything():
    data = indexed(np.arange(60) % 3)
    train, val = split(data, val_fraction=0.3, seed=5)
    rows_train, rows_val = train.X[:, 0].astype(int), val.X[:, 0].astype(int)
    assert not set(rows_train) & set(rows_val)
    np.testing.assert_array_equal(np.sort(np.concatenate([rows_train, rows_val])), np.arange(60))
    # Each row keeps its own label.
    np.testing.assert_array_equal(train.y, data.y[rows_train])
    np.testing.assert_array_equal(val.y, data.y[rows_val])


def test_split_keeps_metadata():
    data = make("blobs")
    train, val = split(data)
    for part in (train, val):
        assert (part.task, part.name, part.classes, part.feature_names) == (
            data.task,
            data.name,
            data.classes,
            data.feature_names,
        )
        assert part.X.flags.c_contiguous


def test_split_stratifies_classes():
    y = np.repeat([0, 1, 2], [80, 16, 4])
    train, val = split(indexed(y), val_fraction=0.25)
    np.testing.assert_array_equal(np.bincount(val.y), [20, 4, 1])
    np.testing.assert_array_equal(np.bincount(train.y), [60, 12, 3])


def test_split_puts_small_classes_in_both_parts():
    y = np.repeat([0, 1, 2], [50, 2, 3])
    train, val = split(indexed(y), val_fraction=0.1)
    assert set(train.y) == set(val.y) == {0, 1, 2}


def test_split_without_stratify_is_a_plain_shuffle():
    y = np.repeat([0, 1], [95, 5])
    train, val = split(indexed(y), val_fraction=0.5, stratify=False, seed=1)
    assert (train.n_samples, val.n_samples) == (50, 50)


def test_split_is_deterministic_and_seeded():
    data = make("moons")
    a, b = split(data, seed=3), split(data, seed=3)
    c = split(data, seed=4)
    assert np.array_equal(a[1].X, b[1].X) and np.array_equal(a[0].y, b[0].y)
    assert not np.array_equal(a[1].X, c[1].X)


def test_split_zero_fraction_gives_an_empty_validation_part():
    data = make("blobs")
    train, val = split(data, val_fraction=0)
    assert train.n_samples == data.n_samples
    assert val.X.shape == (0, data.n_features) and val.y.shape == (0,)
    assert val.n_classes == data.n_classes
    _, val_reg = split(make("sine"), val_fraction=0.0)
    assert val_reg.y.shape == (0, 1) and val_reg.n_outputs == 1


def test_split_keeps_one_sample_on_each_side_when_it_can():
    tiny = xor(n_samples=2)
    train, val = split(tiny, val_fraction=0.9, stratify=False)
    assert (train.n_samples, val.n_samples) == (1, 1)
    train, val = split(tiny, val_fraction=0.01, stratify=False)
    assert (train.n_samples, val.n_samples) == (1, 1)
    # Stratified, a class with a single sample can only be on one side: training.
    train, val = split(tiny, val_fraction=0.9)
    assert (train.n_samples, val.n_samples) == (2, 0)


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, float("nan"), "0.2"])
def test_split_rejects_bad_fractions(fraction):
    message = f"val_fraction must be a finite number in [0, 1), got {fraction!r}"
    with pytest.raises(DataError, match=re.escape(message)):
        split(xor(), val_fraction=fraction)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32),
)
def test_split_partitions_any_class_layout(sizes, fraction, seed):
    data = indexed(np.repeat(np.arange(len(sizes)), sizes))
    train, val = split(data, val_fraction=fraction, seed=seed)
    rows = np.concatenate([train.X[:, 0], val.X[:, 0]]).astype(int)
    np.testing.assert_array_equal(np.sort(rows), np.arange(data.n_samples))
    assert train.n_samples >= 1
    if fraction > 0:
        for c, size in enumerate(sizes):
            if size >= 2:
                assert c in set(train.y) and c in set(val.y)
    else:
        assert val.n_samples == 0


# --- standardisation ------------------------------------------------------------------------------


def test_standardize_fits_on_train_only():
    train, val = split(make("blobs", noise=3.0), val_fraction=0.3)
    std_train, std_val = standardize(train, val)
    np.testing.assert_allclose(std_train.X.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std_train.X.std(axis=0), 1.0, rtol=1e-12)
    assert not np.allclose(std_val.X.mean(axis=0), 0.0, atol=1e-12)
    expected = (val.X - train.X.mean(axis=0)) / train.X.std(axis=0)
    np.testing.assert_allclose(std_val.X, expected, rtol=1e-12)
    # Inputs untouched, targets and metadata carried over.
    assert not np.allclose(train.X.mean(axis=0), 0.0)
    assert std_val.y is val.y and std_val.name == val.name


def test_standardizer_keeps_constant_features_finite():
    X = np.column_stack([np.full(7, 0.1), np.arange(7.0), np.full(7, 3e6)])
    scaler = Standardizer.fit(X)
    Z = scaler.transform(X)
    assert np.isfinite(Z).all()
    np.testing.assert_allclose(Z[:, [0, 2]], 0.0, atol=1e-9)
    np.testing.assert_array_equal(scaler.std[[0, 2]], 1.0)


def test_standardizer_checks_feature_counts():
    scaler = Standardizer.fit(np.ones((3, 2)))
    with pytest.raises(DataError, match="X has 3 features but the Standardizer was fitted on 2"):
        scaler.transform(np.ones((1, 3)))
    with pytest.raises(DataError, match="0 samples"):
        Standardizer.fit(np.ones((0, 2)))


def test_standardize_with_empty_validation_part():
    train, val = standardize(*split(make("moons"), val_fraction=0))
    assert val.X.shape == (0, 2) and np.isfinite(train.X).all()
