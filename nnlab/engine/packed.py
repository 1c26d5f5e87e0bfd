"""Training compatible runs together: a pack of K runs as one computation with a leading run axis.

At small batches a training step is bound by NumPy's fixed cost per call (~1-2 µs, some 40 calls
a step), not by arithmetic. Runs that see the same batches in the same order can share those
calls: ``train_many`` trains each group of such runs as a pack, whose parameters are one (K, P)
matrix (row k is run k's parameter vector, laid out as ``MLP.flat``), whose activations are
(K, m, width) arrays, and whose every step is the single run's step with a leading axis: one
``matmul`` over the K runs' weights per layer (NumPy calls BLAS once per run inside it, on the
same shapes a single run has), element-wise work in one call for all K, the update rule on the
whole matrix with each run's hyperparameters as a column.

Runs are packed when they share what the arithmetic shares: the data, the network's shape, hidden
activation and dtype, the loss and output, the GD variant and batch size, the shuffling seed (so
the same batches), the optimizer, the ``subnormals`` arithmetic, whether there is an L2 penalty,
and where a resumed run starts. Each run keeps its own learning rate and schedule, optimizer
hyperparameters (momentum, betas, epsilon), weight decay, L2 strength, initialisation and seed of
its weights, epochs, stopping rules and ``on_epoch``. A run that stops (diverged, early stopped,
converged, its last epoch or ``until_epoch``) leaves the pack at the end of that epoch, which
goes on with the others.

A run in a pack computes what it computes alone, operation for operation, so its records, status,
updates, weights and checkpoint are the reference engine's (``train``); tests/engine hold every
activation × loss × optimizer × GD variant × schedule to that. One difference: an epoch record's
``seconds`` is the run's share of the pack's epoch, the epoch's time divided by the runs in it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np

from nnlab.checks import check_int
from nnlab.engine import arithmetic
from nnlab.engine.activations import bias_gradient
from nnlab.engine.kernels import hidden_delta, hidden_layer
from nnlab.engine.mlp import MLP, Backprop, inner, inner_rows, weight_mask
from nnlab.engine.optimizers import OPTIMIZERS, WeightDecay
from nnlab.engine.training import (
    CONFIG_ARGUMENTS,
    OPTIMIZER_ARGUMENTS,
    EpochRecord,
    TrainResult,
    _Trainer,
    bind_train_arguments,
    prepare,
    validate,
)

# Runs per pack, at most: beyond about this many the pack's weights and activations leave the
# per-core cache at the batch sizes where packing pays (benchmarks/engine.py --packed).
MAX_PACK = 10
# Batches above this many rows gain nothing from packing (their step is GEMM-bound): such runs
# train one by one.
MAX_PACKED_BATCH = 512
# Activation memory of one pack (K × rows × widths × itemsize), at most
_PACK_BYTES = 64 * 2**20
# train's settings that the runs of a pack share: their arithmetic
SHARED_SETTINGS = ("loss", "gd", "batch_size", "optimizer", "subnormals")
# train's settings that each run of a pack has its own of (besides its network's init and
# activation, and its seed): all the others
PER_RUN_SETTINGS = (
    *(name for name in CONFIG_ARGUMENTS if name not in SHARED_SETTINGS),
    *OPTIMIZER_ARGUMENTS,
)


def train_many(
    runs: Sequence[tuple[MLP, dict]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    max_pack: int = MAX_PACK,
    return_exceptions: bool = False,
) -> list[TrainResult | BaseException]:
    """Train several networks on the same data, each as ``train(net, X, y, val=val,
    **settings)`` would, packing the runs that can share their arithmetic (see the module
    docstring) and training the rest one by one.

    >>> results = train_many([(MLP([2, 16, 3], seed=s), {"learning_rate": lr, "seed": s})
    ...                       for lr in (0.01, 0.1) for s in (0, 1)], X, y, val=(X_val, y_val))

    Parameters
    ----------
    runs : sequence of (MLP, dict)
        Each network with its ``train`` keyword arguments (``on_epoch``, ``until_epoch`` and
        ``resume`` included), checked as ``train`` checks them, all before any training.
    max_pack : int
        Runs per pack, at most; 1 trains every run alone.
    return_exceptions : bool
        An exception raised for one run (by its ``on_epoch``, say) ends that run only, and is
        returned in its place; False raises the first one, after the others have finished.

    Returns
    -------
    list of TrainResult (or the exception of a run that raised one), in the order of ``runs``
    """
    check_int("max_pack", max_pack, 1, why="the most runs trained together")
    results: list[TrainResult | BaseException | None] = [None] * len(runs)
    trainers, indices = _prepared(runs, X, y, val, results if return_exceptions else None)
    for pack in _packs(trainers, max_pack):
        members = [indices[k] for k in pack]
        subnormals = trainers[pack[0]][0].config.subnormals
        with np.errstate(all="ignore"), arithmetic.training(subnormals):
            if len(pack) == 1:
                results[members[0]] = _alone(*trainers[pack[0]])
            else:
                packed = _train_pack([trainers[k] for k in pack])
                for index, result in zip(members, packed, strict=True):
                    results[index] = result
    if not return_exceptions:
        for result in results:
            if isinstance(result, BaseException):
                raise result
    return results


def pack_plan(
    runs: Sequence[tuple[MLP, dict]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    max_pack: int = MAX_PACK,
) -> list[list[int]]:
    """How ``train_many`` would group ``runs``: the indices of each pack (one index: a run
    that trains alone). Nothing is trained; a run's bad settings raise ``InputError``."""
    check_int("max_pack", max_pack, 1, why="the most runs trained together")
    trainers, indices = _prepared(runs, X, y, val, None)
    return [[indices[k] for k in pack] for pack in _packs(trainers, max_pack)]


