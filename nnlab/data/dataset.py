"""The Dataset container, its validation, and its content fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnlab.checks import InputError, check_choice


class DataError(InputError):
    """Bad data or a bad data argument; the message names the value and what was expected."""


TASKS = ("classification", "regression")

# y's dtype kind decides the task when the caller does not: labels are classes, floats are targets.
_TASK_BY_KIND = {
    "b": "classification",
    "i": "classification",
    "u": "classification",
    "U": "classification",
    "S": "classification",
    "O": "classification",
    "f": "regression",
}


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A supervised dataset: features, targets and what they mean.

    Build one with :func:`make_dataset` (or a generator/loader), which coerces and validates.
    Datasets compare by identity; compare contents with :func:`fingerprint`.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        float64, C-contiguous.
    y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Classification: int64 class ids in ``[0, n_classes)``. Regression: float64, 2-D.
    task : {"classification", "regression"}
    name : str
        The generator name or the file path.
    classes : tuple of str
        Class names, index = class id; ``()`` for regression.
    feature_names : tuple of str
        One per column of X, or ``()`` when unknown.
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    name: str
    classes: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes; 0 for regression."""
        if self.task != "classification":
            return 0
        return len(self.classes) if self.classes else int(self.y.max(initial=-1)) + 1

    @property
    def n_outputs(self) -> int:
        """Width of the network's output layer: n_classes, or the number of regression targets."""
        return self.n_classes if self.task == "classification" else int(self.y.shape[1])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, n_samples={self.n_samples}, "
            f"n_features={self.n_features}, n_outputs={self.n_outputs})"
        )


