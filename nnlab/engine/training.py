"""The training loop: gradient descent in its batch, stochastic and mini-batch variants.

One epoch is one pass over the training set. Batch GD makes one update per epoch from all N
samples, stochastic GD makes N updates of one sample each, mini-batch GD makes ceil(N / B) updates
of B samples (the last batch holds the remainder). The sample order is reshuffled every epoch
from the seed, by shuffling an index; batches are gathered into a preallocated buffer, so the data
set is never copied.

Metrics in each epoch's record:

- ``train_loss`` / ``train_accuracy``: mean over the epoch's samples of the loss (accuracy) each
  sample had in the forward pass of its update, the running figure scikit-learn and Keras report;
  for batch GD that is the loss before the epoch's update. With ``alpha`` > 0 the loss includes
  the L2 penalty as scikit-learn's ``loss_curve_`` does: each update adds 0.5 α Σ‖W‖² (at the
  weights it started from) to the epoch's summed loss, which is then divided by N.
- ``val_loss`` / ``val_accuracy``: on the validation data with the weights at the end of the epoch.
  The plain data loss, without the penalty: it measures the fit, and is comparable between runs
  with different ``alpha`` (scikit-learn validates with a score, which has no penalty either).
- ``grad_norm``: Euclidean norm of the gradient of the epoch's last update (the penalty's term
  included, weight decay not: that is no gradient).
- ``learning_rate``: the η the epoch's updates used, after its schedule (nnlab/engine/schedules.py).
- accuracy is reported for classification targets (integer class ids), else None.

A run can pause and resume: ``until_epoch=k`` stops after epoch k with status ``paused`` and a
``Checkpoint`` (nnlab/engine/checkpoint.py), and ``resume=checkpoint`` trains epochs k + 1, ...
exactly as the unpaused run would have: same records, weights and status, bit for bit.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnlab.checks import InputError, check_choice, check_int, check_number
from nnlab.engine import arithmetic
from nnlab.engine.checkpoint import LEFT_OUT, Checkpoint, settings_difference
from nnlab.engine.losses import ACCURACY, DEFAULT_OUTPUT, count_correct
from nnlab.engine.mlp import MLP, Backprop, inner, prepare_targets
from nnlab.engine.optimizers import OPTIMIZERS, make_optimizer
from nnlab.engine.schedules import ADAPTIVE_DIVISOR, ADAPTIVE_FLOOR, SCHEDULES, ScheduleSettings

GD_VARIANTS = ("batch", "stochastic", "minibatch")
STATUSES = ("completed", "converged", "early_stopped", "diverged")
# not final: the run stopped at until_epoch and its TrainResult carries a Checkpoint
PAUSED = "paused"
# batch_size="auto": scikit-learn's min(200, n_samples)
AUTO_BATCH_SIZE = 200
_EVAL_ROWS = 512


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """What one epoch of training measured; see the module docstring for each field."""

    epoch: int
    train_loss: float
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    grad_norm: float
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    """How a run ended and what it measured.

    ``status`` is ``completed`` (all epochs ran), ``converged`` (the training loss stopped
    decreasing by ``tol``; under the adaptive schedule, it did so with η at or below 1e-6),
    ``early_stopped`` (validation loss stopped improving for ``patience``
    epochs) or ``diverged`` (non-finite loss, or loss above ``divergence_factor`` ×
    ``initial_loss``, the training loss of the initial weights). Those four are final;
    ``paused`` is not: the run reached ``train``'s ``until_epoch`` first, and ``checkpoint``
    holds what ``train(..., resume=checkpoint)`` needs to go on.

    A resumed run's result is the whole run's: ``history`` starts at epoch 1, and ``updates``
    counts the updates before the pause too.
    """

    status: str
    history: list[EpochRecord] = field(default_factory=list)
    updates: int = 0
    reason: str = ""
    initial_loss: float = math.nan
    checkpoint: Checkpoint | None = None

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    @property
    def final(self) -> EpochRecord | None:
        return self.history[-1] if self.history else None


@dataclass(frozen=True)
class TrainConfig:
    """Validated training settings; ``batch_size`` is the effective number of samples per update."""

    loss: str
    output: str
    gd: str
    batch_size: int
    learning_rate: float
    schedule: str
    schedule_settings: ScheduleSettings
    n_iter_no_change: int
    alpha: float
    weight_decay: float
    optimizer: str
    optimizer_args: dict
    epochs: int
    seed: int
    patience: int | None
    min_delta: float
    restore_best: bool
    tol: float | None
    tol_patience: int
    divergence_factor: float | None
    subnormals: str


def train(
    net: MLP,
    X: np.ndarray,
    y: np.ndarray,
    *,
    loss: str | None = None,
    gd: str = "minibatch",
    batch_size: int | str | None = 32,
    learning_rate: float = 0.01,
    learning_rate_schedule: str = "constant",
    power_t: float = 0.5,
    gamma: float = 0.1,
    step_size: int = 30,
    min_learning_rate: float = 0.0,
    n_iter_no_change: int = 10,
    alpha: float = 0.0,
    weight_decay: float = 0.0,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    epochs: int = 100,
    seed: int | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = False,
    tol: float | None = None,
    tol_patience: int = 1,
    divergence_factor: float | None = 100.0,
    subnormals: str = "keep",
    on_epoch: Callable[[EpochRecord], None] | None = None,
    until_epoch: int | None = None,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train ``net`` in place on ``X``, ``y`` by gradient descent.

    Parameters
    ----------
    net : MLP
    X : ndarray of shape (n_samples, n_inputs)
    y : ndarray
        Class ids of shape (n_samples,) (or one-hot rows) for classification; targets of shape
        (n_samples,) or (n_samples, n_outputs) for regression.
    loss : {"mse", "cross_entropy", "binary_cross_entropy"} or None
        None picks it from the network's output activation, else from ``y``: integer class ids
        give cross_entropy (binary_cross_entropy for a single output), floats give mse.
    gd : {"batch", "stochastic", "minibatch"}
        All samples, one sample, or ``batch_size`` samples per update. ``batch_size`` (an integer
        >= 1, or ``"auto"`` for scikit-learn's min(200, n_samples)) is used by ``minibatch`` only.
    learning_rate : float
        The initial step size η₀ > 0.
    learning_rate_schedule : {"constant", "invscaling", "step", "exponential", "cosine", "adaptive"}
        How η changes from epoch to epoch, for every optimizer; the formulas are in
        nnlab/engine/schedules.py. Each reads only its own settings of the following, but all are
        checked: ``power_t`` >= 0 (invscaling; scikit-learn's default 0.5); ``gamma`` in (0, 1]
        (step, exponential; 0.1 is PyTorch's StepLR default, and exponential, applied every
        epoch, usually wants 0.9 to 0.99); ``step_size`` >= 1 epochs (step; 30, the ImageNet
        recipe of PyTorch's StepLR example); ``min_learning_rate`` in [0, learning_rate]
        (cosine; PyTorch's default 0); ``n_iter_no_change`` >= 1 (adaptive; scikit-learn's 10).
    alpha : float
        L2 penalty α >= 0 as scikit-learn defines it: each batch of m samples adds
        0.5 α Σ‖W‖² / m to its mean loss and α W / m to the weight gradients; biases are not
        penalised. The reported ``train_loss`` includes it, ``val_loss`` does not.
    weight_decay : float
        Decoupled weight decay λ >= 0 (PyTorch's AdamW, for every optimizer): θ ← θ − η λ θ
        before each update, with η the scheduled rate; biases decay too, as in PyTorch.
    optimizer : {"sgd", "momentum", "nesterov", "adam"}
        The update rule; ``momentum`` (μ) feeds momentum and nesterov, ``beta1``, ``beta2`` and
        ``epsilon`` feed adam.
    epochs : int
        Passes over the training set, at most.
    seed : int or None
        Seeds the per-epoch shuffling; None uses the network's seed.
    val : (X_val, y_val) or None
        Validation data, evaluated after every epoch.
    patience, min_delta, restore_best
        Early stopping: stop when the validation loss has not improved by more than ``min_delta``
        for ``patience`` epochs; ``restore_best`` then puts back the weights of the best epoch
        (a run that completes keeps its final weights).
    tol, tol_patience
        Convergence: stop when the training loss has not decreased by more than ``tol`` for
        ``tol_patience`` consecutive epochs (scikit-learn's rule with its ``n_iter_no_change`` + 1).
        Under the adaptive schedule, which needs ``tol``, this stop becomes scikit-learn's
        schedule: after more than ``n_iter_no_change`` such epochs η is divided by 5 and the count
        restarts, and the run ends as converged when that happens with η <= 1e-6; ``tol_patience``
        is then unused.
    divergence_factor : float or None
        Stop as ``diverged`` when an epoch's training loss exceeds this multiple of the loss of
        the initial weights (``TrainResult.initial_loss``); a non-finite loss always counts.
    subnormals : {"keep", "flush"}
        ``keep``: IEEE arithmetic, the reference (also in a thread that flushes: the flags
        are cleared while the run trains). ``flush``: subnormal numbers (below 2.2e-308
        in float64) are taken as 0 while the run trains, the CPU's FTZ and DAZ modes, which
        saturated units make steps several times faster under; the run's last bits may differ
        where it meets them. Needs numba and x86-64 (nnlab/engine/arithmetic.py).
    on_epoch : callable or None
        Called with each epoch's ``EpochRecord`` as soon as the epoch ends (when resuming, only
        for the epochs this call trains).
    until_epoch : int or None
        Pause after this epoch, 1 <= ``until_epoch`` <= ``epochs`` (None: ``epochs``): a run that
        has not stopped by then returns status ``paused`` with a ``checkpoint``. Every setting,
        ``epochs`` included, keeps its meaning for the whole run, so a cosine schedule still
        decays over ``epochs``.
    resume : Checkpoint or None
        Continue a paused run after its checkpoint's epoch, into ``net`` (any network of the same
        shape: its weights are replaced), on the same data with the same settings; anything
        that differs is an ``InputError`` naming it. The result is the whole run's, history
        from epoch 1, as if it had never paused.

    Returns
    -------
    TrainResult
    """
    # the first statement: exactly train's arguments, which prepare() reads by name
    arguments = dict(locals())
    trainer, until_epoch = prepare(arguments)
    with np.errstate(all="ignore"), arithmetic.training(trainer.config.subnormals):
        return trainer.run(until_epoch, arguments["resume"])