def _prepared(runs, X, y, val, errors: list | None) -> tuple[list[tuple], list[int]]:
    """(trainer, until_epoch, resume) of each run whose settings are good, with its index in
    ``runs``; a bad one's error goes into ``errors`` at its index (raised, without ``errors``).
    """
    trainers, indices = [], []
    for index, (net, settings) in enumerate(runs):
        try:
            arguments = bind_train_arguments(net, X, y, {"val": val, **settings})
            trainer, until_epoch = prepare(arguments)
        except Exception as error:
            if errors is None:
                raise
            errors[index] = error
            continue
        trainers.append((trainer, until_epoch, arguments["resume"]))
        indices.append(index)
    return trainers, indices


def _train_pack(members: list[tuple]) -> list:
    """The pack's results; an error of the pack's own arithmetic is every member's."""
    try:
        return _Pack(members).run()
    except Exception as error:
        return [error] * len(members)


def _alone(trainer: _Trainer, until_epoch: int, resume) -> TrainResult | BaseException:
    try:
        return trainer.run(until_epoch, resume)
    except Exception as error:
        return error


def pack_key(trainer: _Trainer, resume) -> tuple | None:
    """What runs must share to be packed; None for a run that trains alone."""
    config, net = trainer.config, trainer.net
    if config.batch_size > MAX_PACKED_BATCH:
        return None
    start = None if resume is None else (resume.epoch, resume.updates)
    return (
        net.layer_sizes,
        net.dtype.name,
        config.loss,
        config.output,
        config.gd,
        config.batch_size,
        config.optimizer,
        config.subnormals,
        config.alpha > 0,
        trainer.correct is not None,
        start,
    )


