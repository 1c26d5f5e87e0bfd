"""Bad arguments raise ValueError at the edge, naming the bad value and what would be allowed."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from nnlab.checks import InputError, check_number
from nnlab.engine import (
    GD_VARIANTS,
    HIDDEN_ACTIVATIONS,
    LOSS_NAMES,
    MLP,
    OPTIMIZERS,
    OUTPUT_ACTIVATIONS,
    train,
)

N = 40  # more than the default batch_size of 32


@pytest.fixture
def Xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((N, 2)), rng.integers(0, 3, N)


def net(**options) -> MLP:
    return MLP([2, 4, 3], **options)


def assert_lists(excinfo, allowed) -> None:
    message = str(excinfo.value)
    for name in allowed:
        assert name in message, f"{name!r} missing from: {message}"


# --- names from a registry ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["softmax", "gelu", "ReLU", ""])
def test_unknown_activation(bad):
    with pytest.raises(ValueError, match=f"activation '{bad}'") as excinfo:
        net(activation=bad)
    assert_lists(excinfo, HIDDEN_ACTIVATIONS)


@pytest.mark.parametrize("bad", ["tanh", "relu", "linear"])
def test_unknown_output(bad):
    with pytest.raises(ValueError, match=f"output '{bad}'") as excinfo:
        net(output=bad)
    assert_lists(excinfo, OUTPUT_ACTIVATIONS)


@pytest.mark.parametrize("bad", ["float16", "int32", "float128"])
def test_unknown_dtype(bad):
    with pytest.raises(ValueError, match=f"'{bad}'") as excinfo:
        net(dtype=bad)
    assert_lists(excinfo, ["float64", "float32"])


def test_dtype_numpy_does_not_know_is_a_value_error():
    # np.dtype("bogus") raises TypeError; the engine must still answer with its own ValueError
    with pytest.raises(ValueError, match="'bogus'") as excinfo:
        net(dtype="bogus")
    assert_lists(excinfo, ["float64", "float32"])


def test_unknown_optimizer(Xy):
    with pytest.raises(ValueError, match="optimizer 'rmsprop'") as excinfo:
        train(net(), *Xy, optimizer="rmsprop")
    assert_lists(excinfo, OPTIMIZERS)


def test_unknown_gd(Xy):
    with pytest.raises(ValueError, match="gd 'full'") as excinfo:
        train(net(), *Xy, gd="full")
    assert_lists(excinfo, GD_VARIANTS)


def test_unknown_loss(Xy):
    with pytest.raises(ValueError, match="loss 'hinge'") as excinfo:
        train(net(), *Xy, loss="hinge")
    assert_lists(excinfo, LOSS_NAMES)
    with pytest.raises(ValueError, match="loss 'hinge'") as excinfo:
        net().loss_and_grads(*Xy, "hinge")
    assert_lists(excinfo, LOSS_NAMES)


def test_near_miss_name_gets_a_suggestion():
    with pytest.raises(ValueError, match="Did you mean 'leaky_relu'"):
        net(activation="leaky_rellu")


# --- numbers out of range -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, float("nan")])
def test_learning_rate_must_be_positive(Xy, bad):
    with pytest.raises(ValueError, match=rf"learning_rate.*{re.escape(repr(bad))}"):
        train(net(), *Xy, learning_rate=bad)


@pytest.mark.parametrize("bad", [0, -4, 2.5])
def test_batch_size_must_be_an_integer_of_at_least_one(Xy, bad):
    with pytest.raises(ValueError, match=rf"batch_size.*{re.escape(repr(bad))}"):
        train(net(), *Xy, gd="minibatch", batch_size=bad)


def test_batch_size_cannot_exceed_the_samples(Xy):
    with pytest.raises(ValueError, match=r"batch_size=41\b.*\b40\b"):
        train(net(), *Xy, gd="minibatch", batch_size=N + 1)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_epochs_must_be_an_integer_of_at_least_one(Xy, bad):
    with pytest.raises(ValueError, match=rf"epochs.*{re.escape(repr(bad))}"):
        train(net(), *Xy, epochs=bad)


@pytest.mark.parametrize(
    ("name", "bad", "wanted"),
    [
        ("momentum", 1.0, "in [0, 1)"),
        ("momentum", -0.1, "in [0, 1)"),
        ("beta1", 1.0, "in [0, 1)"),
        ("beta2", 1.5, "in [0, 1)"),
        ("epsilon", 0.0, "> 0"),
        ("divergence_factor", 1.0, "> 1"),
        ("divergence_factor", 0.5, "> 1"),
        ("tol", -1e-3, ">= 0"),
    ],
)
def test_hyperparameter_out_of_range(Xy, name, bad, wanted):
    message = f"{name} must be a finite number {wanted}, got {bad!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        train(net(), *Xy, gd="batch", **{name: bad})


@pytest.mark.parametrize(
    ("bounds", "wanted"),
    [
        ({"above": 0, "below": 1}, "a finite number in (0, 1)"),
        ({"at_least": 0, "below": 1}, "a finite number in [0, 1)"),
        ({"above": 0}, "a finite number > 0"),
        ({"at_least": 0.5}, "a finite number >= 0.5"),
        ({"below": 1}, "a finite number < 1"),
        ({"above": 0, "at_most": 1}, "a finite number in (0, 1]"),
        ({"at_most": 1}, "a finite number <= 1"),
        ({}, "a finite number"),
    ],
)
def test_every_interval_is_written_one_way(bounds, wanted):
    assert check_number("x", 0.75, **bounds) == 0.75
    with pytest.raises(InputError, match=re.escape(f"x must be {wanted}, got inf")):
        check_number("x", math.inf, **bounds)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("learning_rate", float("inf")),  # every run would diverge at its first update
        ("tol", float("nan")),  # nan comparisons are False: the rule would be silently off
        ("divergence_factor", float("nan")),
        ("min_delta", float("nan")),  # the validation loss could never improve
    ],
)
def test_non_finite_numbers(Xy, name, bad):
    X, y = Xy
    with pytest.raises(ValueError, match=rf"{name}.*{bad!r}"):
        train(net(), X, y, gd="batch", val=(X, y), patience=5, **{name: bad})


def test_tol_patience_must_be_at_least_one(Xy):
    # tol_patience=0 would make every run "converge" after its first epoch
    with pytest.raises(ValueError, match=r"tol_patience.*\b0\b"):
        train(net(), *Xy, gd="batch", tol=1e-3, tol_patience=0)


@pytest.mark.parametrize("bad", [[3], [], [2, 0, 3], [2, -1, 3], [2, 2.5, 3]])
def test_layer_sizes(bad):
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        MLP(bad)


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(N, 3), (N, 1), (N,), (N, 2, 1)])
def test_X_shape_must_fit_the_network(Xy, shape):
    X = np.zeros(shape)
    y = Xy[1]
    pattern = re.escape(str(shape))
    with pytest.raises(ValueError, match=pattern):
        train(net(), X, y)
    with pytest.raises(ValueError, match=pattern):
        net().loss_and_grads(X, y, "cross_entropy")
    with pytest.raises(ValueError, match=pattern):
        net().forward(X)


def test_validation_X_shape_must_fit_the_network(Xy):
    X, y = Xy
    with pytest.raises(ValueError, match=re.escape(str((4, 5)))):
        train(net(), X, y, val=(np.zeros((4, 5)), y[:4]))


def test_y_length_must_match_X(Xy):
    X, y = Xy
    with pytest.raises(ValueError, match=r"\b40\b.*\b7\b"):
        train(net(), X, y[:7])
    with pytest.raises(ValueError, match=r"\b40\b.*\b7\b"):
        net().loss_and_grads(X, y[:7], "cross_entropy")
    with pytest.raises(ValueError, match=r"\b4\b.*\b3\b"):
        train(net(), X, y, val=(X[:4], y[:3]))


def test_regression_targets_must_have_one_column_per_output(Xy):
    X, _ = Xy
    with pytest.raises(ValueError, match=re.escape(str((N, 2)))):
        train(net(), X, np.zeros((N, 2)), loss="mse")


def test_one_hot_rows_must_have_one_column_per_class(Xy):
    X, _ = Xy
    with pytest.raises(ValueError, match=r"\b3\b.*\b4\b"):
        net().loss_and_grads(X, np.eye(4)[np.arange(N) % 4], "cross_entropy")


# --- class labels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [3, 7, -1])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_class_label_out_of_range(Xy, loss, bad):
    X, y = Xy
    y = y.copy()
    y[5] = bad
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}\b.*0\.\.2"):
        train(net(), X, y, loss=loss)
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}\b"):
        net().loss_and_grads(X, y, loss)


def test_fractional_class_labels(Xy):
    X, _ = Xy
    with pytest.raises(ValueError, match="float64"):
        train(net(), X, np.full(N, 0.5), loss="cross_entropy")


@pytest.mark.parametrize("bad", [2, -1])
def test_binary_class_label_out_of_range(Xy, bad):
    # with label 2 the binary cross-entropy softplus(z) − 2z is unbounded below: training would
    # chase −∞ instead of failing
    X, _ = Xy
    y = np.arange(N) % 2
    y[5] = bad
    binary = MLP([2, 4, 1])
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}\b"):
        train(binary, X, y, loss="binary_cross_entropy", gd="batch")
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}\b"):
        train(binary, X, y, gd="batch")  # integer ids and one output: binary cross-entropy
    with pytest.raises(ValueError, match=rf"(?<![\d-]){bad}\b"):
        binary.loss_and_grads(X, y, "binary_cross_entropy")


@pytest.mark.parametrize("bad", [1.5, -0.25])
def test_binary_targets_outside_0_1(Xy, bad):
    X, _ = Xy
    y = np.linspace(0.0, 1.0, N)  # soft targets in [0, 1] are fine
    train(MLP([2, 4, 1]), X, y, loss="binary_cross_entropy", gd="batch", epochs=1)
    y[5] = bad
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        train(MLP([2, 4, 1]), X, y, loss="binary_cross_entropy", gd="batch")


# --- combinations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "output"),
    [
        ("cross_entropy", "identity"),
        ("cross_entropy", "sigmoid"),
        ("binary_cross_entropy", "softmax"),
        ("binary_cross_entropy", "identity"),
    ],
)
def test_loss_must_fit_the_output_activation(Xy, loss, output):
    X, y = Xy
    pattern = rf"'{loss}'.*'{output}'"
    with pytest.raises(ValueError, match=pattern):
        train(net(output=output), X, y, loss=loss)
    with pytest.raises(ValueError, match=pattern):
        net(output=output).loss_and_grads(X, y, loss)


def test_patience_needs_validation_data(Xy):
    with pytest.raises(ValueError, match=r"patience=3.*val"):
        train(net(), *Xy, gd="batch", patience=3)


@pytest.mark.parametrize("bad", [0, -2, 2.5])
def test_patience_must_be_an_integer_of_at_least_one(Xy, bad):
    X, y = Xy
    with pytest.raises(ValueError, match=rf"patience must be an integer >= 1, got {bad!r}"):
        train(net(), X, y, gd="batch", val=(X, y), patience=bad)


def test_early_stopping_needs_validation_samples(Xy):
    # an empty validation set reports val_loss None, so patience could never run out
    X, y = Xy
    with pytest.raises(ValueError, match="val"):
        train(net(), X, y, gd="batch", val=(X[:0], y[:0]), patience=2)


def test_training_without_samples(Xy):
    with pytest.raises(ValueError, match="no samples"):
        train(net(), np.zeros((0, 2)), np.zeros(0, dtype=np.int64), gd="batch")


def test_bad_arguments_are_caught_before_any_training(Xy):
    model = net()
    before = [p.copy() for p in model.params]
    calls = []
    with pytest.raises(ValueError, match="epsilon"):
        train(model, *Xy, gd="batch", optimizer="adam", epsilon=-1.0, on_epoch=calls.append)
    assert calls == []
    for p, q in zip(model.params, before, strict=True):
        np.testing.assert_array_equal(p, q)


def test_cross_entropy_needs_one_hot_rows_not_any_floats(Xy):
    X, _ = Xy
    soft = np.random.default_rng(1).random((N, 3))
    with pytest.raises(ValueError, match="must be one-hot rows"):
        train(net(), X, soft, loss="cross_entropy", gd="batch")


def test_softmax_needs_two_outputs(Xy):
    X, y = Xy
    with pytest.raises(ValueError, match="softmax output needs at least 2 outputs"):
        train(MLP([2, 4, 1]), X, y % 2, loss="cross_entropy", gd="batch")


def test_engine_errors_are_input_errors(Xy):
    """The CLI turns InputError (a ValueError) into exit 2; any other exception is a bug."""
    with pytest.raises(InputError):
        train(net(), *Xy, learning_rate=0)
    with pytest.raises(InputError):
        net(activation="gelu")
