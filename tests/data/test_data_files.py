"""Loading data sets: by name, from CSV and NPZ files, with errors naming what is wrong."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from nnlab.data import SYNTHETIC, DataError, fingerprint, load_csv, load_dataset, load_npz, spirals


def test_load_dataset_calls_the_generator_with_params():
    data = load_dataset("spirals", n_samples=40, classes=5, seed=2)
    direct = spirals(n_samples=40, classes=5, seed=2)
    assert data.n_classes == 5
    assert fingerprint(data.X, data.y) == fingerprint(direct.X, direct.y)


def test_unknown_dataset_suggests_a_close_name():
    with pytest.raises(DataError) as info:
        load_dataset("spiral")
    message = str(info.value)
    assert "unknown dataset 'spiral'" in message
    assert "Did you mean 'spirals'?" in message
    for name in SYNTHETIC:
        assert repr(name) in message


def test_unknown_dataset_without_close_name_has_no_suggestion():
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'.*'moons'.*csv") as info:
        load_dataset("imagenet")
    assert "Did you mean" not in str(info.value)


def test_unknown_generator_parameter_is_named_with_the_accepted_ones():
    with pytest.raises(DataError) as info:
        load_dataset("circles", n_sample=10)
    message = str(info.value)
    assert "'n_sample'" in message and "n_samples, noise, factor, seed" in message
    assert "Did you mean 'n_samples'?" in message


def test_load_dataset_reads_csv_and_npz_paths(tmp_path):
    csv = tmp_path / "points.csv"
    pd.DataFrame({"a": [0.0, 1.0, 2.0], "label": ["x", "y", "x"]}).to_csv(csv, index=False)
    assert load_dataset(csv, target="label").classes == ("x", "y")
    npz = tmp_path / "points.npz"
    np.savez(npz, X=np.eye(3), y=np.array([0, 1, 1]))
    assert load_dataset(str(npz)).n_samples == 3


def test_load_dataset_csv_needs_a_target(tmp_path):
    csv = tmp_path / "points.csv"
    pd.DataFrame({"a": [0.0, 1.0], "b": [1, 0]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match="needs the parameter target="):
        load_dataset(csv)
    with pytest.raises(DataError, match=r"unknown parameter 'targt'.*Did you mean 'target'"):
        load_dataset(csv, targt="b")


# --- load_csv -------------------------------------------------------------------------------------


def write_csv(tmp_path, columns: dict[str, list[object]], name: str = "data.csv"):
    path = tmp_path / name
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def test_csv_string_labels_get_ids_in_sorted_order(tmp_path):
    path = write_csv(
        tmp_path,
        {"w": [1.0, 2.0, 3.0, 4.0], "h": [5, 6, 7, 8], "animal": ["dog", "cat", "emu", "cat"]},
    )
    data = load_csv(path, target="animal")
    assert data.task == "classification"
    assert data.classes == ("cat", "dog", "emu")
    np.testing.assert_array_equal(data.y, [1, 0, 2, 0])
    assert data.y.dtype == np.int64
    assert data.feature_names == ("w", "h")
    np.testing.assert_array_equal(data.X, [[1, 5], [2, 6], [3, 7], [4, 8]])
    assert data.X.dtype == np.float64 and data.X.flags.c_contiguous
    assert data.name == str(path)


def test_csv_few_integer_labels_are_classes_sorted_numerically(tmp_path):
    path = write_csv(tmp_path, {"x": [0.1, 0.2, 0.3, 0.4], "digit": [10, 2, 2, 5]})
    data = load_csv(path, target="digit")
    assert data.task == "classification"
    assert data.classes == ("2", "5", "10")
    np.testing.assert_array_equal(data.y, [2, 0, 0, 1])


def test_csv_many_integer_values_are_a_regression_target(tmp_path):
    path = write_csv(tmp_path, {"x": list(range(21)), "count": list(range(100, 121))})
    data = load_csv(path, target="count")
    assert data.task == "regression"
    assert data.y.shape == (21, 1) and data.y.dtype == np.float64


def test_csv_float_target_is_regression(tmp_path):
    path = write_csv(tmp_path, {"x": [1, 2, 3], "price": [0.5, 1.5, 2.0]})
    data = load_csv(path, target="price")
    assert data.task == "regression" and data.classes == ()
    np.testing.assert_array_equal(data.y, [[0.5], [1.5], [2.0]])


def test_csv_task_override(tmp_path):
    path = write_csv(tmp_path, {"x": [1, 2, 3], "flag": [1.0, 0.0, 1.0], "k": [3, 1, 2]})
    forced = load_csv(path, target="flag", task="classification")
    assert forced.classes == ("0", "1")
    np.testing.assert_array_equal(forced.y, [1, 0, 1])
    assert load_csv(path, target="k", task="regression").y.shape == (3, 1)
    with pytest.raises(
        DataError, match="unknown task 'ranking'; expected one of 'classification', 'regression'"
    ):
        load_csv(path, target="k", task="ranking")


def test_csv_string_target_cannot_be_regression(tmp_path):
    path = write_csv(tmp_path, {"x": [1, 2], "label": ["a", "b"]})
    with pytest.raises(DataError, match=r"target column 'label'.*not numeric.*regression"):
        load_csv(path, target="label", task="regression")


def test_csv_non_numeric_feature_names_the_column(tmp_path):
    path = write_csv(tmp_path, {"x": [1, 2], "colour": ["red", "blue"], "y": [0, 1]})
    with pytest.raises(DataError, match=r"feature column 'colour' in .* is not numeric.*'red'"):
        load_csv(path, target="y")


def test_csv_missing_target_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path, {"x1": [1, 2], "x2": [3, 4], "label": [0, 1]})
    with pytest.raises(DataError) as info:
        load_csv(path, target="lable")
    message = str(info.value)
    assert "target column 'lable' not found" in message
    assert "'x1', 'x2', 'label'" in message and "Did you mean 'label'?" in message


def test_csv_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=re.escape(f"CSV file not found: '{path}'")):
        load_csv(path, target="y")


def test_csv_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="can't read CSV file"):
        load_csv(empty, target="y")
    header = tmp_path / "header.csv"
    header.write_text("x,y\n")
    with pytest.raises(DataError, match="empty"):
        load_csv(header, target="y", task="regression")


def test_csv_missing_feature_value_names_row_and_column(tmp_path):
    path = write_csv(tmp_path, {"a": [1.0, 2.0, 3.0], "b": [1.0, None, 3.0], "y": [0, 1, 0]})
    with pytest.raises(DataError, match=r"1 non-finite values.*row 1, column 1 \('b'\)"):
        load_csv(path, target="y")


def test_csv_missing_target_value_names_the_row(tmp_path):
    path = write_csv(tmp_path, {"a": [1.0, 2.0, 3.0], "y": ["p", None, "q"]})
    with pytest.raises(DataError, match=r"'y' .* has 1 missing values .*row 1"):
        load_csv(path, target="y")


# --- load_npz -------------------------------------------------------------------------------------


def test_npz_integer_y_is_classification(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(8).reshape(4, 2), y=np.array([1, 3, 3, 1], dtype=np.int32))
    data = load_npz(path)
    assert data.task == "classification" and data.classes == ("1", "3")
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])
    assert data.X.dtype == np.float64 and data.y.dtype == np.int64


def test_npz_float_y_is_regression_and_becomes_2d(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.array([0.5, 1.0, 2.0]))
    data = load_npz(path)
    assert data.task == "regression" and data.y.shape == (3, 1) and data.n_outputs == 1
    assert data.name == str(path)


def test_npz_missing_array_lists_what_it_holds(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.ones((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match="no array 'X'; it holds 'features', 'y'"):
        load_npz(path)


def test_npz_missing_or_corrupt_file(tmp_path):
    with pytest.raises(DataError, match=r"NPZ file not found: '.*nope.npz'"):
        load_npz(tmp_path / "nope.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DataError, match=r"can't read '.*junk.npz' as an NPZ archive"):
        load_npz(junk)


@pytest.mark.parametrize("loader", [load_csv, load_npz], ids=["csv", "npz"])
def test_a_missing_relative_path_says_where_it_was_looked_for(tmp_path, monkeypatch, loader):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        loader("data/points.csv", *(["y"] if loader is load_csv else []))
    assert str(info.value).endswith(
        f"file not found: 'data/points.csv' (looked for {tmp_path / 'data' / 'points.csv'}; "
        f"the working directory is {tmp_path})"
    )
