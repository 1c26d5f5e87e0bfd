"""Preparing a dataset for training: the train/validation split and feature standardisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nnlab.checks import check_int, check_number
from nnlab.data.dataset import DataError, Dataset, validate


def split(
    data: Dataset, val_fraction: float = 0.2, seed: int = 0, stratify: bool = True
) -> tuple[Dataset, Dataset]:
    """Shuffle and split a dataset into training and validation parts.

    Parameters
    ----------
    data : Dataset
    val_fraction : float, in [0, 1)
        Share of the samples for validation, rounded to the nearest count. With 0 the validation
        part is an empty Dataset of shape (0, n_features); otherwise, given 2 or more samples,
        each part gets at least one.
    seed : int, >= 0
        Same seed, same split.
    stratify : bool
        For classification, split each class separately so class shares are kept and every class
        with at least 2 samples appears in both parts; a class with a single sample stays in
        training (so a tiny dataset may get an empty validation part). Ignored for regression.

    Returns
    -------
    train, val : Dataset
        Disjoint parts that together hold every sample once, each in shuffled order, with the
        same task, name, classes and feature names as ``data``.
    """
    validate(data)
    fraction = check_number("val_fraction", val_fraction, at_least=0, below=1, error=DataError)
    rng = np.random.default_rng(check_int("seed", seed, 0, error=DataError))
    if data.task == "classification" and stratify:
        groups = [np.flatnonzero(data.y == c) for c in range(data.n_classes)]
    else:
        groups = [np.arange(data.n_samples)]
    counts = _validation_counts(np.array([len(g) for g in groups]), fraction)
    picked = [rng.permutation(g)[:c] for g, c in zip(groups, counts, strict=True)]
    in_val = np.zeros(data.n_samples, dtype=bool)
    in_val[np.concatenate(picked)] = True
    train = rng.permutation(np.flatnonzero(~in_val))
    val = rng.permutation(np.flatnonzero(in_val))
    return _take(data, train), _take(data, val)


def _validation_counts(sizes: np.ndarray, fraction: float) -> np.ndarray:
    """How many of each group go to validation, summing to ``round(fraction * total)``.

    Largest-remainder rounding of ``fraction * sizes``, bounded so each group of 2 or more gives
    at least one sample to each part (which may push the total past the target).
    """
    total = int(sizes.sum())
    target = round(fraction * total)
    if fraction > 0 and total >= 2:
        target = min(max(target, 1), total - 1)
    low = np.where((sizes >= 2) & (fraction > 0), 1, 0)
    high = np.maximum(sizes - 1, 0)
    quota = fraction * sizes
    counts = np.clip(np.floor(quota).astype(int), low, high)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    while counts.sum() < target and (counts < high).any():
        for i in order:
            if counts.sum() < target and counts[i] < high[i]:
                counts[i] += 1
    return counts


def _take(data: Dataset, rows: np.ndarray) -> Dataset:
    return dataclasses.replace(data, X=data.X[rows], y=data.y[rows])


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature affine map to zero mean and unit variance, fitted on training data only.

    Attributes
    ----------
    mean : ndarray of shape (n_features,)
    std : ndarray of shape (n_features,)
        Population standard deviation; 1 for constant features so they map to 0, not NaN.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        """Learn the mean and standard deviation of each column of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            At least one sample.
        """
        X = _as_matrix(X, "X")
        if len(X) == 0:
            raise DataError("can't fit a Standardizer on 0 samples; need at least 1")
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        # Rounding leaves a constant column a tiny non-zero std; treat those as constant too.
        constant = std <= 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
        return cls(mean, np.where(constant, 1.0, std))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardise X with the fitted statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            New float64 C-contiguous array; X is not modified.
        """
        X = _as_matrix(X, "X")
        if X.shape[1] != len(self.mean):
            raise DataError(
                f"X has {X.shape[1]} features but the Standardizer was fitted on {len(self.mean)}"
            )
        return np.ascontiguousarray((X - self.mean) / self.std)

    def __repr__(self) -> str:
        return f"Standardizer(n_features={len(self.mean)})"


def standardize(train: Dataset, val: Dataset) -> tuple[Dataset, Dataset]:
    """Standardise both parts of a split with statistics of the training part.

    Parameters
    ----------
    train : Dataset
    val : Dataset
        May be empty.

    Returns
    -------
    train, val : Dataset
        Copies with standardised X; y and metadata unchanged.
    """
    scaler = Standardizer.fit(train.X)
    return (
        dataclasses.replace(train, X=scaler.transform(train.X)),
        dataclasses.replace(val, X=scaler.transform(val.X)),
    )


def _as_matrix(X: object, name: str) -> np.ndarray:
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{name} must be 2-D of shape (n_samples, n_features), got {array.shape}")
    return array