def bind_train_arguments(net: MLP, X, y, settings: dict) -> dict:
    """``train``'s arguments for ``train(net, X, y, **settings)``, defaults filled in; an
    argument ``train`` does not take is an ``InputError`` naming it."""
    try:
        bound = inspect.signature(train).bind(net, X, y, **settings)
    except TypeError as error:
        raise InputError(f"train() settings: {error}") from None
    bound.apply_defaults()
    return bound.arguments


def prepare(arguments: dict) -> tuple[_Trainer, int]:
    """Check ``train``'s ``arguments`` (a dict of all of them, by name) and build the run's
    trainer; returns it with the epoch the run pauses after (its last, if it does not)."""
    a = arguments
    net, y, val, resume = a["net"], a["y"], a["val"], a["resume"]
    X = net._check_inputs(a["X"])
    config = make_config(
        net,
        y,
        n_samples=len(X),
        has_val=val is not None and len(val[0]) > 0,
        optimizer_args={name: a[name] for name in OPTIMIZER_ARGUMENTS},
        seed=net.seed if a["seed"] is None else a["seed"],
        **{name: a[name] for name in CONFIG_ARGUMENTS},
    )
    until_epoch = _check_until_epoch(a["until_epoch"], config.epochs, resume)
    net.output = config.output
    n_outputs = net.layer_sizes[-1]
    T = prepare_targets(y, config.loss, n_outputs, len(X), net.dtype)
    classify = _is_classification(y, config.loss)
    validation = None
    if val is not None:
        X_val = net._check_inputs(val[0])
        validation = (X_val, prepare_targets(val[1], config.loss, n_outputs, len(X_val), net.dtype))
    trainer = _Trainer(net, config, X, T, classify, validation, a["on_epoch"])
    if resume is not None:
        _check_resume(resume, trainer.settings())
    return trainer, until_epoch


