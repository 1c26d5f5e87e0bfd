"""A sweep's scheduler (``scheduler:`` in its spec): its ladder of rungs, and which bracket
each configuration is in. The decisions themselves are the store's (``nnlab.store.rungs``),
taken in the transactions that pause and end runs."""

from __future__ import annotations

from nnlab.store.registry import RunRow
from nnlab.store.rungs import Ladder
from nnlab.sweeps.grid import GridPoint, config_hash
from nnlab.sweeps.spec import EPOCHS_DEFAULT, SweepSpec


def ladder(spec: SweepSpec) -> Ladder | None:
    """The rungs of ``spec``'s scheduler, or None when its runs all train in full."""
    if spec.scheduler is None:
        return None
    scheduler = spec.scheduler
    return Ladder(
        kind=scheduler["type"],
        metric=scheduler["metric"],
        min_epochs=scheduler["min_epochs"],
        eta=scheduler["eta"],
        max_epochs=spec.base.get("epochs", EPOCHS_DEFAULT),
    )


def configuration_hash(point: GridPoint) -> str:
    """What the runs of a configuration (that differ only in seed) share: its hash at seed 0."""
    from dataclasses import replace

    return config_hash(replace(point.config, seed=0))


def run_rows(points: list[GridPoint], rungs: Ladder | None) -> list[RunRow]:
    """The runs to register; under a scheduler, each with its configuration and bracket.

    Hyperband's brackets take the configurations in the order of their hashes (a fixed,
    grid-independent shuffle), in ``Ladder.bracket_sizes`` shares: the same spec always puts
    the same configuration in the same bracket, whatever machine or study registers it."""
    names = [configuration_hash(point) for point in points]
    brackets: dict[str, int] = {}
    if rungs is not None:
        distinct = sorted(set(names))
        sizes = rungs.bracket_sizes(len(distinct))
        starts = [sum(sizes[:b]) for b in range(len(sizes))]
        for index, name in enumerate(distinct):
            brackets[name] = max(b for b, start in enumerate(starts) if start <= index)
    return [
        RunRow(p.values, p.config_hash, p.config.seed, name, brackets.get(name))
        for p, name in zip(points, names, strict=True)
    ]