def _packs(trainers: list[tuple], max_pack: int) -> list[list[int]]:
    """Indices of the runs to train together, in groups of at most ``max_pack`` (fewer when
    their activations would take more than ``_PACK_BYTES``); each run in exactly one."""
    groups: dict[tuple, list[int]] = {}
    packs = []
    for index, (trainer, _, resume) in enumerate(trainers):
        key = pack_key(trainer, resume)
        if key is None or max_pack == 1:
            packs.append([index])
        else:
            groups.setdefault(key, []).append(index)
    for members in groups.values():
        most = min(max_pack, _fitting(trainers[members[0]][0]))
        # runs of one activation and seed side by side: fewest calls, batches shared
        members.sort(key=lambda k: (trainers[k][0].net.activation, trainers[k][0].config.seed))
        packs.extend(split(members, -(-len(members) // most)))
    return sorted(packs)


def split(items: list, count: int) -> list[list]:
    """``items`` in ``count`` consecutive parts whose sizes differ by one at most."""
    bounds = [len(items) * k // count for k in range(count + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def _fitting(trainer: _Trainer) -> int:
    """Runs of this shape whose activations fit in ``_PACK_BYTES``."""
    backprop, net = trainer.backprop, trainer.net
    per_run = backprop.rows * 2 * sum(net.layer_sizes[1:]) * net.dtype.itemsize
    return max(1, _PACK_BYTES // per_run)


class _Pack:
    """K compatible runs trained in lockstep; see the module docstring."""

    def __init__(self, members: list[tuple]) -> None:
        self.trainers = [trainer for trainer, _, _ in members]
        self.until = [until_epoch for _, until_epoch, _ in members]
        self.errors: list[BaseException | None] = [None] * len(members)
        first = self.trainers[0]
        self.config, self.X, self.T = first.config, first.X, first.T
        self.correct, self.validation = first.correct, first.validation
        self.net = first.net
        # each run shuffles its own order, a row of one matrix, so that a step's batches of
        # all the runs are one gather
        self.orders = np.stack([trainer.order for trainer in self.trainers])
        for trainer, order in zip(self.trainers, self.orders, strict=True):
            trainer.order = order
        self._batches: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._begin([resume for _, _, resume in members])

    def _begin(self, resumes) -> None:
        for trainer, resume in zip(self.trainers, resumes, strict=True):
            if resume is not None:
                trainer.begin(resume)  # puts the run's weights and optimizer state back
        self.active = list(range(len(self.trainers)))
        self._build([trainer.net.flat for trainer in self.trainers], self._stacked_states())
        if resumes[0] is None:
            initial = self.backprop.initial_losses(self.X, self.T)
            for trainer, loss in zip(self.trainers, initial, strict=True):
                trainer.begin(None, initial_loss=float(loss))
        self.updates = self.trainers[0].updates

    def _stacked_states(self) -> dict:
        states = [trainer.optimizer.state() for trainer in self.trainers]
        stacked = {name: np.stack([state[name] for state in states]) for name in states[0]}
        if "t" in stacked:
            stacked["t"] = states[0]["t"]  # the same for every run: they made the same updates
        return stacked

    def _build(self, flats: list[np.ndarray], optimizer_state: dict) -> None:
        """Parameters, gradients, optimizer and buffers for the active runs."""
        trainers = [self.trainers[k] for k in self.active]
        self.theta = np.stack(flats)
        self.backprop = PackedBackprop(
            self.net,
            trainers[0].backprop,
            self.theta,
            alphas=[t.config.alpha for t in trainers],
            activations=[t.net.activation for t in trainers],
        )
        self.optimizer = _packed_optimizer(trainers, self.theta, self.backprop.flat_grad)
        self.optimizer.load_state(optimizer_state)

    def run(self) -> list[TrainResult | BaseException]:
        while self.active:
            epoch = self.trainers[self.active[0]].next_epoch
            self._epoch(epoch)
        return [
            error if error is not None else trainer.result
            for trainer, error in zip(self.trainers, self.errors, strict=True)
        ]

    def _epoch(self, epoch: int) -> None:
        start = time.perf_counter()
        trainers = [self.trainers[k] for k in self.active]
        rates = [t.start_epoch(epoch) for t in trainers]
        self.optimizer.learning_rate = np.array(rates, dtype=self.theta.dtype)[:, None]
        total, hits = self._pass()
        n = len(self.X)
        val_loss, val_accuracy = validate(self.backprop, self.validation, self.correct)
        seconds = (time.perf_counter() - start) / len(trainers)
        grad = self.backprop.flat_grad
        leaving = []
        for row, k in enumerate(self.active):
            trainer = self.trainers[k]
            trainer.updates = self.updates
            record = EpochRecord(
                epoch=epoch,
                train_loss=float(total[row] / n),
                val_loss=None if val_loss is None else float(val_loss[row]),
                train_accuracy=float(hits[row] / n) if self.correct else None,
                val_accuracy=None if val_accuracy is None else float(val_accuracy[row]),
                grad_norm=float(np.sqrt(inner(grad[row], grad[row]))),
                learning_rate=float(rates[row]),
                seconds=seconds,
            )
            try:
                stops = trainer.end_epoch(record, self.theta[row])
                if stops or epoch >= self.until[k]:
                    self._settle(row, k)
                    leaving.append(row)
            except Exception as error:
                self.errors[k] = error
                leaving.append(row)
        if leaving:
            self._leave(leaving)

    def _settle(self, row: int, k: int) -> None:
        """The run's weights and optimizer state back in its own network and rule; its result."""
        trainer = self.trainers[k]
        trainer.net.flat[...] = self.theta[row]
        state = self.optimizer.state()
        trainer.optimizer.load_state(
            {name: value if np.ndim(value) == 0 else value[row] for name, value in state.items()}
        )
        trainer.finish(self.until[k])

    def _leave(self, rows: list[int]) -> None:
        keep = [row for row in range(len(self.active)) if row not in rows]
        state = {
            name: value if np.ndim(value) == 0 else value[keep]
            for name, value in self.optimizer.state().items()
        }
        flats = [self.theta[row] for row in keep]
        self.active = [self.active[row] for row in keep]
        if self.active:
            self._build(flats, state)

    def _update(self, X, T) -> tuple[np.ndarray, np.ndarray]:
        result = self.backprop.loss_and_grads(X, T, self.correct)
        self.optimizer.step()
        self.updates += 1
        return result

    def _pass(self) -> tuple[np.ndarray, np.ndarray]:
        gd, X, T, update = self.config.gd, self.X, self.T, self._update
        if gd == "batch":
            return update(X, T)
        trainers = [self.trainers[k] for k in self.active]
        for trainer in trainers:
            trainer.rng.shuffle(trainer.order)
        K, B = len(trainers), self.config.batch_size if gd == "minibatch" else 1
        total, hits = np.zeros(K), np.zeros(K, dtype=np.int64)
        if len({trainer.config.seed for trainer in trainers}) == 1:
            order = trainers[0].order  # one seed, one order: the runs' batches are the same
            if B == 1:
                batches = ((X[i : i + 1], T[i : i + 1]) for i in order.tolist())
            else:
                batches = self._gathered(order, B)
        else:
            batches = self._gathered(self.orders[self.active], B)
        for xb, tb in batches:
            loss, correct = update(xb, tb)
            total += loss
            hits += correct
        return total, hits

    def _gathered(self, order: np.ndarray, B: int):
        """The batches of ``B`` rows in ``order``: one order for all the runs (its batches
        (m, n_inputs)), or a row of it per run (batches (K, m, n_inputs), each run its own)."""
        X, T = self.X, self.T
        for start in range(0, len(X), B):
            index = order[..., start : start + B]
            X_batch, T_batch = self._batch_buffers(index.shape)
            # mode="clip": the index is valid, and "raise" would buffer the copy
            yield (
                np.take(X, index, axis=0, out=X_batch, mode="clip"),
                np.take(T, index, axis=0, out=T_batch, mode="clip"),
            )

    def _batch_buffers(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Buffers for the batches of ``shape``, allocated once (a pass has two sizes)."""
        if shape not in self._batches:
            X, T = self.X, self.T
            self._batches[shape] = (
                np.empty((*shape, X.shape[1]), X.dtype),
                np.empty((*shape, *T.shape[1:]), T.dtype),
            )
        return self._batches[shape]


def _packed_optimizer(trainers: list[_Trainer], theta: np.ndarray, grad: np.ndarray):
    """The runs' update rule over the (K, P) matrices, each hyperparameter a (K, 1) column
    (every rule takes the ones it uses)."""
    config = trainers[0].config
    columns = {
        name: np.array([[t.config.optimizer_args[name]] for t in trainers], dtype=theta.dtype)
        for name in OPTIMIZER_ARGUMENTS
    }
    rule = OPTIMIZERS[config.optimizer](theta, grad, 0.0, **columns)
    decay = np.array([[t.config.weight_decay] for t in trainers], dtype=theta.dtype)
    return WeightDecay(rule, decay) if decay.any() else rule


class PackedBackprop(Backprop):
    """``Backprop`` for K runs at once: every buffer gains a leading run axis, the parameters
    are the rows of ``theta`` (K, P), the gradients those of ``flat_grad``."""

    def __init__(
        self,
        net: MLP,
        alone: Backprop,
        theta: np.ndarray,
        alphas: list[float],
        activations: list[str],
    ) -> None:
        # a run's own Backprop (``alone``): its loss, and its chunking, so that every sum is
        # taken over the same rows
        self.loss = alone.loss
        # each run's hidden activation: one call for each stretch of runs that share one
        sizes, dtype, K = net.layer_sizes, net.dtype, len(theta)
        self._segments = [
            (
                start,
                stop,
                hidden_layer(name, dtype, theta.shape[1]),
                hidden_delta(name, dtype, theta.shape[1]),
            )
            for start, stop, name in _stretches(activations)
        ]
        self.rows = rows = alone.rows
        # flat, viewed as a contiguous (K, m, width) for each batch of m rows: a (K, rows,
        # width) array cut to m rows would put each run's block a whole chunk apart, the
        # blocks then fighting over the same cache sets
        self._widths = sizes[1:]
        self.activations = [np.empty(K * rows * width, dtype) for width in self._widths]
        self.output_delta = np.empty(K * rows * sizes[-1], dtype)
        self._scratch = np.empty(K * rows * max(sizes[1:-1], default=0), dtype)
        self.flat_grad = np.zeros_like(theta)
        self._layers = _layer_views(theta, self.flat_grad, sizes)
        self._chunk_grad = np.zeros_like(theta)
        self._chunk_layers = _layer_views(theta, self._chunk_grad, sizes)
        self.penalty = _PackedPenalty(sizes, theta, self.flat_grad, alphas) if any(alphas) else None

    def forward(self, X: np.ndarray, m: int) -> np.ndarray:
        A = X
        last = len(self._layers) - 1
        for index, (W, b, _, _) in enumerate(self._layers):
            Z = self._rows_of(self.activations[index], m, self._widths[index])
            np.matmul(A, W, out=Z)
            if index < last:
                for start, stop, layer, _ in self._segments:
                    layer(Z[start:stop], b[start:stop])
            else:
                Z += b[:, None, :]
            A = Z
        return A

    def loss_and_grads(self, X: np.ndarray, T: np.ndarray, correct=None):
        """As ``Backprop``'s, for a batch shared by the runs (m, n_inputs), or one batch per
        run (K, m, n_inputs); only a shared one (batch GD) can be larger than a chunk."""
        if X.ndim == 2:
            return super().loss_and_grads(X, T, correct)
        m = X.shape[1]
        total, hits = self._chunk(X, T, 1.0 / m, correct, self._layers)
        if self.penalty is not None:
            total += self.penalty.add_gradient(m)
        return total, hits

    def _chunk(self, X, T, scale: float, correct, layers):
        m = X.shape[-2]
        Z = self.forward(X, m)
        D = self._rows_of(self.output_delta, m, self._widths[-1])
        total = self.loss(Z, T, D, scale)
        hits = correct(Z, T) if correct is not None else 0
        self.backward(X, D, m, layers)
        return total, hits

    def backward(self, X: np.ndarray, D: np.ndarray, m: int, layers) -> None:
        K = D.shape[0]
        bias_gradient(D, layers[-1][3])
        for index in range(len(layers) - 1, -1, -1):
            W, _, gW, _ = layers[index]
            if index == 0:
                A_prev = X
            else:
                A_prev = self._rows_of(self.activations[index - 1], m, self._widths[index - 1])
            A_prev_T = np.swapaxes(A_prev, -1, -2)
            if m == 1:
                np.multiply(A_prev_T, D, out=gW)
            else:
                np.matmul(A_prev_T, D, out=gW)
            if index > 0:
                fan_in = W.shape[1]
                upstream = self._scratch[: K * m * fan_in].reshape(K, m, fan_in)
                np.matmul(D, np.swapaxes(W, -1, -2), out=upstream)
                gb = layers[index - 1][3]
                for start, stop, _, delta in self._segments:
                    delta(A_prev[start:stop], upstream[start:stop], gb[start:stop])
                D = A_prev

    def _rows_of(self, buffer: np.ndarray, m: int, width: int) -> np.ndarray:
        K = len(self.flat_grad)
        return buffer[: K * m * width].reshape(K, m, width)

    def initial_losses(self, X: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Each run's training objective at its initial weights (``_Trainer._initial_loss``)."""
        total, _ = self.evaluate(X, T)
        if self.penalty is not None:
            total += self.penalty.values()
        return total / len(X)


def _stretches(names: list[str]):
    """(start, stop, name) of each stretch of equal consecutive ``names``."""
    start = 0
    for name, same in itertools.groupby(names):
        stop = start + len(list(same))
        yield start, stop, name
        start = stop


def _layer_views(theta: np.ndarray, grad: np.ndarray, sizes) -> list[tuple[np.ndarray, ...]]:
    """(W, b, gW, gb) of each layer, each with the leading run axis: views into the rows."""
    views, offset = [], 0
    for fan_in, fan_out in itertools.pairwise(sizes):
        layer = []
        for matrix in (theta, grad):
            W = matrix[:, offset : offset + fan_in * fan_out].reshape(-1, fan_in, fan_out)
            b = matrix[:, offset + fan_in * fan_out : offset + (fan_in + 1) * fan_out]
            if not np.shares_memory(W, matrix):
                raise AssertionError("a packed layer must be a view of its parameter rows")
            layer.append((W, b))
        (W, b), (gW, gb) = layer
        views.append((W, b, gW, gb))
        offset += (fan_in + 1) * fan_out
    return views


class _PackedPenalty:
    """``L2Penalty`` for each row of the pack, with each run's α."""

    def __init__(self, sizes, theta: np.ndarray, grad: np.ndarray, alphas: list[float]) -> None:
        self.theta, self.grad = theta, grad
        alpha = np.array(alphas, dtype=theta.dtype)[:, None]
        self.alpha_on_weights = alpha * weight_mask(sizes, theta.dtype)
        self._over_rows: dict[int, np.ndarray] = {}
        self._scratch = np.empty_like(theta)

    def values(self) -> np.ndarray:
        """0.5 α Σ‖W‖² of each run."""
        alpha_W = np.multiply(self.theta, self.alpha_on_weights, out=self._scratch)
        return 0.5 * self._row_dots(alpha_W)

    def add_gradient(self, m: int) -> np.ndarray:
        scale = self._over_rows.get(m)
        if scale is None:
            scale = self._over_rows[m] = self.alpha_on_weights / m
        alpha_W_over_m = np.multiply(self.theta, scale, out=self._scratch)
        self.grad += alpha_W_over_m
        return 0.5 * m * self._row_dots(alpha_W_over_m)

    def _row_dots(self, scaled: np.ndarray) -> np.ndarray:
        # each row's pairwise sum, as a run alone takes it, so the sums agree to the last bit
        return inner_rows(scaled, self.theta, out=scaled)