# train's arguments that make_config takes as optimizer_args, and those it takes as they are
OPTIMIZER_ARGUMENTS = ("momentum", "beta1", "beta2", "epsilon")
CONFIG_ARGUMENTS = (
    "loss",
    "gd",
    "batch_size",
    "learning_rate",
    "learning_rate_schedule",
    "power_t",
    "gamma",
    "step_size",
    "min_learning_rate",
    "n_iter_no_change",
    "alpha",
    "weight_decay",
    "optimizer",
    "epochs",
    "patience",
    "min_delta",
    "restore_best",
    "tol",
    "tol_patience",
    "divergence_factor",
    "subnormals",
)


def _check_until_epoch(until_epoch, epochs: int, resume: Checkpoint | None) -> int:
    if until_epoch is None:
        return epochs
    first = 1 if resume is None else resume.epoch + 1
    check_int("until_epoch", until_epoch, first, why="the epoch to pause after")
    if until_epoch > epochs:
        raise InputError(f"until_epoch={until_epoch} is after the last epoch, epochs={epochs}")
    return int(until_epoch)


def _check_resume(checkpoint: Checkpoint, settings: dict) -> None:
    """The resuming call must be the paused one: same network shape, data and settings."""
    differences = settings_difference(checkpoint.settings, settings)
    if differences:
        raise InputError(
            f"cannot resume the checkpoint of epoch {checkpoint.epoch}: its run had other "
            f"settings: {'; '.join(differences)}"
        )


