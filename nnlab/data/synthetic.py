"""Seeded synthetic datasets: the classic toy problems for small networks.

Every generator draws all randomness from ``numpy.random.default_rng(seed)``, so the same arguments
give bit-identical arrays. Classification generators give every class the same number of samples
(to within one) and shuffle the rows, except :func:`xor`, whose rows cycle through the four corners.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnlab.checks import check_count, check_int, check_number
from nnlab.data.dataset import DataError, Dataset, make_dataset

# Ceilings on the generators' sizes: the largest data set is 1e6 x 1e3 values, 8 GB; a run's
# memory estimate (nnlab.sweeps.budget) decides whether a given one fits the machine.
MAX_SAMPLES = 1_000_000
MAX_CLASSES = 1_000
MAX_FEATURES = 1_000

_XOR_CORNERS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_LABELS = np.array([0, 1, 1, 0])


def xor(n_samples: int = 4, noise: float = 0.0, seed: int = 0) -> Dataset:
    """The XOR problem: corners of the unit square labelled ``x1 XOR x2``.

    Parameters
    ----------
    n_samples : int, >= 2
        Rows cycle through (0,0), (0,1), (1,0), (1,1); 4 with ``noise=0`` is the textbook set.
    noise : float, >= 0
        Standard deviation of Gaussian noise added to every coordinate.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, 2), y of shape (n_samples,), 2 classes.
    """
    n, noise, rng = _common(n_samples, noise, seed, n_classes=2)
    index = np.arange(n) % 4
    X = _XOR_CORNERS[index] + noise * rng.standard_normal((n, 2))
    return make_dataset(X, _XOR_LABELS[index], "classification", "xor", ("x1", "x2"))


def moons(n_samples: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two interleaving half circles.

    Parameters
    ----------
    n_samples : int, >= 2
    noise : float, >= 0
        Standard deviation of Gaussian noise added to every coordinate.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, 2), y of shape (n_samples,), 2 classes.
    """
    n, noise, rng = _common(n_samples, noise, seed, n_classes=2)
    outer, inner = (np.linspace(0.0, np.pi, m) for m in _balanced_counts(n, 2))
    X = np.vstack(
        [
            np.column_stack([np.cos(outer), np.sin(outer)]),
            np.column_stack([1.0 - np.cos(inner), 0.5 - np.sin(inner)]),
        ]
    )
    X += noise * rng.standard_normal((n, 2))
    return _shuffled("moons", X, _balanced_labels(n, 2), rng)


def circles(
    n_samples: int = 200, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> Dataset:
    """A circle of radius 1 (class 0) around a circle of radius ``factor`` (class 1).

    Parameters
    ----------
    n_samples : int, >= 2
    noise : float, >= 0
        Standard deviation of Gaussian noise added to every coordinate.
    factor : float, in (0, 1)
        Radius of the inner circle.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, 2), y of shape (n_samples,), 2 classes.
    """
    n, noise, rng = _common(n_samples, noise, seed, n_classes=2)
    factor = check_number("factor", factor, above=0, below=1, error=DataError)
    rings = []
    for radius, m in zip((1.0, factor), _balanced_counts(n, 2), strict=True):
        t = np.linspace(0.0, 2.0 * np.pi, m, endpoint=False)
        rings.append(radius * np.column_stack([np.cos(t), np.sin(t)]))
    X = np.vstack(rings) + noise * rng.standard_normal((n, 2))
    return _shuffled("circles", X, _balanced_labels(n, 2), rng)


def spirals(n_samples: int = 300, classes: int = 3, noise: float = 0.2, seed: int = 0) -> Dataset:
    """Interleaved spiral arms, one per class (the cs231n toy problem).

    Arm ``j`` runs from the origin to radius 1 while its angle sweeps 4 radians, starting at
    ``2*pi*j/classes`` so the arms are evenly spaced.

    Parameters
    ----------
    n_samples : int, >= classes
    classes : int, >= 2
    noise : float, >= 0
        Standard deviation of the Gaussian noise on each point's angle, in radians.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, 2), y of shape (n_samples,), ``classes`` balanced classes.
    """
    k = check_count("classes", classes, 2, MAX_CLASSES, error=DataError)
    n, noise, rng = _common(n_samples, noise, seed, n_classes=k)
    arms = []
    for j, m in enumerate(_balanced_counts(n, k)):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(0.0, 4.0, m) + 2.0 * np.pi * j / k + noise * rng.standard_normal(m)
        arms.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
    return _shuffled("spirals", np.vstack(arms), _balanced_labels(n, k), rng)


def blobs(
    n_samples: int = 300, classes: int = 3, n_features: int = 2, noise: float = 1.0, seed: int = 0
) -> Dataset:
    """Isotropic Gaussian clusters, one per class.

    Parameters
    ----------
    n_samples : int, >= classes
    classes : int, >= 2
    n_features : int, >= 1
    noise : float, >= 0
        Standard deviation of each cluster; centres are uniform in ``[-10, 10)`` per feature.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, n_features), y of shape (n_samples,), ``classes`` balanced classes.
    """
    k = check_count("classes", classes, 2, MAX_CLASSES, error=DataError)
    d = check_count("n_features", n_features, 1, MAX_FEATURES, error=DataError)
    n, noise, rng = _common(n_samples, noise, seed, n_classes=k)
    centres = rng.uniform(-10.0, 10.0, size=(k, d))
    y = _balanced_labels(n, k)
    X = centres[y] + noise * rng.standard_normal((n, d))
    return _shuffled("blobs", X, y, rng, tuple(f"x{i + 1}" for i in range(d)))


def sine(n_samples: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Regression of ``sin(x)`` from noisy samples.

    Parameters
    ----------
    n_samples : int, >= 1
    noise : float, >= 0
        Standard deviation of Gaussian noise added to the target.
    seed : int, >= 0

    Returns
    -------
    Dataset
        X of shape (n_samples, 1) uniform in ``[-pi, pi)``, y of shape (n_samples, 1).
    """
    n, noise, rng = _common(n_samples, noise, seed, n_classes=0)
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return make_dataset(x, y, "regression", "sine", ("x",))


SYNTHETIC: dict[str, Callable[..., Dataset]] = {
    "xor": xor,
    "moons": moons,
    "circles": circles,
    "spirals": spirals,
    "blobs": blobs,
    "sine": sine,
}


def _common(
    n_samples: object, noise: object, seed: object, n_classes: int
) -> tuple[int, float, np.random.Generator]:
    """Check the arguments every generator takes; return them with the seeded generator.

    ``n_classes`` is 0 for regression; classification needs a sample of every class.
    """
    why = "one per class" if n_classes else ""
    n = check_count("n_samples", n_samples, max(n_classes, 1), MAX_SAMPLES, why, DataError)
    sigma = check_number("noise", noise, at_least=0, error=DataError)
    return n, sigma, np.random.default_rng(check_int("seed", seed, 0, error=DataError))


def _balanced_counts(n: int, k: int) -> list[int]:
    """Split n samples over k classes as evenly as possible, the first classes taking any extra."""
    return [n // k + (j < n % k) for j in range(k)]


def _balanced_labels(n: int, k: int) -> np.ndarray:
    return np.repeat(np.arange(k), _balanced_counts(n, k))


def _shuffled(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    feature_names: tuple[str, ...] = ("x1", "x2"),
) -> Dataset:
    order = rng.permutation(len(y))
    return make_dataset(X[order], y[order], "classification", name, feature_names)
