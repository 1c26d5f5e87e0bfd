"""Sweeps: run configurations, the grid, and the runner that joins data, engine and store."""

from nnlab.sweeps.config import RunConfig, RunOutcome, prepare_data, train_config

__all__ = ["RunConfig", "RunOutcome", "prepare_data", "train_config"]
