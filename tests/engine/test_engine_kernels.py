"""The compiled path (nnlab/engine/kernels.py) against the NumPy reference.

Every run is trained twice, with ``NNLAB_KERNELS=numpy`` and with ``NNLAB_KERNELS=numba``, and
must give the same status, updates, epoch records, weights and optimizer state: to the bit in
float64 (each kernel does the reference's operations in its order), to 1e-4 in float32. That
holds alone (``train``) and in a pack (``train_many``): for every update rule, with and without
weight decay, under every schedule; for every hidden activation (its fused layer and delta)
with every loss and output; for every GD variant; diverging runs included.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_numba, without_numba
from test_engine_packed import ACTIVATIONS, GD, LOSS_OUTPUTS, SCHEDULED, assert_same_run, data

from nnlab.checks import InputError
from nnlab.engine import MLP, train, train_many
from nnlab.engine import kernels as kernel_choice
from nnlab.engine.losses import LOSSES
from nnlab.engine.mlp import Backprop
from nnlab.engine.optimizers import make_optimizer

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


@pytest.fixture(autouse=True)
def numba_installed():
    require_numba()


def trained(kernels: str, monkeypatch, make_net, settings, X, y, val, packed: bool):
    """The runs trained with the ``kernels`` path: their nets and results."""
    monkeypatch.setenv("NNLAB_KERNELS", kernels)
    nets = [make_net(k) for k in range(len(settings))]
    if packed:
        results = train_many(list(zip(nets, settings, strict=True)), X, y, val=val)
    else:
        results = [train(n, X, y, val=val, **s) for n, s in zip(nets, settings, strict=True)]
    return nets, results


def assert_both_paths_agree(monkeypatch, make_net, settings, X, y, val, packed) -> list:
    """The runs trained on each path, equal to the bit; the reference's results."""
    reference = trained("numpy", monkeypatch, make_net, settings, X, y, val, packed)
    compiled = trained("numba", monkeypatch, make_net, settings, X, y, val, packed)
    for net, result, compiled_net, compiled_result in zip(*reference, *compiled, strict=True):
        assert_same_run(result, compiled_result, net, compiled_net)
    return reference[1]


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
@pytest.mark.parametrize("gd", GD)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_compiled_rule_is_the_numpy_rule_to_the_bit(monkeypatch, optimizer, gd, packed):
    X, y, _ = data("cross_entropy", None)
    val = data("cross_entropy", None, n=17, seed=1)[:2]
    settings = [
        {"optimizer": optimizer, "gd": gd, "batch_size": 8, "epochs": 5, "seed": 3, **schedule}
        for schedule in (
            *SCHEDULED,  # six schedules, decay with custom momentum and β₁, a diverging run
            {"learning_rate": 0.03, "weight_decay": 0.01, "beta2": 0.9, "epsilon": 1e-3},
        )
    ]

    def make_net(k):
        return MLP([4, 7, 3], activation="tanh", seed=k)

    results = assert_both_paths_agree(monkeypatch, make_net, settings, X, y, val, packed)
    statuses = {result.status for result in results}
    assert "diverged" in statuses and "completed" in statuses


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
@pytest.mark.parametrize("gd", GD)
@pytest.mark.parametrize(("loss", "output"), LOSS_OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_compiled_hidden_layers_are_numpy_s_to_the_bit(
    monkeypatch, activation, loss, output, gd, packed
):
    """Two hidden layers, so a delta and its bias gradient flow through a fused hidden step
    into another; in a pack, every third run has another activation."""
    X, y, n_outputs = data(loss, output)
    val = data(loss, output, n=17, seed=1)[:2]
    settings = [
        {"loss": loss, "gd": gd, "batch_size": 8, "epochs": 4, "seed": 7 + k % 2, **schedule}
        for k, schedule in enumerate(SCHEDULED)
    ]

    def make_net(k):
        hidden = ACTIVATIONS[k % len(ACTIVATIONS)] if k % 3 == 0 else activation
        return MLP([4, 6, 5, n_outputs], activation=hidden, output=output, seed=k)

    assert_both_paths_agree(monkeypatch, make_net, settings, X, y, val, packed)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_paused_run_resumes_exactly_on_the_other_path(monkeypatch, optimizer):
    """A checkpoint holds the rule's state in one format: a run paused on the NumPy path
    resumes on the compiled one (and back) as if never paused."""
    X, y, _ = data("cross_entropy", None)
    settings = {"optimizer": optimizer, "epochs": 6, "seed": 1, "learning_rate": 0.05}
    monkeypatch.setenv("NNLAB_KERNELS", "numpy")
    whole_net = MLP([4, 7, 3], seed=0)
    whole = train(whole_net, X, y, **settings)
    for first, then in (("numpy", "numba"), ("numba", "numpy")):
        monkeypatch.setenv("NNLAB_KERNELS", first)
        paused = train(MLP([4, 7, 3], seed=0), X, y, **settings, until_epoch=3)
        monkeypatch.setenv("NNLAB_KERNELS", then)
        net = MLP([4, 7, 3], seed=5)
        resumed = train(net, X, y, **settings, resume=paused.checkpoint)
        assert_same_run(whole, resumed, whole_net, net)


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_compiled_float32_is_numpy_s_to_the_bit(monkeypatch, optimizer, activation, packed):
    """Every constant a kernel takes comes in the arrays' dtype, as NumPy casts a Python
    float, so float32 is held to the bit as well (the issue allows 1e-4)."""
    X, y, _ = data("cross_entropy", None)
    settings = [
        {"optimizer": optimizer, "learning_rate": r, "epochs": 5, "seed": 1, "weight_decay": d}
        for r, d in ((0.01, 0.0), (0.05, 0.01), (0.2, 0.0), (30.0, 0.0))
    ]

    def make_net(k):
        return MLP([4, 8, 5, 3], activation=activation, seed=k, dtype="float32")

    results = assert_both_paths_agree(monkeypatch, make_net, settings, X, y, None, packed)
    assert all(result.history for result in results)


@pytest.mark.parametrize("packed", [False, True], ids=["alone", "packed"])
@pytest.mark.parametrize(
    ("sizes", "n_samples", "gd"),
    [
        ([4, 1, 5, 3], 53, "minibatch"),  # one unit wide: NumPy sums that bias pairwise
        ([4, 5, 1, 3], 53, "stochastic"),
        ([4, 6, 3], 2100, "batch"),  # a batch of more than CHUNK_ROWS rows, in chunks
    ],
    ids=["width-1", "width-1-stochastic", "chunked"],
)
def test_compiled_odd_shapes_are_numpy_s_to_the_bit(monkeypatch, sizes, n_samples, gd, packed):
    X, y, _ = data("cross_entropy", None, n=n_samples)
    settings = [
        {"optimizer": "adam", "gd": gd, "batch_size": 8, "epochs": 3, "seed": 2, "learning_rate": r}
        for r in (0.01, 0.1, 1.0)
    ]

    def make_net(k):
        return MLP(sizes, activation=ACTIVATIONS[k], seed=k)

    assert_both_paths_agree(monkeypatch, make_net, settings, X, y, None, packed)


def test_the_path_is_chosen_when_a_rule_is_built(monkeypatch):
    small, large = kernel_choice.AUTO_PARAMETERS - 1, kernel_choice.AUTO_PARAMETERS
    for kernels, size, compiled in (
        ("numpy", large, False),
        ("numba", small, True),
        ("auto", small, False),  # not worth numba's start-up
        ("auto", large, True),
    ):
        monkeypatch.setenv("NNLAB_KERNELS", kernels)
        assert (kernel_choice.compiled(size) is not None) is compiled
        theta = np.zeros(size)
        rule = make_optimizer("adam", theta, np.ones(size), 0.1)
        monkeypatch.setenv("NNLAB_KERNELS", "numpy" if compiled else "numba")
        rule.step()  # the path chosen when it was built, whatever the environment says now
        assert (rule._kernel is not None) is compiled
        np.testing.assert_allclose(theta, -0.1)  # Adam's first step: η sign(g)
    monkeypatch.delenv("NNLAB_KERNELS")
    assert kernel_choice.choice() == "auto"


def test_a_network_s_layers_take_the_path_its_rule_takes(monkeypatch):
    large, small = MLP([2, 300, 3]), MLP([2, 3, 3])
    assert large.flat.size >= kernel_choice.AUTO_PARAMETERS > small.flat.size
    for kernels, net, compiled in (
        ("numpy", large, False),
        ("numba", small, True),
        ("auto", small, False),
        ("auto", large, True),
    ):
        monkeypatch.setenv("NNLAB_KERNELS", kernels)
        backprop = Backprop(net, "cross_entropy", "softmax", max_rows=8)
        module = kernel_choice.compiled(net.flat.size)
        assert (backprop.layer is getattr(module, "relu_layer", None)) is compiled
        fused = (
            getattr(backprop.loss, "func", None) is kernel_choice._compiled_softmax_cross_entropy
        )
        assert fused is compiled


def bits(values: np.ndarray) -> np.ndarray:
    """The floats' bit patterns, which tell NaNs and signed zeros apart."""
    return values.view(np.uint64 if values.dtype == np.float64 else np.uint32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("K", "m", "classes"),
    [(10, 32, 10), (3, 1, 2), (2, 5, 7), (2, 5, 128), (1, 9, 131), (4, 359, 10)],
    ids=["pack", "one-row", "under-8", "block", "over-block", "validation"],
)
def test_compiled_softmax_cross_entropy_is_numpy_s_to_the_bit(monkeypatch, dtype, K, m, classes):
    """Loss, probabilities and delta, alone and packed, targets shared or each run's own,
    through NaN, +inf and all -inf rows (a diverged run's), compared bit for bit (NaN and -0.0
    included); a strided block, a NumPy scalar scale or over 128 classes: NumPy's own code."""
    monkeypatch.setenv("NNLAB_KERNELS", "numba")
    compiled = kernel_choice.output_loss("cross_entropy", "softmax", kernel_choice.AUTO_PARAMETERS)
    reference = LOSSES["cross_entropy", "softmax"]
    rng = np.random.default_rng(classes)
    for trial in range(12):
        Z = (rng.standard_normal((K, m, classes)) * 10.0 ** rng.uniform(-2, 3)).astype(dtype)
        if trial % 4 == 1:
            Z[0, 0, 1 % classes] = np.nan
        elif trial % 4 == 2:
            Z[-1, -1, 0] = np.inf
        elif trial % 4 == 3:
            Z[0, -1, :] = -np.inf
        shared, own = rng.integers(0, classes, m), rng.integers(0, classes, (K, m))
        cases = [(Z, shared, 1.0 / m), (Z, own, 1.0 / m), (Z[0], shared, 1.0 / m)]
        cases += [(np.asfortranarray(Z[0]), shared, 1.0 / m), (Z, own, np.float64(1.0 / m))]
        for z, t, scale in cases:
            for with_delta in (True, False):
                outs = []
                for loss in (reference, compiled):
                    values = z.copy(order="K")
                    delta = np.empty_like(z) if with_delta else None
                    with np.errstate(all="ignore"):
                        total = loss(values, t, delta, scale)
                    outs.append((np.asarray(total), values, delta))
                for expected, got in zip(*outs, strict=True):
                    if expected is not None:
                        assert expected.dtype == got.dtype
                        np.testing.assert_array_equal(bits(got), bits(expected))


def test_a_bad_choice_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv("NNLAB_KERNELS", "fortran")
    X, y, _ = data("cross_entropy", None)
    with pytest.raises(InputError, match=r"NNLAB_KERNELS='fortran': expected one of auto, numba"):
        train(MLP([4, 7, 3]), X, y, epochs=1)
    with pytest.raises(InputError, match="fortran"):
        kernel_choice.check()


def test_numba_asked_for_but_missing_is_an_error_and_auto_falls_back():
    stdout = without_numba("""
import os
from nnlab.engine import kernels
os.environ["NNLAB_KERNELS"] = "auto"
result = train(MLP([2, 100, 2]), X, y, epochs=2, optimizer="adam")
assert kernels.compiled(10**6) is None and result.status == "completed"
os.environ["NNLAB_KERNELS"] = "numba"
try:
    train(MLP([2, 3, 2]), X, y, epochs=2)
except InputError as error:
    print(error)
""")
    assert stdout.startswith("NNLAB_KERNELS=numba, but numba cannot be imported")
    assert "pip install 'nnlab[fast]'" in stdout
