"""Loading datasets by name: a synthetic generator, a CSV file or an NPZ file."""

from __future__ import annotations

import inspect
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from nnlab.checks import check_choice, did_you_mean, quoted
from nnlab.data.dataset import TASKS, DataError, Dataset, make_dataset
from nnlab.data.synthetic import SYNTHETIC

# An integer CSV target with at most this many distinct values is taken to be class labels.
MAX_INTEGER_CLASSES = 20


def load_csv(path: str | os.PathLike[str], target: str, task: str | None = None) -> Dataset:
    """Load a CSV file with a header row; one column is the target, all others are features.

    Parameters
    ----------
    path : str or path-like
    target : str
        Name of the target column.
    task : {"classification", "regression"}, optional
        Inferred when omitted: text or boolean targets, and integer targets with at most
        ``MAX_INTEGER_CLASSES`` distinct values, are classification; others are regression.
        Class ids follow the sorted order of the labels.

    Returns
    -------
    Dataset
        X of shape (n_rows, n_columns - 1) with ``feature_names`` from the header; ``name`` is
        the path.

    Raises
    ------
    DataError
        Missing or unreadable file, missing target column, non-numeric feature column, missing
        target values, or any failure of :func:`validate`.
    """
    frame = _read_csv(Path(path))
    if task is not None:
        check_choice("task", task, TASKS, error=DataError)
    if target not in frame.columns:
        columns = [str(c) for c in frame.columns]
        raise DataError(
            f"target column {target!r} not found in '{path}'; its columns are: "
            f"{quoted(columns)}{did_you_mean(target, columns)}"
        )
    features = frame.drop(columns=[target])
    for column in features.columns:
        _check_numeric_feature(features[column], path)
    labels = frame[target]
    task = task or _infer_csv_task(labels)
    _check_csv_target(labels, task, path)
    return make_dataset(
        features.to_numpy(dtype=np.float64),
        labels.to_numpy(),
        task=task,
        name=str(path),
        feature_names=tuple(str(c) for c in features.columns),
    )


def load_npz(path: str | os.PathLike[str], task: str | None = None) -> Dataset:
    """Load arrays ``X`` and ``y`` saved with ``np.savez(path, X=X, y=y)``.

    Parameters
    ----------
    path : str or path-like
    task : {"classification", "regression"}, optional
        Inferred when omitted as in :func:`make_dataset`: integer, boolean or string y is
        classification; float y is regression (1-D becomes ``(n_samples, 1)``).

    Returns
    -------
    Dataset
        ``name`` is the path.
    """
    arrays = _read_npz(Path(path))
    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise DataError(
            f"'{path}' has no array {quoted(missing)}; it holds {quoted(arrays)}. "
            "Save it with np.savez(path, X=X, y=y)"
        )
    X, y = arrays["X"], arrays["y"]
    return make_dataset(X, y, task=task, name=str(path))


_LOADERS: dict[str, Callable[..., Dataset]] = {".csv": load_csv, ".npz": load_npz}


def load_dataset(name: str | os.PathLike[str], **params: object) -> Dataset:
    """Load a dataset by synthetic name or by file path.

    Parameters
    ----------
    name : str or path-like
        A key of ``SYNTHETIC`` (``"spirals"``, ...), or a path ending in ``.csv`` or ``.npz``.
    **params
        Keyword arguments of the generator, or of :func:`load_csv` (``target``, ``task``) or
        :func:`load_npz` (``task``).

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Unknown name (with a did-you-mean suggestion), unknown or missing parameters, or any
        error of the generator or loader.

    Examples
    --------
    >>> load_dataset("spirals", n_samples=90, classes=3).n_classes
    3
    """
    key = os.fspath(name)
    if key in SYNTHETIC:
        generator = SYNTHETIC[key]
        _check_params(key, _parameters(generator), params)
        return generator(**params)
    loader = _LOADERS.get(Path(key).suffix.lower())
    if loader is None:
        raise DataError(
            f"unknown dataset {key!r}; use one of {quoted(SYNTHETIC)} "
            f"or a path ending in {' or '.join(_LOADERS)}{did_you_mean(key, SYNTHETIC)}"
        )
    _check_params(key, _parameters(loader)[1:], params)  # the path is given by the name
    return loader(key, **params)


def _parameters(function: Callable[..., Dataset]) -> list[inspect.Parameter]:
    return list(inspect.signature(function).parameters.values())


def _check_params(key: str, accepted: list[inspect.Parameter], params: dict[str, object]) -> None:
    names = [p.name for p in accepted]
    for param in params:
        if param not in names:
            raise DataError(
                f"unknown parameter {param!r} for dataset {key!r}; accepted: "
                f"{', '.join(names)}{did_you_mean(param, names)}"
            )
    for p in accepted:
        if p.default is inspect.Parameter.empty and p.name not in params:
            raise DataError(f"dataset {key!r} needs the parameter {p.name}=")


def _not_found(kind: str, path: Path) -> str:
    """Where a missing file was looked for: a relative path is read from the working directory."""
    if path.is_absolute():
        return f"{kind} file not found: '{path}'"
    return (
        f"{kind} file not found: '{path}' (looked for {path.absolute()}; the working "
        f"directory is {Path.cwd()})"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(_not_found("NPZ", path))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as err:  # TypeError: a lone .npy
        raise DataError(f"can't read '{path}' as an NPZ archive of X and y: {err}") from err


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd  # only CSV files need pandas (a worker need not load it)

    if not path.is_file():
        raise DataError(_not_found("CSV", path))
    try:
        return pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"can't read CSV file '{path}': {err}") from err


def _check_numeric_feature(column: pd.Series, path: object) -> None:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return
    present = column.dropna()
    example = f", e.g. {present.iloc[0]!r}" if len(present) else ""
    raise DataError(
        f"feature column {column.name!r} in '{path}' is not numeric (dtype {column.dtype}"
        f"{example}); encode it as numbers or drop it"
    )


def _infer_csv_task(labels: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        return "classification"
    few = labels.nunique() <= MAX_INTEGER_CLASSES
    return "classification" if pd.api.types.is_integer_dtype(labels) and few else "regression"


def _check_csv_target(labels: pd.Series, task: str, path: object) -> None:
    import pandas as pd

    missing = labels.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"target column {labels.name!r} in '{path}' has {int(missing.sum())} missing values "
            f"(first at data row {int(np.argmax(missing))}); every sample needs a target"
        )
    if task == "regression" and not pd.api.types.is_numeric_dtype(labels):
        raise DataError(
            f"target column {labels.name!r} in '{path}' is not numeric (e.g. {labels.iloc[0]!r}); "
            "it can't be a regression target"
        )
