"""A minimal hand-written NumPy training loop: the yardstick nnlab's engine is measured against.

Plain textbook code with no tricks: ReLU (or tanh, sigmoid) hidden layers, softmax +
cross-entropy, plain SGD with a constant learning rate, shuffled mini-batches gathered by fancy
indexing, and the epoch's mean loss tracked as any training loop does.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np


def init(layer_sizes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights, biases = [], []
    for fan_in, fan_out in pairwise(layer_sizes):
        weights.append(rng.standard_normal((fan_in, fan_out)).astype(dtype) * np.sqrt(2 / fan_in))
        biases.append(np.zeros(fan_out, dtype))
    return weights, biases


# hidden activation and its derivative written in terms of its output, the textbook way
ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0), lambda a: a > 0),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
}


def train(X, y, layer_sizes, batch_size, learning_rate, epochs, seed=0, activation="relu"):
    """Train an MLP with softmax cross-entropy; return the mean loss of each epoch."""
    f, f_prime = ACTIVATIONS[activation]
    weights, biases = init(layer_sizes, seed, X.dtype)
    rng = np.random.default_rng(seed)
    n = len(X)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            xb, yb = X[index], y[index]
            m = len(index)
            # forward
            activations = [xb]
            for W, b in zip(weights[:-1], biases[:-1], strict=True):
                activations.append(f(activations[-1] @ W + b))
            z = activations[-1] @ weights[-1] + biases[-1]
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            total -= np.log(p[np.arange(m), yb]).sum()
            # backward
            delta = p
            delta[np.arange(m), yb] -= 1
            delta /= m
            for layer in range(len(weights) - 1, -1, -1):
                grad_W = activations[layer].T @ delta
                grad_b = delta.sum(axis=0)
                if layer > 0:
                    delta = (delta @ weights[layer].T) * f_prime(activations[layer])
                weights[layer] -= learning_rate * grad_W
                biases[layer] -= learning_rate * grad_b
        losses.append(total / n)
    return losses
