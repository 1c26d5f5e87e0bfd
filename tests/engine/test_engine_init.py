"""Initialisation presets, ``MLP(init=...)`` (issue 12): the exact draws each preset makes from the
seed, their distributions (bounds of the uniform ones, moments of the normal ones on large layers),
the biases, and ``auto`` being the initialisation nnlab had before presets existed.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.engine import HIDDEN_ACTIVATIONS, INITS, MLP

ALL_INITS = [
    "auto",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "sklearn",
    "pytorch",
]
# weight bound of each uniform preset for a layer of (fan_in, fan_out), hidden activation a
UNIFORM_BOUND = {
    "glorot_uniform": lambda fan_in, fan_out, a: np.sqrt(6.0 / (fan_in + fan_out)),
    "he_uniform": lambda fan_in, fan_out, a: np.sqrt(6.0 / fan_in),
    "sklearn": lambda fan_in, fan_out, a: np.sqrt(
        (2.0 if a == "sigmoid" else 6.0) / (fan_in + fan_out)
    ),
    "pytorch": lambda fan_in, fan_out, a: 1.0 / np.sqrt(fan_in),
}
NORMAL_STD = {
    "glorot_normal": lambda fan_in, fan_out: np.sqrt(2.0 / (fan_in + fan_out)),
    "he_normal": lambda fan_in, fan_out: np.sqrt(2.0 / fan_in),
    "lecun_normal": lambda fan_in, fan_out: np.sqrt(1.0 / fan_in),
}
DRAWS_BIASES = {"sklearn", "pytorch"}


def test_every_preset_is_covered():
    assert list(INITS) == ALL_INITS


def reference(sizes, activation, init, seed):
    """Every layer's (W, b) drawn as the presets are documented, in float64: layer by layer
    from default_rng(seed), weights before biases."""
    rng = np.random.default_rng(seed)
    layers = []
    last = len(sizes) - 2
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        shape = (fan_in, fan_out)
        b = np.zeros(fan_out)
        kind = init
        if init == "auto":
            he = index < last and activation in ("relu", "leaky_relu")
            kind = "he_normal" if he else "glorot_uniform"
        if kind in NORMAL_STD:
            W = rng.standard_normal(shape) * NORMAL_STD[kind](fan_in, fan_out)
        else:
            bound = UNIFORM_BOUND[kind](fan_in, fan_out, activation)
            W = rng.uniform(-bound, bound, shape)
            if kind in DRAWS_BIASES:
                b = rng.uniform(-bound, bound, fan_out)
        layers.append((W, b))
    return layers


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", list(HIDDEN_ACTIVATIONS))
@pytest.mark.parametrize("init", ALL_INITS)
def test_each_preset_draws_exactly_as_documented(init, activation, dtype):
    sizes = [4, 7, 5, 3]
    net = MLP(sizes, activation=activation, seed=11, dtype=dtype, init=init)
    for index, (W, b) in enumerate(reference(sizes, activation, init, seed=11)):
        np.testing.assert_array_equal(net.params[2 * index], W.astype(dtype))
        np.testing.assert_array_equal(net.params[2 * index + 1], b.astype(dtype))


@pytest.mark.parametrize("activation", list(HIDDEN_ACTIVATIONS))
def test_auto_is_the_default_and_the_initialisation_before_presets(activation):
    # before issue 12: He-normal standard_normal · √(2 / fan_in) for hidden ReLU-family layers,
    # else uniform(±√(6 / (fan_in + fan_out))), weights only, zero biases
    sizes = [6, 9, 8, 4]
    rng = np.random.default_rng(3)
    expected = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if index < len(sizes) - 2 and activation in ("relu", "leaky_relu"):
            W = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, (fan_in, fan_out))
        expected += [W, np.zeros(fan_out)]
    default = MLP(sizes, activation=activation, seed=3)
    auto = MLP(sizes, activation=activation, seed=3, init="auto")
    assert default.init == "auto"
    for p, q, e in zip(default.params, auto.params, expected, strict=True):
        np.testing.assert_array_equal(p, e)
        np.testing.assert_array_equal(q, e)


# --- distributions --------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 600, 400  # 240 000 draws: sample moments within a fraction of a percent


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("init", list(UNIFORM_BOUND))
def test_uniform_presets_fill_their_bounds(init, activation):
    net = MLP([FAN_IN, FAN_OUT, 50], activation=activation, seed=0, init=init)
    for W in net.params[0::2]:
        fan_in, fan_out = W.shape
        bound = UNIFORM_BOUND[init](fan_in, fan_out, activation)
        assert np.abs(W).max() <= bound
        assert np.abs(W).max() > 0.99 * bound
        assert W.mean() == pytest.approx(0.0, abs=0.02 * bound)
        assert W.std() == pytest.approx(bound / np.sqrt(3.0), rel=0.02)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("init", list(NORMAL_STD))
def test_normal_presets_have_their_standard_deviation(init, activation):
    net = MLP([FAN_IN, FAN_OUT, 300], activation=activation, seed=0, init=init)
    for W in net.params[0::2]:  # the output layer included
        std = NORMAL_STD[init](*W.shape)
        assert W.mean() == pytest.approx(0.0, abs=0.01 * std)
        assert W.std() == pytest.approx(std, rel=0.02)
        # a normal, not a uniform of that std: values beyond √3 σ exist, and untruncated beyond 2σ
        assert np.abs(W).max() > 3.0 * std


def test_sklearn_factor_follows_the_hidden_activation_on_every_layer():
    # scikit-learn's _init_coef uses factor 2 for activation='logistic', for the output layer too
    sigmoid = MLP([FAN_IN, FAN_OUT, 200], activation="sigmoid", seed=0, init="sklearn")
    tanh = MLP([FAN_IN, FAN_OUT, 200], activation="tanh", seed=0, init="sklearn")
    for W_sigmoid, W_tanh in zip(sigmoid.params[0::2], tanh.params[0::2], strict=True):
        assert W_tanh.std() / W_sigmoid.std() == pytest.approx(np.sqrt(3.0), rel=0.02)
    # the output activation does not change it
    with_sigmoid_output = MLP(
        [5, 8, 1], activation="tanh", output="sigmoid", seed=0, init="sklearn"
    )
    plain = MLP([5, 8, 1], activation="tanh", seed=0, init="sklearn")
    np.testing.assert_array_equal(with_sigmoid_output.flat, plain.flat)


@pytest.mark.parametrize("init", sorted(DRAWS_BIASES))
def test_library_presets_draw_biases_from_the_weights_bound(init):
    net = MLP([50, 6000, 2], activation="relu", seed=0, init=init)
    for W, b in zip(net.params[0::2], net.params[1::2], strict=True):
        bound = UNIFORM_BOUND[init](*W.shape, "relu")
        assert np.abs(b).max() <= bound
        assert np.all(b != 0.0)
    b, bound = net.params[1], UNIFORM_BOUND[init](50, 6000, "relu")
    assert np.abs(b).max() > 0.99 * bound
    assert b.mean() == pytest.approx(0.0, abs=0.03 * bound)
    assert b.std() == pytest.approx(bound / np.sqrt(3.0), rel=0.05)


@pytest.mark.parametrize("init", sorted(set(ALL_INITS) - DRAWS_BIASES))
def test_other_presets_start_biases_at_zero(init):
    net = MLP([4, 7, 5, 3], activation="tanh", seed=3, init=init)
    for b in net.params[1::2]:
        np.testing.assert_array_equal(b, 0.0)
    assert all(np.all(W != 0.0) for W in net.params[0::2])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=4),
    activation=st.sampled_from(list(HIDDEN_ACTIVATIONS)),
    init=st.sampled_from(list(UNIFORM_BOUND)),
    seed=st.integers(0, 2**32 - 1),
)
def test_uniform_presets_stay_within_their_bounds(sizes, activation, init, seed):
    net = MLP(sizes, activation=activation, seed=seed, init=init)
    for W, b in zip(net.params[0::2], net.params[1::2], strict=True):
        bound = UNIFORM_BOUND[init](*W.shape, activation)
        assert np.abs(W).max() <= bound
        assert np.abs(b).max() <= (bound if init in DRAWS_BIASES else 0.0)


# --- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ALL_INITS)
def test_same_seed_same_network_and_another_seed_another(init):
    first = MLP([4, 8, 3], seed=7, init=init)
    second = MLP([4, 8, 3], seed=7, init=init)
    other = MLP([4, 8, 3], seed=8, init=init)
    np.testing.assert_array_equal(first.flat, second.flat)
    for W, V in zip(first.params[0::2], other.params[0::2], strict=True):
        assert not np.any(W == V)


@pytest.mark.parametrize("init", ALL_INITS)
def test_float32_networks_hold_the_float64_draws(init):
    wide = MLP([4, 8, 3], seed=7, init=init)
    narrow = MLP([4, 8, 3], seed=7, init=init, dtype="float32")
    np.testing.assert_array_equal(narrow.flat, wide.flat.astype(np.float32))


def test_presets_differ():
    # layers that are not square: for fan_in = fan_out, lecun_normal and glorot_normal coincide
    flats = {init: MLP([6, 9, 4], activation="tanh", seed=0, init=init).flat for init in INITS}
    # auto is glorot_uniform for tanh; every other pair differs
    np.testing.assert_array_equal(flats["auto"], flats["glorot_uniform"])
    others = [flat for init, flat in flats.items() if init != "auto"]
    for i, a in enumerate(others):
        for b in others[i + 1 :]:
            assert not np.array_equal(a, b)


# --- bad names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["xavier", "kaiming", "", "AUTO", None])
def test_unknown_init(bad):
    with pytest.raises(ValueError, match=f"unknown init {bad!r}") as excinfo:
        MLP([2, 3], init=bad)
    for name in ALL_INITS:
        assert repr(name) in str(excinfo.value)


def test_near_miss_init_gets_a_suggestion():
    with pytest.raises(ValueError, match="Did you mean 'he_normal'"):
        MLP([2, 3], init="he_norml")


def test_repr_names_the_init():
    assert "init='pytorch'" in repr(MLP([2, 3, 1], init="pytorch"))
