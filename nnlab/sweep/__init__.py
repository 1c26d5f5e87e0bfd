"""Sweeps: run configurations, the grid, and the runner that joins data, engine and store."""

from nnlab.sweep.run import RunConfig, RunOutcome, execute, prepare_data

__all__ = ["RunConfig", "RunOutcome", "execute", "prepare_data"]
