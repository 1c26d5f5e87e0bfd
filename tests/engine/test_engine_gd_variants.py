"""Batch, stochastic and mini-batch gradient descent: how many updates an epoch makes, on what."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnlab.engine import MLP, train


def small_net(seed: int = 0) -> MLP:
    return MLP([2, 5, 3], activation="tanh", seed=seed)


def parameters(net: MLP) -> np.ndarray:
    """A copy of every parameter in one vector."""
    return np.concatenate([p.ravel() for p in net.params])


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)), rng.integers(0, 3, n)


@pytest.mark.parametrize(
    ("gd", "n_samples", "batch_size", "per_epoch"),
    [
        ("stochastic", 10, None, 10),
        ("stochastic", 7, 4, 7),  # batch_size is ignored outside minibatch
        ("minibatch", 10, 4, 3),  # 4 + 4 + a partial batch of 2
        ("minibatch", 10, 3, 4),
        ("minibatch", 10, 5, 2),
        ("minibatch", 10, 10, 1),
        ("minibatch", 10, 1, 10),
        ("batch", 10, None, 1),
        ("batch", 10, 4, 1),
    ],
)
def test_updates_per_epoch(gd, n_samples, batch_size, per_epoch):
    X, y = data(n_samples)
    if gd == "minibatch":
        assert per_epoch == math.ceil(n_samples / batch_size)
    result = train(small_net(), X, y, gd=gd, batch_size=batch_size, epochs=3)
    assert result.status == "completed"
    assert result.epochs_run == 3
    assert result.updates == 3 * per_epoch


@pytest.mark.parametrize(
    ("gd", "batch_size", "steps"),
    [("stochastic", None, 10), ("minibatch", 4, 3), ("minibatch", 3, 4), ("batch", None, 1)],
)
def test_an_epoch_takes_that_many_gradient_steps(gd, batch_size, steps):
    # Ten copies of one sample: every batch, whatever the shuffle and its size, has the gradient
    # of that one sample, so an epoch must equal `steps` plain SGD steps on it.
    X1, y1 = data(1, seed=3)
    X, y = np.repeat(X1, 10, axis=0), np.repeat(y1, 10)
    eta = 0.3
    trained = small_net()
    result = train(trained, X, y, gd=gd, batch_size=batch_size, learning_rate=eta, epochs=1)
    assert result.updates == steps

    manual = small_net()
    for _ in range(steps):
        _, grads = manual.loss_and_grads(X1, y1, "cross_entropy")
        for p, g in zip(manual.params, grads, strict=True):
            p -= eta * g
    for p, q in zip(trained.params, manual.params, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    ("gd", "n_samples", "batch_size"),
    [
        ("stochastic", 10, None),
        ("minibatch", 10, 4),
        ("minibatch", 10, 3),
        ("batch", 10, None),
        # batches of more rows than the engine processes at once (2048): chunked internally
        ("minibatch", 4500, 3000),
        ("batch", 4500, None),
    ],
)
def test_an_epoch_visits_every_sample_once(gd, n_samples, batch_size):
    # A step this small leaves the weights as they were (to 1e-290), so the epoch's running loss
    # must be the mean loss over all samples: a sample skipped or seen twice would change it.
    X, y = data(n_samples)
    net = small_net()
    expected_loss, _ = net.loss_and_grads(X, y, "cross_entropy")
    expected_accuracy = np.mean(net.forward(X).argmax(axis=1) == y)
    before = parameters(net)
    result = train(net, X, y, gd=gd, batch_size=batch_size, learning_rate=1e-300, epochs=2)
    assert np.max(np.abs(parameters(net) - before)) < 1e-290
    for record in result.history:
        assert record.train_loss == pytest.approx(expected_loss, rel=1e-12)
        assert record.train_accuracy == expected_accuracy


def test_batch_epoch_reports_the_loss_before_its_update():
    X, y = data(10)
    net = small_net()
    loss0, grads0 = net.loss_and_grads(X, y, "cross_entropy")
    accuracy0 = np.mean(net.forward(X).argmax(axis=1) == y)
    result = train(net, X, y, gd="batch", learning_rate=0.5, epochs=1)
    record = result.history[0]
    assert record.train_loss == pytest.approx(loss0, rel=1e-12)
    assert record.train_accuracy == accuracy0
    norm0 = np.sqrt(sum(np.sum(g**2) for g in grads0))
    assert record.grad_norm == pytest.approx(norm0, rel=1e-12)
    assert record.learning_rate == 0.5


def test_batch_gd_on_more_rows_than_a_chunk():
    X, y = data(4500)
    X_val, y_val = data(4500, seed=1)
    net = small_net()
    loss0, grads0 = net.loss_and_grads(X, y, "cross_entropy")
    accuracy0 = np.mean(net.forward(X).argmax(axis=1) == y)
    expected = parameters(net) - 0.5 * np.concatenate([g.ravel() for g in grads0])
    result = train(net, X, y, gd="batch", learning_rate=0.5, epochs=1, val=(X_val, y_val))
    np.testing.assert_allclose(parameters(net), expected, rtol=1e-12, atol=1e-13)
    record = result.history[0]
    assert record.train_loss == pytest.approx(loss0, rel=1e-12)
    assert record.train_accuracy == accuracy0
    val_loss, _ = net.loss_and_grads(X_val, y_val, "cross_entropy")
    assert record.val_loss == pytest.approx(val_loss, rel=1e-12)
    assert record.val_accuracy == np.mean(net.forward(X_val).argmax(axis=1) == y_val)


def test_minibatch_of_every_sample_is_batch_gd():
    X, y = data(10)
    batch, minibatch = small_net(), small_net()
    train(batch, X, y, gd="batch", learning_rate=0.5, epochs=3)
    train(minibatch, X, y, gd="minibatch", batch_size=10, learning_rate=0.5, epochs=3)
    # the shuffle only reorders the sum over samples
    np.testing.assert_allclose(parameters(minibatch), parameters(batch), rtol=1e-12, atol=1e-13)
