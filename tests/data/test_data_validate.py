"""Validating data sets: make_dataset, NaN and inf, empty, one class, shapes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from nnlab.data import DataError, Dataset, make_dataset, moons, validate


def test_make_dataset_infers_the_task_from_y():
    X = np.zeros((4, 1), dtype=np.float32)
    assert make_dataset(X, [0, 1, 0, 1]).task == "classification"
    assert make_dataset(X, [True, False, True, True]).classes == ("False", "True")
    assert make_dataset(X, ["b", "a", "b", "c"]).classes == ("a", "b", "c")
    reg = make_dataset(X, np.ones((4, 2)))
    assert reg.task == "regression" and reg.n_outputs == 2 and reg.X.dtype == np.float64


def test_nan_and_inf_features_are_counted_and_located():
    X = np.ones((5, 3))
    X[2, 1] = np.nan
    X[4, 0] = np.inf
    with pytest.raises(DataError, match=r"2 non-finite values .*first at row 2, column 1"):
        make_dataset(X, [0, 1, 0, 1, 0])


def test_nan_in_y_is_rejected():
    with pytest.raises(DataError, match=r"y has 1 non-finite values .*row 2"):
        make_dataset(np.ones((3, 1)), [0.1, 0.2, np.nan])
    with pytest.raises(DataError, match="y has 1 missing or infinite labels"):
        make_dataset(np.ones((3, 1)), [0.0, 1.0, np.nan], task="classification")


def test_empty_data_is_rejected():
    with pytest.raises(DataError, match="empty \\(0 samples\\)"):
        make_dataset(np.zeros((0, 2)), np.zeros(0, dtype=int))
    with pytest.raises(DataError, match="no feature columns"):
        make_dataset(np.zeros((3, 0)), [0, 1, 0])


def test_single_class_is_rejected():
    with pytest.raises(
        DataError, match=re.escape("only one class ('cat') in y; classification needs at least 2")
    ):
        make_dataset(np.ones((3, 1)), ["cat", "cat", "cat"])


def test_mismatched_lengths_name_both():
    with pytest.raises(DataError, match="X has 4 samples but y has 3"):
        make_dataset(np.ones((4, 2)), [0, 1, 0])


def test_bad_shapes_and_dtypes_are_rejected():
    with pytest.raises(DataError, match=r"X must be 2-D .*reshape"):
        make_dataset(np.ones(4), [0, 1, 0, 1])
    with pytest.raises(DataError, match="X must be numeric, got dtype <U1"):
        make_dataset([["a"], ["b"]], [0, 1])
    with pytest.raises(DataError, match="classification y must be 1-D"):
        make_dataset(np.ones((4, 2)), np.eye(4, 2, dtype=int))
    with pytest.raises(DataError, match=r"unknown task .*; expected one of"):
        make_dataset(np.ones((2, 1)), [0, 1], task="clustering")


def test_validate_checks_hand_built_datasets():
    good = Dataset(np.ones((2, 1)), np.array([0, 1]), "classification", "hand")
    assert validate(good) is good and good.n_classes == 2
    with pytest.raises(DataError, match="hand: X must be C-contiguous float64"):
        validate(Dataset(np.ones((2, 1), dtype=np.float32), good.y, "classification", "hand"))
    with pytest.raises(DataError, match="regression y must be float64 targets"):
        validate(Dataset(good.X, np.ones(2), "regression", "hand"))
    with pytest.raises(DataError, match=r"class ids must lie in \[0, 2\)"):
        validate(Dataset(good.X, np.array([0, 5]), "classification", "hand", ("a", "b")))
    with pytest.raises(DataError, match="2 feature names for 1 columns"):
        validate(Dataset(good.X, good.y, "classification", "hand", (), ("a", "b")))


def test_dataset_is_frozen_and_has_a_short_repr():
    data = moons(n_samples=10)
    with pytest.raises(AttributeError):
        data.name = "other"  # type: ignore[misc]
    assert repr(data) == (
        "Dataset(name='moons', task='classification', n_samples=10, n_features=2, n_outputs=2)"
    )