def make_config(
    net: MLP,
    y,
    *,
    n_samples: int,
    loss,
    gd,
    batch_size,
    learning_rate,
    learning_rate_schedule,
    power_t,
    gamma,
    step_size,
    min_learning_rate,
    n_iter_no_change,
    alpha,
    weight_decay,
    optimizer,
    optimizer_args,
    epochs,
    seed,
    patience,
    min_delta,
    restore_best,
    tol,
    tol_patience,
    divergence_factor,
    subnormals,
    has_val,
) -> TrainConfig:
    """Check every training argument once, before any work; errors name the bad value."""
    loss = _default_loss(net, y) if loss is None else loss
    output = net.output_for(loss)
    gd = check_choice("gd", gd, GD_VARIANTS)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    check_number("learning_rate", learning_rate, above=0)
    schedule = check_schedule(
        learning_rate_schedule, learning_rate, power_t, gamma, step_size, min_learning_rate, tol
    )
    check_int("n_iter_no_change", n_iter_no_change, 1)
    check_number("alpha", alpha, at_least=0)
    check_number("weight_decay", weight_decay, at_least=0)
    check_int("epochs", epochs, 1)
    if patience is not None:
        check_int("patience", patience, 1)
        if not has_val:
            raise InputError(f"patience={patience!r} needs validation data with at least one row")
    if restore_best and patience is None:
        raise InputError("restore_best=True needs early stopping: set patience")
    check_number("min_delta", min_delta, at_least=0)
    if tol is not None:
        check_number("tol", tol, at_least=0)
    check_int("tol_patience", tol_patience, 1)
    if divergence_factor is not None:
        check_number("divergence_factor", divergence_factor, above=1)
    for name in ("momentum", "beta1", "beta2"):
        check_number(name, optimizer_args[name], at_least=0, below=1)
    check_number("epsilon", optimizer_args["epsilon"], above=0)
    subnormals = arithmetic.check(subnormals)
    return TrainConfig(
        loss=loss,
        output=output,
        gd=gd,
        batch_size=_effective_batch_size(gd, batch_size, n_samples),
        learning_rate=float(learning_rate),
        schedule=schedule,
        schedule_settings=ScheduleSettings(
            learning_rate=float(learning_rate),
            epochs=int(epochs),
            n_samples=n_samples,
            power_t=float(power_t),
            gamma=float(gamma),
            step_size=int(step_size),
            min_learning_rate=float(min_learning_rate),
        ),
        n_iter_no_change=int(n_iter_no_change),
        alpha=float(alpha),
        weight_decay=float(weight_decay),
        optimizer=optimizer,
        optimizer_args=dict(optimizer_args),
        epochs=int(epochs),
        seed=int(seed),
        patience=patience,
        min_delta=float(min_delta),
        restore_best=bool(restore_best),
        tol=tol,
        tol_patience=int(tol_patience),
        divergence_factor=divergence_factor,
        subnormals=subnormals,
    )


