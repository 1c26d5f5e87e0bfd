"""The hyperparameters of a run, declared once.

Each ``Param`` says what a run's setting is called, its default, how a value is checked (type,
bounds, choices), when it applies (``batch_size`` only to mini-batch GD, ``momentum`` only to
the momentum optimizers, ...), where a spec writes it, and what it configures: the network
(``MLP``) or the training loop (``engine.train``). Everything else is derived from this table:
the fields of ``RunConfig``, the checks of a sweep spec, which settings a run's hash leaves out,
the options of ``nnlab train``, and what ``lab.settings()`` and the report show. A run's
settings are stored whole (``runs.config``); those the store declares a typed column for
(``nnlab.store.models.HYPERPARAMETER_COLUMNS``) are copied into it.

Adding a parameter is one ``Param`` here plus its implementation in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nnlab.checks import InputError, check_choice, check_count, check_number
from nnlab.engine import GD_VARIANTS, INITS, LOSS_NAMES, OUTPUT_ACTIVATIONS, SCHEDULES
from nnlab.engine import HIDDEN_ACTIVATIONS as _HIDDEN
from nnlab.engine import OPTIMIZERS as _OPTIMIZERS
from nnlab.engine.arithmetic import SUBNORMALS
from nnlab.engine.mlp import DTYPES

HIDDEN_ACTIVATIONS, OPTIMIZERS = tuple(_HIDDEN), tuple(_OPTIMIZERS)
OUTPUTS = tuple(OUTPUT_ACTIVATIONS)
AUTO_BATCH = "auto"  # batch_size: min(200, the training samples), scikit-learn's default

MAX_EPOCHS = 1_000_000
MAX_WIDTH = 1_000_000  # units in a hidden layer; the memory estimate decides what fits
MAX_BATCH = 1_000_000

Check = Callable[[str, object], object]


@dataclass(frozen=True)
class When:
    """A parameter applies only when ``setting`` has one of ``values`` (or, with ``is_set``,
    any value but None)."""

    setting: str
    values: tuple = ()
    is_set: bool = False

    def holds(self, settings: Mapping) -> bool:
        value = settings.get(self.setting)
        return value is not None if self.is_set else value in self.values

    def __str__(self) -> str:
        if self.is_set:
            return f"with {self.setting}"
        return f"with {self.setting} {' or '.join(map(str, self.values))}"


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a run (see the module's docstring)."""

    name: str
    kind: type  # of a value: int, float, str, or tuple (hidden's widths)
    default: object
    check: Check  # (name, value) -> the value in canonical form, or InputError
    help: str
    section: str = "train"  # where a spec writes it: model or train
    configures: str | None = "training"  # "network" (MLP), "training" (engine.train), or None
    applies: When | None = None
    choices: tuple[str, ...] | None = None  # the values it takes, for help and the CLI
    words: tuple[str, ...] = ()  # words it takes besides numbers of its kind ("auto")
    # nnlab 0.1's parameters are hashed at every value; one added since enters a run's hash only
    # away from its default, so adding it leaves the hashes of stored sweeps as they were
    hashed_at_default: bool = False

    def applies_to(self, settings: Mapping) -> bool:
        return self.applies is None or self.applies.holds(settings)

    @property
    def option(self) -> str:
        """Its option of ``nnlab train``."""
        return "--" + self.name.replace("_", "-")


# --- checks, built from what a parameter allows ---


def choice(values: tuple[str, ...]) -> Check:
    return lambda name, value: check_choice(name, value, values)


def number(**bounds) -> Check:
    return lambda name, value: check_number(name, value, **bounds)


def count(low: int, high: int) -> Check:
    return lambda name, value: check_count(name, value, low, high)


def optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def or_words(check: Check, *words: str) -> Check:
    """``check``, or one of ``words`` as it is."""
    return lambda name, value: value if value in words else check(name, value)


def widths(name: str, value: object) -> tuple[int, ...]:
    """Hidden layer widths: a list (or one number) of integers >= 1."""
    layers = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(layers, list | tuple):
        raise InputError(f"{name} must be a list of layer widths like [16, 16], got {value!r}")
    return tuple(check_count(f"{name} width", width, 1, MAX_WIDTH) for width in layers)


def _param(*args, **kwargs) -> Param:
    return Param(*args, **kwargs, hashed_at_default=True)


