"""FLOP counts of an MLP's training step and the speed of its bare GEMMs on this machine.

The limit an engine is measured against: the matrix products one step of that shape does, and
nothing else, timed in a tight loop into preallocated ``out=`` arrays. For a batch of m samples
through layer sizes n_0, …, n_L, one training step does, for every layer l:

- forward: (m × n_{l-1}) · (n_{l-1} × n_l);
- weight gradient: (n_{l-1} × m) · (m × n_l), as A_prevᵀ · D;
- delta, for every layer but the first: (m × n_l) · (n_l × n_{l-1}), as D · Wᵀ;

each 2·m·n_{l-1}·n_l floating-point operations (biases and element-wise work are not counted).
A forward pass alone (validation, the initial loss) does the first kind only. At m = 1 the weight
gradient is an outer product, which nnlab's engine takes with ``np.multiply`` (cheaper than a
(k×1)·(1×n) matmul): it is timed that way here too. A batch of more than ``CHUNK_ROWS`` rows is
timed as chunks of that many (the same FLOPs per sample), as the engine runs it: one 20,000-row
product was slower here than ten of 2,048 rows, its operands out of cache.

Used by benchmarks/engine.py and benchmarks/grid.py.
"""

from __future__ import annotations

import math
import time
from itertools import pairwise

import numpy as np

CHUNK_ROWS = 2048  # as nnlab.engine.mlp.CHUNK_ROWS


def forward_flops_per_sample(sizes) -> int:
    """2 · Σ fan_in · fan_out: the forward pass of one sample."""
    return 2 * sum(a * b for a, b in pairwise(sizes))


def train_flops_per_sample(sizes) -> int:
    """Forward, weight gradients and deltas (none for the input layer) of one sample."""
    products = [a * b for a, b in pairwise(sizes)]
    return 2 * (3 * sum(products) - products[0])


def step_products(sizes, m: int, backward: bool = True, dtype=np.float64) -> list[tuple]:
    """The (left, right, out) arrays of each matrix product of one step over ``m`` samples,
    laid out as the engine's are (transposes are views of C-ordered arrays); ``backward=False``
    gives a forward pass only."""
    rng = np.random.default_rng(0)

    def array(*shape):
        return rng.standard_normal(shape).astype(dtype)

    forward, gradients, deltas = [], [], []
    for index, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        A_prev, W, D = array(m, fan_in), array(fan_in, fan_out), array(m, fan_out)
        forward.append((A_prev, W, np.empty((m, fan_out), dtype)))
        gradients.append((A_prev.T, D, np.empty_like(W)))
        if index > 0:
            deltas.append((D, W.T, np.empty((m, fan_in), dtype)))
    return forward + gradients + deltas if backward else forward


def product_flops(products) -> int:
    return sum(2 * left.shape[0] * left.shape[1] * right.shape[1] for left, right, _ in products)


def _run(products) -> None:
    for left, right, out in products:
        if left.shape[1] == 1:  # an outer product (a batch of one's weight gradient)
            np.multiply(left, right, out=out)
        else:
            np.matmul(left, right, out=out)


def gemm_seconds(products, repeats: int = 5, target_s: float = 0.02) -> float:
    """Seconds of one pass over ``products``: the best of ``repeats`` loops of about
    ``target_s`` each (the least disturbed by the rest of the machine)."""
    _run(products)
    start = time.perf_counter()
    _run(products)
    inner = max(1, math.ceil(target_s / max(time.perf_counter() - start, 1e-7)))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            _run(products)
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def gemm_rate(sizes, m: int, threads: int = 1, backward: bool = True, dtype=np.float64) -> float:
    """GFLOP/s of the bare GEMMs of one step (or one forward pass) of ``m`` samples through
    ``sizes``, with this many BLAS threads."""
    from threadpoolctl import threadpool_limits  # the bench extra's, as the rest above is not

    products = step_products(sizes, min(m, CHUNK_ROWS), backward, dtype)
    with threadpool_limits(threads):
        seconds = gemm_seconds(products)
    return product_flops(products) / seconds / 1e9
