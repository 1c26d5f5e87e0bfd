"""Sweeps: configurations, the grid, and the runner that joins the data, the engine and the store."""

from nnlab.sweep.run import RunConfig, RunOutcome, execute, prepare_data

__all__ = ["RunConfig", "RunOutcome", "execute", "prepare_data"]