_ADAM = When("optimizer", ("adam",))
PARAMS: list[Param] = [
    _param(
        "hidden",
        tuple,
        (16, 16),
        widths,
        "Hidden layer widths: [16, 16] in a spec, 16,16 on the command line; none: [] or ''.",
        section="model",
        configures="network",
    ),
    _param(
        "activation",
        str,
        "relu",
        choice(HIDDEN_ACTIVATIONS),
        "Activation of the hidden layers.",
        section="model",
        configures="network",
        choices=HIDDEN_ACTIVATIONS,
    ),
    _param(
        "output",
        str,
        None,
        optional(choice(OUTPUTS)),
        "Output activation; chosen from the loss when omitted.",
        section="model",
        configures="network",
        choices=OUTPUTS,
    ),
    _param(
        "loss",
        str,
        None,
        optional(choice(LOSS_NAMES)),
        "Loss; cross_entropy for class labels, mse for numbers when omitted.",
        section="model",
        choices=LOSS_NAMES,
    ),
    _param(
        "dtype",
        str,
        "float64",
        choice(DTYPES),
        "Floating-point precision of the network.",
        section="model",
        configures="network",
        choices=DTYPES,
    ),
    _param(
        "gd",
        str,
        "minibatch",
        choice(GD_VARIANTS),
        "batch: all samples per update; stochastic: one; minibatch: batch_size.",
        choices=GD_VARIANTS,
    ),
    _param(
        "batch_size",
        int,
        32,
        optional(or_words(count(1, MAX_BATCH), AUTO_BATCH)),
        "Samples per update; auto: min(200, the training samples), scikit-learn's default.",
        applies=When("gd", ("minibatch",)),
        words=(AUTO_BATCH,),
    ),
    _param("learning_rate", float, 0.1, number(above=0), "The step size η."),
    _param("optimizer", str, "sgd", choice(OPTIMIZERS), "The update rule.", choices=OPTIMIZERS),
    _param(
        "momentum",
        float,
        0.9,
        number(at_least=0, below=1),
        "μ of the momentum optimizers.",
        applies=When("optimizer", ("momentum", "nesterov")),
    ),
    _param(
        "beta1",
        float,
        0.9,
        number(at_least=0, below=1),
        "Adam's first-moment decay.",
        applies=_ADAM,
    ),
    _param(
        "beta2",
        float,
        0.999,
        number(at_least=0, below=1),
        "Adam's second-moment decay.",
        applies=_ADAM,
    ),
    _param("epsilon", float, 1e-8, number(above=0), "Adam's ε.", applies=_ADAM),
    _param("epochs", int, 50, count(1, MAX_EPOCHS), "Passes over the training set, at most."),
    _param(
        "patience",
        int,
        None,
        optional(count(1, MAX_EPOCHS)),
        "Stop early after this many epochs without validation improvement.",
    ),
    _param(
        "min_delta",
        float,
        0.0,
        number(at_least=0),
        "Validation improvement that counts, for patience.",
        applies=When("patience", is_set=True),
    ),
    _param(
        "tol",
        float,
        None,
        optional(number(at_least=0)),
        "Stop as converged when the training loss decreases by less than this.",
    ),
    _param(
        "divergence_factor",
        float,
        100.0,
        optional(number(above=1)),
        "Diverged when the training loss exceeds this × the initial loss.",
    ),
    # added in round 2: a run's hash holds them only away from their defaults
    Param(
        "init",
        str,
        "auto",
        choice(INITS),
        "Initial weights: auto (He-normal for the ReLU family, else Glorot-uniform, zero "
        "biases), a named scheme, or sklearn / pytorch to start as those libraries do.",
        section="model",
        configures="network",
        choices=INITS,
    ),
    Param(
        "learning_rate_schedule",
        str,
        "constant",
        choice(SCHEDULES),
        "How η changes between epochs, for every optimizer.",
        choices=SCHEDULES,
    ),
    Param(
        "power_t",
        float,
        0.5,
        number(at_least=0),
        "invscaling: η = η₀ / (samples seen + 1)^power_t.",
        applies=When("learning_rate_schedule", ("invscaling",)),
    ),
    Param(
        "gamma",
        float,
        0.1,
        number(above=0, at_most=1),
        "step: η × gamma every step_size epochs; exponential: η × gamma every epoch.",
        applies=When("learning_rate_schedule", ("step", "exponential")),
    ),
    Param(
        "step_size",
        int,
        30,
        count(1, MAX_EPOCHS),
        "step: epochs between decays.",
        applies=When("learning_rate_schedule", ("step",)),
    ),
    Param(
        "min_learning_rate",
        float,
        0.0,
        number(at_least=0),
        "cosine: the η the run anneals to.",
        applies=When("learning_rate_schedule", ("cosine",)),
    ),
    Param(
        "n_iter_no_change",
        int,
        10,
        count(1, MAX_EPOCHS),
        "adaptive: η ÷ 5 after more than this many epochs without a tol improvement.",
        applies=When("learning_rate_schedule", ("adaptive",)),
    ),
    Param(
        "tol_patience",
        int,
        1,
        count(1, MAX_EPOCHS),
        "Epochs in a row without a tol improvement before stopping as converged "
        "(scikit-learn's n_iter_no_change=10 is 11).",
        applies=When("tol", is_set=True),
    ),
    Param(
        "alpha",
        float,
        0.0,
        number(at_least=0),
        "L2 penalty as scikit-learn's: 0.5·alpha·Σ‖W‖² / batch size on each batch's loss "
        "(weights only; the training loss includes it).",
    ),
    Param(
        "weight_decay",
        float,
        0.0,
        number(at_least=0),
        "Decoupled weight decay (AdamW's): θ ← θ(1 − η·weight_decay) before each update.",
    ),
    # added in round 3
    Param(
        "subnormals",
        str,
        "keep",
        choice(SUBNORMALS),
        "keep: IEEE arithmetic (the reference); flush: numbers below 2.2e-308 are taken as 0 "
        "while the run trains (the CPU's FTZ and DAZ), faster where saturated units make them; "
        "needs the fast extra and x86-64.",
        choices=SUBNORMALS,
    ),
]


def by_name() -> dict[str, Param]:
    return {param.name: param for param in PARAMS}


def declare(param: Param) -> None:
    """Add a parameter to the table: call before the sweep layer and the CLI are imported
    (they derive their fields, checks and options from the table once)."""
    if param.name in by_name():
        raise ValueError(f"a parameter named {param.name!r} is declared already")
    PARAMS.append(param)