def check_schedule(name, learning_rate, power_t, gamma, step_size, min_learning_rate, tol) -> str:
    """The schedule's name, once every schedule setting is in range."""
    schedule = check_choice("learning_rate_schedule", name, SCHEDULES)
    check_number("power_t", power_t, at_least=0)
    check_number("gamma", gamma, above=0, at_most=1)
    check_int("step_size", step_size, 1)
    check_number("min_learning_rate", min_learning_rate, at_least=0)
    if schedule == "cosine" and min_learning_rate > learning_rate:
        raise InputError(
            f"min_learning_rate={min_learning_rate!r} is above learning_rate={learning_rate!r}; "
            "the cosine schedule decays from learning_rate down to min_learning_rate"
        )
    if schedule == "adaptive" and tol is None:
        raise InputError(
            "learning_rate_schedule='adaptive' needs tol: it divides the learning rate by 5 when "
            "the training loss has not improved by tol for more than n_iter_no_change epochs "
            "(scikit-learn's tol is 1e-4)"
        )
    return schedule


def _effective_batch_size(gd: str, batch_size: int | str | None, n_samples: int) -> int:
    if n_samples < 1:
        raise InputError("X has no samples; training needs at least one")
    if gd == "batch":
        return n_samples
    if gd == "stochastic":
        return 1
    if isinstance(batch_size, str) and batch_size == "auto":
        return min(AUTO_BATCH_SIZE, n_samples)
    check_int("batch_size", batch_size, 1, why="or 'auto' for min(200, n_samples)")
    if batch_size > n_samples:
        raise InputError(
            f"batch_size={batch_size} is larger than the {n_samples} training samples; "
            "use gd='batch' to train on all samples at once"
        )
    return int(batch_size)


def _default_loss(net: MLP, y) -> str:
    by_output = {o: loss for loss, o in DEFAULT_OUTPUT.items()}
    if net.output is not None:
        return by_output[net.output]
    if np.issubdtype(np.asarray(y).dtype, np.integer):
        return "cross_entropy" if net.layer_sizes[-1] > 1 else "binary_cross_entropy"
    return "mse"


def _is_classification(y, loss: str) -> bool:
    return loss != "mse" or np.issubdtype(np.asarray(y).dtype, np.integer)


