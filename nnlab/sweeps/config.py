"""One training run: a configuration in, a trained network and its history out.

This is the unit a sweep repeats for every point of its grid, and what ``nnlab train`` runs once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass

from nnlab.data import SYNTHETIC, Dataset, fingerprint, load_dataset, split, standardize
from nnlab.engine import MLP, EpochRecord, TrainResult
from nnlab.engine.checkpoint import Checkpoint
from nnlab.engine.packed import MAX_PACK, train_many
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
    (outcome,) = train_configs([config], [on_epoch], until_epochs=[until_epoch], resumes=[resume])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def train_configs(
    configs: Sequence[RunConfig],
    on_epochs: Sequence[Callable[[EpochRecord], None] | None],
    *,
    until_epochs: Sequence[int | None] | None = None,
    resumes: Sequence[Checkpoint | None] | None = None,
    max_pack: int = MAX_PACK,
) -> list[RunOutcome | Exception]:
    """``train_config`` for several runs at once: runs on the same data train together where
    the engine can pack them (``nnlab.engine.train_many``), each as it would alone. An error
    of one run (its settings, its ``on_epoch``) is returned in its place and ends that run only.
    """
    n = len(configs)
    until_epochs = until_epochs or [None] * n
    resumes = resumes or [None] * n
    outcomes: list[RunOutcome | Exception | None] = [None] * n
    by_data: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        by_data.setdefault(json.dumps(dict(config.data), sort_keys=True), []).append(index)
    for indices in by_data.values():
        try:
            train_data, val_data, data_fingerprint = prepare_data(configs[indices[0]].data)
        except Exception as error:
            for index in indices:
                outcomes[index] = error
            continue
        runs, nets = [], {}
        for index in indices:
            try:
                nets[index] = _network(configs[index], train_data)
            except Exception as error:
                outcomes[index] = error
                continue
            settings = _train_settings(
                configs[index], on_epochs[index], until_epochs[index], resumes[index]
            )
            runs.append((index, settings))
        val = (val_data.X, val_data.y) if val_data.n_samples else None
        results = train_many(
            [(nets[index], settings) for index, settings in runs],
            train_data.X,
            train_data.y,
            val=val,
            max_pack=max_pack,
            return_exceptions=True,
        )
        for (index, _), result in zip(runs, results, strict=True):
            if isinstance(result, Exception):
                outcomes[index] = result
            else:
                outcomes[index] = RunOutcome(
                    result, nets[index], train_data, val_data, data_fingerprint
                )
    return outcomes


def _network(config: RunConfig, train_data: Dataset) -> MLP:
    sizes = [train_data.n_features, *config.hidden, train_data.n_outputs]
    return MLP(sizes, seed=config.seed, **_settings(config, "network", but=("hidden",)))


def _train_settings(config: RunConfig, on_epoch, until_epoch, resume) -> dict:
    """``train``'s keyword arguments for the run, beside its network and data."""
    return {
        "seed": config.seed,
        "on_epoch": on_epoch,
        "until_epoch": until_epoch,
        "resume": resume,
        **_settings(config, "training"),
    }
