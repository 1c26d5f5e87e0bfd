"""The synthetic generators: shapes, balance, seeds, exact shapes without noise, bad arguments."""

from __future__ import annotations

import re

import numpy as np
import pytest
from small_data import CLASSIFIERS, SMALL, make

from nnlab.data import (
    SYNTHETIC,
    DataError,
    blobs,
    circles,
    fingerprint,
    moons,
    sine,
    spirals,
    validate,
    xor,
)


def test_registry_lists_every_generator():
    assert set(SYNTHETIC) == set(SMALL)
    assert SYNTHETIC["spirals"] is spirals


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generator_shapes_and_dtypes(name):
    data = make(name)
    n = SMALL[name]["n_samples"]
    assert data.name == name
    assert data.X.dtype == np.float64 and data.X.flags.c_contiguous
    assert data.X.shape == (n, data.n_features) and data.n_samples == n
    assert len(data.feature_names) == data.n_features
    assert validate(data) is data
    if name == "sine":
        assert data.task == "regression"
        assert data.y.dtype == np.float64 and data.y.shape == (n, 1)
        assert data.classes == () and data.n_classes == 0 and data.n_outputs == 1
    else:
        assert data.task == "classification"
        assert data.y.dtype == np.int64 and data.y.shape == (n,)
        assert data.classes == tuple(str(c) for c in range(data.n_classes))
        assert data.n_outputs == data.n_classes


@pytest.mark.parametrize(
    ("name", "n_samples", "n_classes"),
    [("xor", 10, 2), ("moons", 51, 2), ("circles", 50, 2), ("spirals", 101, 4), ("blobs", 7, 3)],
)
def test_classification_generators_are_balanced(name, n_samples, n_classes):
    data = make(name, n_samples=n_samples, **({"classes": n_classes} if n_classes > 2 else {}))
    counts = np.bincount(data.y, minlength=n_classes)
    assert len(counts) == n_classes == data.n_classes
    assert counts.sum() == n_samples and counts.max() - counts.min() <= 1


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generators_are_deterministic(name):
    a, b = make(name), make(name)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert fingerprint(a.X, a.y) == fingerprint(b.X, b.y)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_generators_depend_on_the_seed(name):
    a, b = make(name, seed=0), make(name, seed=1)
    assert not np.array_equal(a.X, b.X)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classification_generators_shuffle_or_cycle(name):
    # No long runs of one class: the first quarter of the rows already holds every class.
    data = make(name)
    assert set(data.y[: data.n_samples // 4 + 1]) == set(range(data.n_classes))


def test_xor_default_is_the_four_textbook_points():
    data = xor()
    np.testing.assert_array_equal(data.X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])
    assert data.classes == ("0", "1")


def test_xor_repeats_the_corners_cyclically():
    data = xor(n_samples=10)
    np.testing.assert_array_equal(data.X[4:8], xor().X)
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0, 0, 1, 1, 0, 0, 1])
    noisy = xor(n_samples=400, noise=0.1, seed=3)
    np.testing.assert_allclose((noisy.X - np.tile(xor().X, (100, 1))).std(), 0.1, atol=0.01)


def test_circles_radii_without_noise():
    data = circles(n_samples=40, noise=0.0, factor=0.3)
    radius = np.hypot(data.X[:, 0], data.X[:, 1])
    np.testing.assert_allclose(radius[data.y == 0], 1.0, rtol=1e-12)
    np.testing.assert_allclose(radius[data.y == 1], 0.3, rtol=1e-12)


def test_moons_without_noise_lie_on_two_half_circles():
    data = moons(n_samples=40, noise=0.0)
    upper, lower = data.X[data.y == 0], data.X[data.y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1.0, lower[:, 1] - 0.5), 1.0, rtol=1e-12)
    assert (upper[:, 1] >= 0).all() and (lower[:, 1] <= 0.5).all()


def test_spirals_fill_the_unit_disc():
    data = spirals(n_samples=90, classes=3)
    assert np.hypot(data.X[:, 0], data.X[:, 1]).max() == pytest.approx(1.0)


def test_blobs_without_noise_are_one_point_per_class():
    data = blobs(n_samples=30, classes=3, n_features=4, noise=0.0)
    for c in range(3):
        assert len(np.unique(data.X[data.y == c], axis=0)) == 1
    assert ((data.X >= -10) & (data.X < 10)).all()


def test_sine_without_noise_is_exact():
    data = sine(n_samples=50, noise=0.0)
    assert (np.abs(data.X) <= np.pi).all()
    np.testing.assert_array_equal(data.y, np.sin(data.X))
    assert data.feature_names == ("x",)


@pytest.mark.parametrize(
    ("generator", "kwargs", "message"),
    [
        (moons, {"n_samples": 0}, "n_samples must be an integer >= 2 (one per class), got 0"),
        (sine, {"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
        (sine, {"n_samples": 2.5}, "n_samples must be an integer >= 1, got 2.5"),
        (spirals, {"n_samples": 2, "classes": 3}, "n_samples must be an integer >= 3"),
        (xor, {"noise": -0.5}, "noise must be a finite number >= 0, got -0.5"),
        (blobs, {"noise": float("nan")}, "noise must be a finite number >= 0, got nan"),
        (spirals, {"classes": 1}, "classes must be an integer >= 2, got 1"),
        (blobs, {"classes": True}, "classes must be an integer >= 2, got True"),
        (blobs, {"n_features": 0}, "n_features must be an integer >= 1, got 0"),
        (circles, {"factor": 1.0}, "factor must be a finite number in (0, 1), got 1.0"),
        (circles, {"factor": 0}, "factor must be a finite number in (0, 1), got 0"),
        (moons, {"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_generator_arguments_name_the_value_and_range(generator, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        generator(**kwargs)