class _Trainer:
    """One training run's state: buffers, optimiser, stopping rules."""

    def __init__(self, net, config: TrainConfig, X, T, classify, validation, on_epoch) -> None:
        self.net, self.config, self.X, self.T = net, config, X, T
        self.correct = ACCURACY.get(config.loss, count_correct) if classify else None
        self.validation = validation
        self.on_epoch = on_epoch
        rows = max(config.batch_size, min(_EVAL_ROWS, len(X)))
        self.backprop = Backprop(net, config.loss, config.output, max_rows=rows, alpha=config.alpha)
        self.optimizer = make_optimizer(
            config.optimizer,
            net.flat,
            self.backprop.flat_grad,
            config.learning_rate,
            weight_decay=config.weight_decay,
            **config.optimizer_args,
        )
        self.rng = np.random.default_rng([config.seed, 1])
        self.order = np.arange(len(X))
        B = config.batch_size
        self.X_batch = np.empty((B, X.shape[1]), X.dtype)
        self.T_batch = np.empty((B, *T.shape[1:]), T.dtype)
        self.updates = 0

    def run(self, until_epoch: int, resume: Checkpoint | None = None) -> TrainResult:
        """Train up to ``until_epoch``, from the start or after ``resume``'s epoch."""
        self.begin(resume)
        for epoch in range(self.next_epoch, until_epoch + 1):
            record = self._epoch(epoch, self.start_epoch(epoch))
            if self.end_epoch(record, self.net.flat):
                break
        return self.finish(until_epoch)

    def begin(self, resume: Checkpoint | None, initial_loss: float | None = None) -> None:
        """Set up the stopping rules and the result: fresh (``initial_loss`` measured here
        unless given), or where ``resume`` left them."""
        config = self.config
        self.early = _EarlyStopping(config) if config.patience is not None else None
        self.plateau = _Plateau(config) if config.tol is not None else None
        if resume is not None:
            self.result = self._restore(resume, self.early, self.plateau)
        else:
            if initial_loss is None:
                initial_loss = self._initial_loss()
            self.result = TrainResult(status="completed", initial_loss=initial_loss)

    @property
    def next_epoch(self) -> int:
        return len(self.result.history) + 1

    def start_epoch(self, epoch: int) -> float:
        """The epoch's learning rate, handed to the optimizer."""
        learning_rate = self._learning_rate(epoch, self.plateau)
        self.optimizer.learning_rate = learning_rate
        return learning_rate

    def end_epoch(self, record: EpochRecord, flat: np.ndarray) -> bool:
        """Record the epoch (``flat``: the weights at its end) and apply the stopping rules;
        whether the run stops here."""
        result = self.result
        result.history.append(record)
        if self.on_epoch is not None:
            self.on_epoch(record)
        loss, epoch = record.train_loss, record.epoch
        if self._diverged(loss, result.initial_loss):
            result.status, result.reason = "diverged", f"train_loss={loss:g} at epoch {epoch}"
        elif self.early is not None and (reason := self.early.update(record.val_loss, flat)):
            result.status, result.reason = "early_stopped", reason
        elif self.plateau is not None and (
            reason := self.plateau.update(loss, record.learning_rate)
        ):
            result.status, result.reason = "converged", reason
        return result.status != "completed"

    def finish(self, until_epoch: int) -> TrainResult:
        """The result, once the run has stopped or reached ``until_epoch`` (then it pauses,
        unless that is its last epoch)."""
        result, early = self.result, self.early
        if result.status == "completed" and until_epoch < self.config.epochs:
            result.status = PAUSED
            result.reason = f"paused after epoch {until_epoch} of {self.config.epochs}"
            result.checkpoint = self._checkpoint(result, early, self.plateau)
        if early is not None and early.best_flat is not None and result.status == "early_stopped":
            self.net.flat[...] = early.best_flat
        result.updates = self.updates
        return result

    def settings(self) -> dict:
        """What a checkpoint must agree on to be resumed here: the validated settings, the
        network's shape, and CRC-32s of the training and validation data."""
        config = dataclasses.asdict(self.config)
        settings = {**config.pop("schedule_settings"), **config.pop("optimizer_args"), **config}
        settings["learning_rate_schedule"] = settings.pop("schedule")  # train's name for it
        for name, default in LEFT_OUT.items():  # as in checkpoints from before the setting
            if settings[name] == default:
                del settings[name]
        net = self.net
        settings.update(
            layer_sizes=list(net.layer_sizes),
            activation=net.activation,
            dtype=net.dtype.name,
            train_data_crc32=_crc32(self.X, self.T),
            validation_data_crc32=None if self.validation is None else _crc32(*self.validation),
        )
        # as the JSON header gives it back: tuples become lists
        return json.loads(json.dumps(settings))

    def _checkpoint(self, result: TrainResult, early, plateau) -> Checkpoint:
        order = self.order
        return Checkpoint(
            settings=self.settings(),
            epoch=len(result.history),
            updates=self.updates,
            initial_loss=result.initial_loss,
            params=self.net.flat.copy(),
            optimizer=self.optimizer.state(),
            shuffle_state=self.rng.bit_generator.state,
            # a permutation of 0..N-1 in the smallest integer type that holds N - 1
            order=order.astype(np.min_scalar_type(len(order) - 1)),
            stopping={
                "early_stopping": None if early is None else early.state(),
                "plateau": None if plateau is None else plateau.state(),
            },
            best_params=None if early is None else early.best_flat,  # replaced, never written
            history=tuple(dataclasses.astuple(record) for record in result.history),
        )

    def _restore(self, checkpoint: Checkpoint, early, plateau) -> TrainResult:
        """Put the trainer, the network and the stopping rules where ``checkpoint`` left them."""
        self.net.flat[...] = checkpoint.params
        self.optimizer.load_state(checkpoint.optimizer)
        self.rng.bit_generator.state = checkpoint.shuffle_state
        self.order[...] = checkpoint.order
        self.updates = checkpoint.updates
        if early is not None:
            early.load_state(checkpoint.stopping["early_stopping"])
            early.best_flat = checkpoint.best_params
        if plateau is not None:
            plateau.load_state(checkpoint.stopping["plateau"])
        return TrainResult(
            status="completed",
            history=[EpochRecord(*row) for row in checkpoint.history],
            initial_loss=checkpoint.initial_loss,
        )

    def _learning_rate(self, epoch: int, plateau: _Plateau | None) -> float:
        """The epoch's η: its schedule's, or under adaptive the η the plateau rule has reached."""
        if plateau is not None and plateau.learning_rate is not None:
            return plateau.learning_rate
        return SCHEDULES[self.config.schedule](epoch, self.config.schedule_settings)

    def _initial_loss(self) -> float:
        """The training objective at the initial weights: the data loss over all N samples, plus
        the L2 penalty 0.5 α Σ‖W‖² / N, so batch GD's first train_loss equals it."""
        total, _ = self.backprop.evaluate(self.X, self.T)
        if self.backprop.penalty is not None:
            total += self.backprop.penalty.value()
        return total / len(self.X)

    def _diverged(self, loss: float, initial_loss: float) -> bool:
        """A non-finite loss, or one above ``divergence_factor`` × the initial weights' loss
        (measured against the start, so a run that blows up within its first epoch counts)."""
        factor = self.config.divergence_factor
        if not math.isfinite(loss):
            return True
        return factor is not None and initial_loss > 0 and loss > factor * initial_loss

    def _epoch(self, epoch: int, learning_rate: float) -> EpochRecord:
        start = time.perf_counter()
        gd = self.config.gd
        if gd == "batch":
            total, hits = self._batch_pass()
        elif gd == "stochastic":
            total, hits = self._stochastic_pass()
        else:
            total, hits = self._minibatch_pass()
        n = len(self.X)
        val_loss, val_accuracy = validate(self.backprop, self.validation, self.correct)
        grad = self.backprop.flat_grad
        return EpochRecord(
            epoch=epoch,
            train_loss=total / n,
            val_loss=val_loss,
            train_accuracy=hits / n if self.correct else None,
            val_accuracy=val_accuracy,
            grad_norm=float(np.sqrt(inner(grad, grad))),
            learning_rate=learning_rate,
            seconds=time.perf_counter() - start,
        )

    def _update(self, X, T) -> tuple[float, int]:
        result = self.backprop.loss_and_grads(X, T, self.correct)
        self.optimizer.step()
        self.updates += 1
        return result

    def _batch_pass(self) -> tuple[float, int]:
        return self._update(self.X, self.T)

    def _stochastic_pass(self) -> tuple[float, int]:
        self.rng.shuffle(self.order)
        X, T, update = self.X, self.T, self._update
        total, hits = 0.0, 0
        for i in self.order.tolist():
            loss, correct = update(X[i : i + 1], T[i : i + 1])
            total += loss
            hits += correct
        return total, hits

    def _minibatch_pass(self) -> tuple[float, int]:
        self.rng.shuffle(self.order)
        X, T, B, update = self.X, self.T, self.config.batch_size, self._update
        total, hits = 0.0, 0
        for start in range(0, len(X), B):
            index = self.order[start : start + B]
            m = len(index)
            # mode="clip": the index is valid, and "raise" would buffer the copy
            X_batch = np.take(X, index, axis=0, out=self.X_batch[:m], mode="clip")
            T_batch = np.take(T, index, axis=0, out=self.T_batch[:m], mode="clip")
            loss, correct = update(X_batch, T_batch)
            total += loss
            hits += correct
        return total, hits