def make_dataset(
    X: object,
    y: object,
    task: str | None = None,
    name: str = "arrays",
    feature_names: tuple[str, ...] = (),
) -> Dataset:
    """Build a validated Dataset from user arrays.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric features; converted to C-contiguous float64.
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
        Integer, boolean or string labels mean classification (ids are assigned in sorted label
        order, names kept in ``classes``); floats mean regression (1-D becomes ``(n_samples, 1)``).
    task : {"classification", "regression"}, optional
        Overrides the inference from y's dtype.
    name : str
        Recorded as ``Dataset.name`` and used in error messages.
    feature_names : tuple of str
        One per column of X, or ``()``.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Non-numeric X, labels that can't be classes, or any failure of :func:`validate`.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name}: X must be numeric, got dtype {X.dtype}")
    if task is None:
        task = _TASK_BY_KIND.get(y.dtype.kind)
        if task is None:
            raise DataError(f"{name}: can't infer the task from y of dtype {y.dtype}; pass task=")
    check_choice("task", task, TASKS, error=DataError)
    y, classes = _TARGETS[task](y, name)
    X = np.ascontiguousarray(X, dtype=np.float64)
    names = tuple(str(f) for f in feature_names)
    return validate(Dataset(X, y, task, name, classes, names))


def _encode_labels(y: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{name}: classification y must be 1-D labels of shape (n_samples,), "
            f"got shape {y.shape}"
        )
    if y.dtype.kind not in _TASK_BY_KIND:
        raise DataError(f"{name}: classification labels can't have dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = ~np.isfinite(y)
        raise DataError(
            f"{name}: y has {int(bad.sum())} missing or infinite labels "
            f"(first at row {int(np.argmax(bad))}); every sample needs a class"
        )
    try:
        labels, ids = np.unique(y, return_inverse=True)
    except TypeError as err:
        raise DataError(f"{name}: class labels of mixed types can't be sorted ({err})") from err
    return ids.reshape(-1).astype(np.int64), tuple(_label_name(v) for v in labels)


def _as_targets(y: np.ndarray, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if y.dtype.kind not in "biuf":
        raise DataError(f"{name}: regression y must be numeric, got dtype {y.dtype}")
    if y.ndim == 1:
        y = y[:, None]
    return np.ascontiguousarray(y, dtype=np.float64), ()


_TARGETS: dict[str, Callable[[np.ndarray, str], tuple[np.ndarray, tuple[str, ...]]]] = {
    "classification": _encode_labels,
    "regression": _as_targets,
}


def _label_name(label: object) -> str:
    value = label.item() if isinstance(label, np.generic) else label
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def validate(data: Dataset) -> Dataset:
    """Check a Dataset's invariants and return it unchanged.

    Checks, in order: the task; X is 2-D C-contiguous float64; y's dtype and shape suit the task;
    ``len(X) == len(y)``; at least one sample and one feature; X finite; y finite; classification
    ids lie in ``[0, n_classes)`` and at least two distinct classes occur.

    Parameters
    ----------
    data : Dataset

    Returns
    -------
    Dataset
        ``data`` itself.

    Raises
    ------
    DataError
        Naming the dataset and the first failed check.
    """
    for check in _CHECKS:
        check(data)
    return data


def _check_task(data: Dataset) -> None:
    check_choice(f"{data.name}: task", data.task, TASKS, error=DataError)


def _check_X(data: Dataset) -> None:
    X = data.X
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        shape = getattr(X, "shape", None)
        raise DataError(
            f"{data.name}: X must be 2-D of shape (n_samples, n_features), got shape {shape}; "
            "use X.reshape(-1, 1) for a single feature"
        )
    if X.dtype != np.float64 or not X.flags.c_contiguous:
        raise DataError(
            f"{data.name}: X must be C-contiguous float64, got {X.dtype}; "
            "build the dataset with make_dataset"
        )
    if data.feature_names and len(data.feature_names) != X.shape[1]:
        raise DataError(
            f"{data.name}: {len(data.feature_names)} feature names for {X.shape[1]} columns of X"
        )


def _check_y(data: Dataset) -> None:
    y = data.y
    if data.task == "classification":
        ok = isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1
        expected = "int64 class ids of shape (n_samples,)"
    else:
        ok = isinstance(y, np.ndarray) and y.dtype == np.float64 and y.ndim == 2
        expected = "float64 targets of shape (n_samples, n_targets)"
    if not ok:
        got = f"{getattr(y, 'dtype', type(y).__name__)} of shape {getattr(y, 'shape', None)}"
        raise DataError(f"{data.name}: {data.task} y must be {expected}, got {got}")


def _check_lengths(data: Dataset) -> None:
    if len(data.X) != len(data.y):
        raise DataError(
            f"{data.name}: X has {len(data.X)} samples but y has {len(data.y)}; they must match"
        )


def _check_not_empty(data: Dataset) -> None:
    if data.n_samples < 1:
        raise DataError(f"{data.name}: the dataset is empty (0 samples); need at least 1")
    if data.n_features < 1:
        raise DataError(f"{data.name}: X has no feature columns; need at least 1")


def _check_finite_X(data: Dataset) -> None:
    bad = ~np.isfinite(data.X)
    if bad.any():
        row, col = np.unravel_index(np.argmax(bad), bad.shape)
        column = f"{col} ({data.feature_names[col]!r})" if data.feature_names else f"{col}"
        raise DataError(
            f"{data.name}: X has {int(bad.sum())} non-finite values (NaN or inf); "
            f"first at row {row}, column {column}"
        )


def _check_finite_y(data: Dataset) -> None:
    if data.task == "regression":
        bad = ~np.isfinite(data.y)
        if bad.any():
            row = np.unravel_index(np.argmax(bad), bad.shape)[0]
            raise DataError(
                f"{data.name}: y has {int(bad.sum())} non-finite values (NaN or inf); "
                f"first at row {row}"
            )


def _check_classes(data: Dataset) -> None:
    if data.task != "classification":
        if data.classes:
            raise DataError(f"{data.name}: regression data can't have classes {data.classes}")
        return
    present = np.unique(data.y)
    if present[0] < 0 or present[-1] >= data.n_classes:
        raise DataError(
            f"{data.name}: class ids must lie in [0, {data.n_classes}), "
            f"got {int(present[0])}..{int(present[-1])}"
        )
    if len(present) < 2:
        only = data.classes[present[0]] if data.classes else str(present[0])
        raise DataError(
            f"{data.name}: only one class ({only!r}) in y; classification needs at least 2"
        )


_CHECKS: tuple[Callable[[Dataset], None], ...] = (
    _check_task,
    _check_X,
    _check_y,
    _check_lengths,
    _check_not_empty,
    _check_finite_X,
    _check_finite_y,
    _check_classes,
)


def fingerprint(X: object, y: object) -> str:
    """Content hash of a dataset's arrays.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_targets)

    Returns
    -------
    str
        ``"sha256:<64 hex digits>"`` over each array's dtype, shape and C-order bytes: equal arrays
        give equal fingerprints whatever their memory layout; any change of value, dtype or shape
        gives a different one.
    """
    digest = hashlib.sha256(b"nnlab.fingerprint.v1")
    for label, array in (("X", X), ("y", y)):
        a = np.asarray(array)
        if a.dtype.hasobject:
            raise DataError(f"fingerprint needs numeric arrays, got {label} of dtype object")
        digest.update(f"|{label}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes(order="C"))
    return f"sha256:{digest.hexdigest()}"
