"""nnlab: run grids of small neural-network training experiments and study their convergence."""

__version__ = "0.1.0"