def validate(backprop: Backprop, validation, correct):
    """(val_loss, val_accuracy) of the weights now: None for what there is no data or no
    accuracy for; a pack's ``backprop`` gives one of each per run."""
    if validation is None or not len(validation[0]):
        return None, None
    X_val, T_val = validation
    total, hits = backprop.evaluate(X_val, T_val, correct)
    return total / len(X_val), hits / len(X_val) if correct else None


def _crc32(*arrays: np.ndarray) -> int:
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).data, crc)
    return crc


class _EarlyStopping:
    """The validation-loss rule: an epoch improves when its loss beats the best so far by more
    than ``min_delta``; ``patience`` epochs without one end the run. With ``restore_best`` it
    keeps a copy of the best epoch's weights."""

    def __init__(self, config: TrainConfig) -> None:
        self.patience, self.min_delta = config.patience, config.min_delta
        self.restore_best = config.restore_best
        self.best, self.stale = math.inf, 0
        self.best_flat: np.ndarray | None = None

    def update(self, val_loss: float, flat: np.ndarray) -> str | None:
        """Count the epoch's validation loss; the reason to stop, if the run should."""
        if val_loss < self.best - self.min_delta:
            self.best, self.stale = val_loss, 0
            if self.restore_best:
                self.best_flat = flat.copy()
        else:
            self.stale += 1
        if self.stale >= self.patience:
            return f"val_loss did not improve for {self.patience} epochs"
        return None

    def state(self) -> dict:
        return {"best": self.best, "stale": self.stale}

    def load_state(self, state: dict) -> None:
        self.best, self.stale = state["best"], state["stale"]


