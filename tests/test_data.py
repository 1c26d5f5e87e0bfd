"""Tests for nnlab.data: generators, loaders, validation, splits, standardisation, fingerprints."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnlab.data import (
    SYNTHETIC,
    DataError,
    Dataset,
    Standardizer,
    blobs,
    circles,
    fingerprint,
    load_csv,
    load_dataset,
    load_npz,
    make_dataset,
    moons,
    sine,
    spirals,
    split,
    standardize,
    validate,
    xor,
)

# Small sizes keep the suite fast; noise > 0 everywhere so seeds matter (xor's default is 0).
SMALL = {
    "xor": {"n_samples": 12, "noise": 0.1},
    "moons": {"n_samples": 50},
    "circles": {"n_samples": 50},
    "spirals": {"n_samples": 60, "classes": 4},
    "blobs": {"n_samples": 60, "classes": 3, "n_features": 5},
    "sine": {"n_samples": 40},
}
CLASSIFIERS = ["xor", "moons", "circles", "spirals", "blobs"]


def make(name: str, **overrides: object) -> Dataset:
    return SYNTHETIC[name](**{**SMALL[name], **overrides})


def indexed(y: list[int] | np.ndarray) -> Dataset:
    """A classification dataset whose X[:, 0] is the row number, so splits can be traced."""
    y = np.asarray(y)
    X = np.column_stack([np.arange(len(y)), np.zeros(len(y))])
    return make_dataset(X, y)


# --- generators -----------------------------------------------------------------------------------


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
        (xor, {"noise": -0.5}, "noise must be >= 0, got -0.5"),
        (blobs, {"noise": float("nan")}, "noise must be >= 0, got nan"),
        (spirals, {"classes": 1}, "classes must be an integer >= 2, got 1"),
        (blobs, {"classes": True}, "classes must be an integer >= 2, got True"),
        (blobs, {"n_features": 0}, "n_features must be an integer >= 1, got 0"),
        (circles, {"factor": 1.0}, "factor must be in (0, 1), got 1.0"),
        (circles, {"factor": 0}, "factor must be in (0, 1), got 0"),
        (moons, {"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_generator_arguments_name_the_value_and_range(generator, kwargs, message):
    with pytest.raises(DataError, match=re.escape(message)):
        generator(**kwargs)


# --- load_dataset ---------------------------------------------------------------------------------


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


# --- validate, make_dataset -----------------------------------------------------------------------


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


# --- split ----------------------------------------------------------------------------------------


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
    with pytest.raises(
        DataError, match=re.escape(f"val_fraction must be in [0, 1), got {fraction!r}")
    ):
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


# --- fingerprint ----------------------------------------------------------------------------------

arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6),
    elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": False},
)


def test_fingerprint_format():
    data = xor()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint(data.X, data.y))


@settings(max_examples=50, deadline=None)
@given(X=arrays, y=arrays)
def test_fingerprint_is_stable_under_copies_and_layout(X, y):
    expected = fingerprint(X, y)
    assert fingerprint(X.copy(), y.copy()) == expected
    assert fingerprint(np.asfortranarray(X), np.asfortranarray(y)) == expected


@settings(max_examples=50, deadline=None)
@given(X=arrays, y=arrays, data=st.data())
def test_fingerprint_changes_with_any_element(X, y, data):
    target = data.draw(st.sampled_from(["X", "y"]))
    changed = (X if target == "X" else y).copy()
    flat = changed.reshape(-1)
    i = data.draw(st.integers(0, flat.size - 1))
    flat[i] = 1 if flat[i] == 0 else 0
    new = (changed, y) if target == "X" else (X, changed)
    assert fingerprint(*new) != fingerprint(X, y)


def test_fingerprint_sees_dtype_shape_and_order_of_arguments():
    X = np.arange(6, dtype=np.int64).reshape(2, 3)
    y = np.array([0, 1])
    base = fingerprint(X, y)
    assert fingerprint(X.astype(np.int32), y) != base
    assert fingerprint(X.reshape(3, 2), y) != base
    assert fingerprint(X.T, y) != base
    assert fingerprint(y, X) != base
    assert fingerprint(X.tolist(), y.tolist()) == base


def test_fingerprint_rejects_object_arrays():
    with pytest.raises(DataError, match="dtype object"):
        fingerprint(np.array([object()]), np.zeros(1))
