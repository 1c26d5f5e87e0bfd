"""nnlab: run grids of small neural-network training experiments and understand their convergence."""

__version__ = "0.1.0"