class _Plateau:
    """The training-loss rule: an epoch is stale when its loss fails to beat the best so far by
    ``tol`` (scikit-learn's comparison). ``tol_patience`` consecutive stale epochs end the run as
    converged, except under the adaptive schedule, where more than ``n_iter_no_change`` of them
    divide η by 5 (``learning_rate`` then holds the η to use) and restart the count, and end the
    run only when η is already at or below 1e-6: scikit-learn's ``_fit_stochastic``."""

    def __init__(self, config: TrainConfig) -> None:
        self.tol, self.tol_patience = config.tol, config.tol_patience
        self.n_iter_no_change = config.n_iter_no_change
        self.learning_rate = config.learning_rate if config.schedule == "adaptive" else None
        self.best, self.stale = math.inf, 0

    def update(self, loss: float, learning_rate: float) -> str | None:
        """Count the epoch's training loss; the reason to stop, if the run should."""
        self.stale = self.stale + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        if self.learning_rate is None:
            if self.stale >= self.tol_patience:
                return f"train_loss decreased by less than tol={self.tol:g}"
            return None
        if self.stale > self.n_iter_no_change:
            if learning_rate <= ADAPTIVE_FLOOR:
                return (
                    f"train_loss decreased by less than tol={self.tol:g} for "
                    f"{self.stale} epochs at learning_rate={learning_rate:g} "
                    f"(adaptive stops at or below {ADAPTIVE_FLOOR:g})"
                )
            self.learning_rate, self.stale = learning_rate / ADAPTIVE_DIVISOR, 0
        return None

    def state(self) -> dict:
        """The counts, and under adaptive the η reached (None otherwise)."""
        return {"best": self.best, "stale": self.stale, "learning_rate": self.learning_rate}

    def load_state(self, state: dict) -> None:
        self.best, self.stale = state["best"], state["stale"]
        self.learning_rate = state["learning_rate"]
