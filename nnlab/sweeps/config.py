"""One training run: a configuration in, a trained network and its history out.

This is the unit a sweep repeats for every point of its grid, and what ``nnlab train`` runs once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass

from nnlab.data import SYNTHETIC, Dataset, fingerprint, load_dataset, split, standardize
from nnlab.engine import MLP, EpochRecord, TrainResult, train
from nnlab.engine.checkpoint import Checkpoint
from nnlab.params import PARAMS

# data settings that are not the data set's own parameters, and their defaults
DATA_DEFAULTS = {"val_fraction": 0.2, "standardize": True, "seed": 0}


def _run_config() -> type:
    fields_ = [
        ("data", Mapping, field(default_factory=lambda: {"name": "spirals"}, hash=False)),
        *((param.name, object, field(default=param.default)) for param in PARAMS),
        ("seed", int, field(default=0)),
    ]
    run_config = make_dataclass("RunConfig", fields_, frozen=True)
    run_config.__module__ = __name__  # so that it pickles by name, as a class written out
    run_config.__doc__ = """Everything that determines a run: one field per hyperparameter of
    ``nnlab.params.PARAMS`` (with its default), ``data`` and ``seed``. ``data`` names a synthetic
    set or a file, with its parameters, plus ``val_fraction`` (default 0.2) and ``standardize``
    (default True); its ``seed`` (default 0) fixes the data and the split, while ``seed`` here
    fixes the weights and the shuffling."""
    return run_config


RunConfig = _run_config()


@dataclass
class RunOutcome:
    """A trained run: how it ended (``result``), the network, the data it saw, and the
    fingerprint of that data."""

    result: TrainResult
    net: MLP
    train_data: Dataset
    val_data: Dataset
    fingerprint: str

    @property
    def status(self) -> str:
        return self.result.status

    @property
    def history(self):
        """One row per epoch (the fields of ``EpochRecord``), a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([record_fields(r) for r in self.result.history])


def record_fields(record: EpochRecord) -> dict:
    return {name: getattr(record, name) for name in EpochRecord.__slots__}


def _settings(config: RunConfig, configures: str, but: tuple[str, ...] = ()) -> dict:
    """The run's settings of the parameters that configure the network or the training."""
    wanted = [p.name for p in PARAMS if p.configures == configures and p.name not in but]
    return {name: getattr(config, name) for name in wanted}


def prepare_data(data: Mapping) -> tuple[Dataset, Dataset, str]:
    """Load or generate the data set named in ``data``; split it into train and validation.

    Returns the two parts and the fingerprint of the whole data set as loaded. A process keeps
    the last few data sets it prepared (a sweep's runs mostly share one); their arrays are
    shared between runs, so they are read-only.
    """
    return _prepared(json.dumps(dict(data), sort_keys=True))


@functools.lru_cache(maxsize=4)
def _prepared(data_json: str) -> tuple[Dataset, Dataset, str]:
    params = json.loads(data_json)
    name = params.pop("name")
    val_fraction = params.pop("val_fraction", DATA_DEFAULTS["val_fraction"])
    scale = params.pop("standardize", DATA_DEFAULTS["standardize"])
    seed = params.get("seed", DATA_DEFAULTS["seed"])
    if name not in SYNTHETIC:  # files take no seed; it still seeds the split
        params.pop("seed", None)
    dataset = load_dataset(name, **params)
    train_data, val_data = split(dataset, val_fraction=val_fraction, seed=seed)
    if scale:
        train_data, val_data = standardize(train_data, val_data)
    for array in (train_data.X, train_data.y, val_data.X, val_data.y):
        array.flags.writeable = False  # shared by the runs of this process
    return train_data, val_data, fingerprint(dataset.X, dataset.y)


def train_config(
    config: RunConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    until_epoch: int | None = None,
    resume: Checkpoint | None = None,
) -> RunOutcome:
    """Prepare the data, build the network and train it as ``config`` says: to the end, or
    paused after ``until_epoch``, from the start or from ``resume`` (see ``train``)."""
    train_data, val_data, data_fingerprint = prepare_data(config.data)
    sizes = [train_data.n_features, *config.hidden, train_data.n_outputs]
    net = MLP(sizes, seed=config.seed, **_settings(config, "network", but=("hidden",)))
    val = (val_data.X, val_data.y) if val_data.n_samples else None
    training = _settings(config, "training")
    X, y = train_data.X, train_data.y
    result = train(
        net,
        X,
        y,
        seed=config.seed,
        val=val,
        on_epoch=on_epoch,
        until_epoch=until_epoch,
        resume=resume,
        **training,
    )
    return RunOutcome(
        result=result,
        net=net,
        train_data=train_data,
        val_data=val_data,
        fingerprint=data_fingerprint,
    )
